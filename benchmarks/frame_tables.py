"""Both spatial detectors on `edge-guard evaluate` outputs, from their score caches alone:
AUC and TPR at 1% FPR with 95% bootstrap intervals over frames, every frame-detector
statistic, and the detection rate at the shipped bundles' thresholds (what a vehicle sees).

    python benchmarks/frame_tables.py /work/eval-22/adaptive-{dag,houdini} \
        --bundle edge_guard/assets/bundle --pairs-bundle /work/eval-22/pairs-bundle \
        --md reports/.../tables.md --json reports/.../scores.json.gz

Each OUT is an evaluate --out folder; its scores/<set>.json hold per-patch sparse confusions
(the frame detector) and per-pair mIoUs (the pairs detector), so nothing is segmented again.
Every attack set is compared with the benign frames of its own OUT. --json writes every
frame's score per detector, statistic and K, so the tables can be re-derived without the caches.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frame_study import _ci  # noqa: E402

STATISTICS = (("miou-min", 64), ("agreement", 0), ("miou", 0))


def read_bundle(path: Path | None) -> dict | None:
    """The detector record of a bundle's guard.json (method, statistic, k, threshold, ...)."""
    if path is None:
        return None
    guard = path / "guard.json"
    if not guard.is_file():
        raise SystemExit(f"error: {guard} not found: --bundle/--pairs-bundle take a bundle folder")
    doc = json.loads(guard.read_text())
    return {**doc["detector"], "num_classes": doc["model"]["num_classes"], "path": str(path)}


def load_sets(outs: list[Path]) -> list[dict]:
    """[{out, name, scores, benign}] for every attack set of every OUT, first OUT first; a set
    found in several OUTs is taken once."""
    seen, sets = set(), []
    for out in outs:
        folder = out / "scores"
        benign_path = folder / "benign.json"
        if not benign_path.is_file():
            raise SystemExit(f"error: {benign_path} not found: pass `edge-guard evaluate --out` folders")
        benign = json.loads(benign_path.read_text())["scores"]
        for path in sorted(folder.glob("*.json")):
            if path.name == "benign.json" or path.stem in seen:
                continue
            seen.add(path.stem)
            sets.append({"out": out.name, "name": path.stem, "scores": json.loads(path.read_text())["scores"],
                         "benign": benign})
    return sets


def per_frame(scores: dict, ks: list[int], num_classes: int) -> dict:
    """{"frame": {statistic: {K: [score per frame]}}, "pairs": {K: [...]}} of one score cache."""
    from edge_guard.calibration.eval_scores import frame_at, spatial_at

    out = {"names": scores["names"], "frame": {}, "pairs": {}}
    for statistic, m in STATISTICS:
        label = f"{statistic}>={m}" if statistic == "miou-min" else statistic
        out["frame"][label] = {str(k): frame_at(scores["frame"], k, num_classes, statistic, m).round(6).tolist()
                               for k in ks}
    out["pairs"] = {str(k): spatial_at(scores["spatial"], k).round(6).tolist() for k in ks}
    return out


def measure(benign, adversarial, bootstrap: int, rng) -> dict:
    from edge_guard.calibration.eval_tables import tpr_at_fpr as tpr_at
    from edge_guard.calibration.threshold import detection_auc as auc

    b, a = np.asarray(benign), np.asarray(adversarial)
    boots = [(auc(bb, aa), tpr_at(bb, aa, 0.01)) for bb, aa in
             ((rng.choice(b, b.size), rng.choice(a, a.size)) for _ in range(bootstrap))]
    return {"auc": auc(b, a), "auc_ci": _ci([x for x, _ in boots]),
            "tpr_1pct": tpr_at(b, a, 0.01), "tpr_ci": _ci([y for _, y in boots])}


def tables(sets: list[dict], ks: list[int], frame_bundle, pairs_bundle, bootstrap: int, seed: int = 0):
    """(rows, per-frame scores): a row per attack set, detector, statistic and K."""
    num_classes = (frame_bundle or pairs_bundle or {}).get("num_classes", 19)
    rng = np.random.default_rng(seed)
    rows, dump, benign_done = [], {"benign": {}, "attacks": {}}, {}
    for s in sets:
        if s["out"] not in benign_done:
            benign_done[s["out"]] = per_frame(s["benign"], ks, num_classes)
            dump["benign"][s["out"]] = benign_done[s["out"]]
        ben = benign_done[s["out"]]
        adv = dump["attacks"][s["name"]] = {"out": s["out"], **per_frame(s["scores"], ks, num_classes)}
        for detector, bundle, series in (("frame", frame_bundle, adv["frame"]), ("pairs", pairs_bundle,
                                                                                 {"miou": adv["pairs"]})):
            for label, by_k in series.items():
                ref = ben["frame"][label] if detector == "frame" else ben["pairs"]
                for k in ks:
                    row = {"set": s["name"], "out": s["out"], "detector": detector, "statistic": label, "k": k,
                           "frames": len(by_k[str(k)]), **measure(ref[str(k)], by_k[str(k)], bootstrap, rng)}
                    if bundle and bundle["k"] == k and _same_statistic(bundle, label):
                        row["bundle_threshold"] = bundle["threshold"]
                        row["bundle_rate"] = float((np.asarray(by_k[str(k)]) < bundle["threshold"]).mean())
                        row["bundle_benign_rate"] = float((np.asarray(ref[str(k)]) < bundle["threshold"]).mean())
                    rows.append(row)
    return rows, dump


def _same_statistic(bundle: dict, label: str) -> bool:
    statistic = bundle.get("statistic", "miou")
    if statistic == "miou-min":
        return label == f"miou-min>={bundle.get('min_pixels', 0)}"
    return label == statistic


def markdown(rows: list[dict]) -> str:
    lines = ["| attack set | frames | detector | statistic | K | AUC [95% CI] | TPR at 1% FPR [95% CI] | "
             "flagged at the bundle's threshold (benign) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        at = (f"{r['bundle_rate']:.2f} at {r['bundle_threshold']:.4f} ({r['bundle_benign_rate']:.2f})"
              if "bundle_rate" in r else "")
        lines.append(f"| {r['set']} | {r['frames']} | {r['detector']} | {r['statistic']} | {r['k']} | "
                     f"{r['auc']:.3f} [{r['auc_ci'][0]:.2f}, {r['auc_ci'][1]:.2f}] | "
                     f"{r['tpr_1pct']:.2f} [{r['tpr_ci'][0]:.2f}, {r['tpr_ci'][1]:.2f}] | {at} |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict], frame_bundle: dict | None, pairs_bundle: dict | None) -> str:
    """One line per attack set: each detector at the bundles' statistic and K (and the frame
    detector at 2K), AUC [CI], TPR at 1% FPR and the rate at the bundle's threshold."""
    def pick(name, detector, label, k):
        return next((r for r in rows if (r["set"], r["detector"], r["statistic"], r["k"]) == (name, detector, label, k)),
                    None)

    def cell(r):
        if r is None:
            return "n/a"
        at = f", {r['bundle_rate']:.2f} at thr" if "bundle_rate" in r else ""
        return f"{r['auc']:.3f} [{r['auc_ci'][0]:.2f}, {r['auc_ci'][1]:.2f}] / {r['tpr_1pct']:.2f}{at}"

    fb = frame_bundle or {"statistic": "miou-min", "min_pixels": 64, "k": 5}
    label = f"miou-min>={fb.get('min_pixels', 0)}" if fb["statistic"] == "miou-min" else fb["statistic"]
    k, kp = fb["k"], (pairs_bundle or {"k": 5})["k"]
    lines = [f"| attack set | frames | frame ({label}) K={k}: AUC [95% CI] / TPR@1% | frame K={2 * k} | "
             f"pairs (miou) K={kp} |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["set"] for r in rows):
        first = pick(name, "frame", label, k)
        lines.append(f"| {name} | {first['frames'] if first else '?'} | {cell(first)} | "
                     f"{cell(pick(name, 'frame', label, 2 * k))} | {cell(pick(name, 'pairs', 'miou', kp))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outs", nargs="+", type=Path, help="`edge-guard evaluate --out` folders")
    ap.add_argument("--ks", default="5,10,20", help="patches / pairs per frame (default: 5,10,20)")
    ap.add_argument("--bundle", type=Path, help="frame-detector bundle whose threshold to apply")
    ap.add_argument("--pairs-bundle", type=Path, help="pairs-detector bundle whose threshold to apply")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    ap.add_argument("--md", type=Path, help="write the table here (markdown)")
    ap.add_argument("--json", type=Path, help="write rows and every frame's scores here (.json or .json.gz)")
    ap.add_argument("--summary", type=Path, help="write the one-line-per-attack-set table here (markdown)")
    args = ap.parse_args(argv)
    try:
        ks = sorted({int(v) for v in args.ks.split(",")})
    except ValueError:
        raise SystemExit(f"error: --ks {args.ks!r}: expected comma-separated integers such as 5,10,20")
    frame_bundle, pairs_bundle = read_bundle(args.bundle), read_bundle(args.pairs_bundle)
    rows, dump = tables(load_sets(args.outs), ks, frame_bundle, pairs_bundle, args.bootstrap)
    text = markdown(rows)
    print(text, end="")
    if args.summary:
        args.summary.write_text(summary(rows, frame_bundle, pairs_bundle))
    if args.md:
        args.md.write_text(text)
    if args.json:
        data = json.dumps({"ks": ks, "rows": rows, "scores": dump}).encode()
        args.json.write_bytes(gzip.compress(data, mtime=0) if args.json.suffix == ".gz" else data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
