"""Where the shipped artefacts live inside the installed package."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# The small model trained on generated scenes: the default of every offline --model option.
DEFAULT_MODEL = ASSETS / "edge_small.pt"
# The calibrated bundle built from DEFAULT_MODEL: the default of every runtime --bundle option.
DEFAULT_BUNDLE = ASSETS / "bundle"
