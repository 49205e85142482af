"""Turn a training checkpoint into a shippable one: weights and provenance, no optimiser state.

    python -m edge_guard.calibration.release runs/edge_small.pt edge_guard/assets/edge_small.pt

AdamW's moments triple the file; a shipped model only needs the weights, the normalisation
and the record of how it was trained.
"""

import argparse
import hashlib
import sys
from pathlib import Path

from edge_guard.calibration.models.checkpoint import load_segmenter, save_checkpoint


def release(src, dst, note: str | None = None) -> Path:
    """Write `src` without optimiser state to `dst`; returns dst."""
    segmenter, meta = load_segmenter(src)
    train = {k: v for k, v in (meta.get("train") or {}).items() if k != "optimizer"}
    train["released_from_sha256"] = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    if note:
        train["note"] = note
    return save_checkpoint(dst, segmenter, train_state=train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="training checkpoint (.pt)")
    parser.add_argument("dst", help="shippable checkpoint to write")
    parser.add_argument("--note", help="free text kept in the checkpoint's training record")
    args = parser.parse_args(argv)
    out = release(args.src, args.dst, args.note)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
