"""Two bundles on the same frames with the same patches: per-frame scores, verdicts, labels.

    python reports/2026-12-06-your-model/compare.py --a edge_guard/assets/bundle --b wrapped_bundle \
        --data /work/data/scenes --split test --out compare.json.gz

Both guards run on ONNX Runtime (CPU) with the same seed, so frame i gets the same K patch
positions in both; what differs is only the bundle (its graphs and its threshold).
"""

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_guard import Guard
from edge_guard.calibration.data.folders import open_dataset


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", type=Path, required=True, help="first bundle (e.g. the shipped one)")
    p.add_argument("--b", type=Path, required=True, help="second bundle")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="per-frame scores (.json.gz)")
    args = p.parse_args()
    frames = open_dataset(args.data, args.split, labeled=False)
    guards = {k: Guard.load(b, backend="onnxruntime", seed=args.seed) for k, b in (("a", args.a), ("b", args.b))}
    rows = []
    for i in tqdm(range(min(args.frames, len(frames))), desc="frames"):
        image, _, name = frames[i]
        v = {k: g.check(image, rgb=True) for k, g in guards.items()}
        rows.append({"frame": name, **{f"score_{k}": float(x.score) for k, x in v.items()},
                     **{f"flag_{k}": bool(x.adversarial) for k, x in v.items()},
                     "labels_equal": float(np.mean(v["a"].labels == v["b"].labels))})
    da = np.array([r["score_a"] - r["score_b"] for r in rows])
    summary = {
        "frames": len(rows), "seed": args.seed, "data": f"{args.data} ({args.split})",
        "bundles": {"a": str(args.a), "b": str(args.b)},
        "thresholds": {k: g.threshold for k, g in guards.items()},
        "verdicts_equal": int(sum(r["flag_a"] == r["flag_b"] for r in rows)),
        "flagged": {k: int(sum(r[f"flag_{k}"] for r in rows)) for k in guards},
        "scores_equal": int(np.count_nonzero(da == 0)), "max_abs_score_diff": float(np.abs(da).max()),
        "labels_equal_mean": float(np.mean([r["labels_equal"] for r in rows])),
        "labels_equal_min": float(np.min([r["labels_equal"] for r in rows])),
    }
    with gzip.open(args.out, "wt") as f:
        json.dump({"summary": summary, "frames": rows}, f, indent=0)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
