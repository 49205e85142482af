"""False alarms under benign camera conditions, beside what the model itself does there.

For every labelled frame of a split and every condition (clean, JPEG 30, noise sigma 8,
brightness 0.4x / 0.25x / 1.5x, 7-pixel motion blur: edge_guard.calibration.data.conditions),
each bundle's Guard checks the frame (the runtime as shipped: ONNX Runtime, its calibrated
threshold and K) and the frame's labels are compared with the generator's: pixel accuracy,
and agreement with the model's labels of the clean frame. Prints a table per bundle and
writes a JSON file with every frame's scores.

    python benchmarks/conditions.py --data scenes --split test --frames 100 \\
        --bundle edge_guard/assets/bundle --bundle pairs-bundle --json conditions.json

The patches are drawn from ``--seed`` (one stream per bundle x condition), so a run repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="labelled Cityscapes-layout folder")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=100, help="the first N labelled frames (default: 100)")
    p.add_argument("--bundle", action="append", type=Path, default=None,
                   help="bundle to check with (repeatable; default: the shipped one)")
    p.add_argument("--conditions", default=None, help="comma-separated (default: clean and all)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write every number here")
    return p.parse_args(argv)


def measure(args) -> dict:
    from tqdm import tqdm

    from edge_guard.calibration.data.conditions import CONDITIONS, apply_condition
    from edge_guard.calibration.data.folders import open_dataset
    from edge_guard.guard import Guard
    from edge_guard.paths import DEFAULT_BUNDLE

    names = ["clean", *CONDITIONS] if not args.conditions else args.conditions.split(",")
    if "clean" not in names:  # the agreement column compares with the clean frame's labels
        names.insert(0, "clean")
    frames = open_dataset(args.data, args.split)
    n = min(args.frames, len(frames))
    bundles = args.bundle or [Path(DEFAULT_BUNDLE)]
    guards = [Guard.load(b, backend="onnxruntime-cpu", threads=args.threads) for b in bundles]
    segmenting = [i for i, g in enumerate(guards) if g.segmenter is not None]
    if not segmenting:
        raise SystemExit("conditions: no bundle has a full-frame graph, so no frame's labels to measure "
                         "the model with: add a bundle calibrated by this edge-guard")
    out = {"data": str(args.data), "split": args.split, "frames": n, "seed": args.seed,
           "conditions": {c: (CONDITIONS[c][0] if c in CONDITIONS else "clean") for c in names},
           "bundles": [{"path": str(b), "detector": g.bundle.method, "statistic": g.bundle.statistic,
                        "k": g.k, "threshold": g.threshold, "model_sha256": g.bundle.model_sha256}
                       for b, g in zip(bundles, guards)],
           "per_frame": {c: {"names": [], "pixel_accuracy": [], "clean_agreement": [],
                             "scores": [[] for _ in guards]} for c in names}}
    rngs = {(i, c): np.random.default_rng(np.random.SeedSequence([args.seed, i, zlib.crc32(c.encode())]))
            for i in range(len(guards)) for c in names}
    noise = np.random.default_rng(np.random.SeedSequence([args.seed, 99]))
    with tqdm(total=n * len(names), unit="check", desc="conditions") as bar:
        for f in range(n):
            image, labels, name = frames[f]
            clean_labels = None
            for c in names:
                x = apply_condition(c, image, noise)
                rec = out["per_frame"][c]
                rec["names"].append(name)
                for i, g in enumerate(guards):
                    g.rng = rngs[(i, c)]  # each (bundle, condition) draws from its own stream
                    v = g.check(x, rgb=True)
                    rec["scores"][i].append(v.score)
                    if i == segmenting[0]:
                        pred = v.labels
                gt = resize_labels(labels, pred.shape)
                valid = gt < 255
                rec["pixel_accuracy"].append(float((pred[valid] == gt[valid]).mean()))
                if c == "clean":
                    clean_labels = pred
                rec["clean_agreement"].append(float((pred == clean_labels).mean()) if clean_labels is not None else None)
                bar.update(1)
    for g in guards:
        g.close()
    out["summary"] = summarise(out)
    return out


def resize_labels(labels: np.ndarray, shape) -> np.ndarray:
    import cv2

    if labels.shape == tuple(shape):
        return labels
    return cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def summarise(out: dict) -> dict:
    summary = {}
    for c, rec in out["per_frame"].items():
        row = {"pixel_accuracy": float(np.mean(rec["pixel_accuracy"])),
               "clean_agreement": float(np.mean([v for v in rec["clean_agreement"] if v is not None]))}
        for b, scores in zip(out["bundles"], rec["scores"]):
            s = np.asarray(scores)
            flagged = int((s < b["threshold"]).sum())
            row[f"{b['detector']}:{b['path']}"] = {"flagged": flagged, "frames": int(s.size),
                                                  "false_alarm_rate": flagged / max(1, s.size),
                                                  "median_score": float(np.median(s))}
        summary[c] = row
    return summary


def table(out: dict) -> str:
    heads = [f"{b['detector']} ({b['statistic']}, K={b['k']}) flagged" for b in out["bundles"]]
    lines = ["| condition | model pixel accuracy | labels = clean labels | " + " | ".join(heads) + " |",
             "|---|---|---|" + "---|" * len(heads)]
    for c, row in out["summary"].items():
        cells = []
        for b in out["bundles"]:
            d = row[f"{b['detector']}:{b['path']}"]
            cells.append(f"{d['flagged']}/{d['frames']} ({100 * d['false_alarm_rate']:.0f}%)")
        lines.append(f"| {out['conditions'][c]} | {row['pixel_accuracy']:.3f} | {row['clean_agreement']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = measure(args)
    print(table(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
