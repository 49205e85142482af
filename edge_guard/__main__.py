import sys

from edge_guard.cli import main

if __name__ == "__main__":
    sys.exit(main())
