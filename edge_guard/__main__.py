import sys

from edge_guard.cli import main

sys.exit(main())
