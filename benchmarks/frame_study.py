"""Choose the frame detector's score statistic and patch size by measurement (issue 22, item 3).

On a development split: benign frames (clean, and under each benign camera condition) and
adversarial frames (`edge-guard attack` / `evaluate` attack folders) go through the frame
detector's own primitives (patches from the runtime's sampler, the frame's labels, the
confusion of each patch against the frame) with the PyTorch model, for every patch size
asked. Every patch's sparse confusion matrix is written (``--out``/confusions.json.gz), so
any statistic at any K <= K_max can be scored again without the images. For each candidate
(statistic x patch size) it reports, at K: AUC and TPR at 1% FPR per attack set (95%
bootstrap intervals over frames), and the false-alarm rate under each camera condition at the
threshold that flags 1% of the clean benign frames.

    python benchmarks/frame_study.py --model edge_guard/assets/edge_small.pt --data scenes \\
        --split val --benign 100 --attacks eval/dev/attacks/* --patches 256,192 --out study-dev
    python benchmarks/frame_study.py --rescore study-dev      # tables again from the confusions

Run again with more --attacks into the same --out: the sets measured before are kept (and
measured again only when the model, frame, patch sizes, K_max or seed differ).

Candidates: miou (the paper's), agreement (pixel agreement), miou-min at 64, 256, 1024 px.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zlib
from pathlib import Path

import numpy as np

CANDIDATES = (("miou", 0), ("agreement", 0), ("miou-min", 64), ("miou-min", 256), ("miou-min", 1024))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--data", type=Path, help="benign frames (Cityscapes layout)")
    p.add_argument("--split", default="val")
    p.add_argument("--benign", type=int, default=100, help="the first N frames of the split (default: 100)")
    p.add_argument("--attacks", nargs="*", type=Path, default=[], help="attack folders (manifest.json)")
    p.add_argument("--adversarial", type=int, default=None, help="first N frames of each attack folder")
    p.add_argument("--conditions", default="all", help="benign camera conditions: all, none or a list")
    p.add_argument("--patches", default="256", help="patch sizes, comma-separated (default: 256)")
    p.add_argument("--k", type=int, default=5, help="K the tables are read at (default: 5)")
    p.add_argument("--k-max", type=int, default=10, help="patches drawn per frame (default: 10)")
    p.add_argument("--frame", default="512x1024")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--out", type=Path, help="folder for confusions.json.gz and study.json/.md")
    p.add_argument("--rescore", type=Path, default=None, help="only re-read the confusions in this folder")
    return p.parse_args(argv)


# ---------------------------------------------------------------- measuring

def _sets(args) -> list:
    """[(set name, kind, [(frame name, image loader)])]: benign, each condition, each attack."""
    from edge_guard.calibration.data.conditions import CONDITIONS, apply_condition
    from edge_guard.calibration.data.folders import open_dataset, read_image

    frames = open_dataset(args.data, args.split, labeled=False)
    n = min(args.benign, len(frames))
    benign = [(frames.names[i], frames.image_paths[i]) for i in range(n)]
    conds = [] if args.conditions == "none" else (list(CONDITIONS) if args.conditions == "all"
                                                 else args.conditions.split(","))
    sets = [("benign", "benign", [(name, lambda p=p: read_image(p)) for name, p in benign])]
    for c in conds:
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, zlib.crc32(c.encode())]))
        sets.append((f"benign:{c}", "condition",
                     [(name, lambda p=p, c=c, rng=rng: apply_condition(c, read_image(p), rng)) for name, p in benign]))
    for folder in args.attacks:
        doc = json.loads((folder / "manifest.json").read_text())
        items = sorted(doc["images"].items())[:args.adversarial]
        sets.append((folder.name, "attack", [(name, lambda p=folder / rec["adversarial"]: read_image(p))
                                            for name, rec in items]))
    return sets


def measure(args, earlier: dict | None = None) -> dict:
    """Confusions of every set; sets already in ``earlier`` (same frames, patch sizes, K_max,
    frame and seed) are kept as they are."""
    from tqdm import tqdm

    from edge_guard.calibration.eval_scores import to_frame, to_sparse
    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.calibration.scoring import torch_segment
    from edge_guard.consistency import frame_confusion
    from edge_guard.crop import crop_tops
    from edge_guard.engine_cache import sha256_file
    from edge_guard.patches import sample_patches
    from edge_guard.paths import DEFAULT_MODEL

    model = args.model or Path(DEFAULT_MODEL)
    segmenter, _ = load_segmenter(model)
    segment = torch_segment(segmenter)
    c = segmenter.num_classes
    size = tuple(int(v) for v in args.frame.lower().split("x"))
    patches = [int(v) for v in args.patches.split(",")]
    sets = _sets(args)
    doc = {"model": str(model), "model_sha256": sha256_file(model), "frame": list(size), "patches": patches,
           "k_max": args.k_max, "seed": args.seed, "num_classes": c, "sets": {}}
    same = earlier is not None and all(earlier.get(k) == doc[k]
                                       for k in ("model_sha256", "frame", "patches", "k_max", "seed"))
    if same:  # sets not asked for this time stay: they took as long to measure
        doc["sets"].update(earlier["sets"])
    todo = []
    for name, kind, items in sets:
        old = (earlier or {}).get("sets", {}).get(name) if same else None
        if old is not None and old["names"] == [n for n, _ in items]:
            doc["sets"][name] = old
        else:
            todo.append((name, kind, items))
    total = sum(len(items) for _, _, items in todo)
    with tqdm(total=total, unit="frame", desc="frame study") as bar:
        for name, kind, items in todo:
            rec = {"kind": kind, "names": [], "confusions": {str(s): [] for s in patches}}
            for frame_name, load in items:
                image = to_frame(load(), size)
                labels = segment(image[None])[0]
                rec["names"].append(frame_name)
                for s in patches:
                    # One stream per frame and patch size: a set's draws do not depend on the others.
                    rng = np.random.default_rng(np.random.SeedSequence(
                        [args.seed, zlib.crc32(frame_name.encode()), s]))
                    tops = sample_patches(size[0], size[1], s, args.k_max, rng)
                    cms = frame_confusion(segment(crop_tops(image, tops, s)), labels, tops, c)
                    rec["confusions"][str(s)].append(to_sparse(cms))
                bar.update(1)
            doc["sets"][name] = rec
    return doc


# ---------------------------------------------------------------- scoring

def _ci(values: list) -> list:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def score(doc: dict, k: int, bootstrap: int, seed: int = 0) -> dict:
    """Every candidate's AUC / TPR at 1% FPR per attack set and false alarms per condition."""
    from edge_guard.calibration import threshold as thr
    from edge_guard.calibration.eval_scores import frame_at
    from edge_guard.calibration.eval_tables import tpr_at_fpr

    rng = np.random.default_rng(seed)
    rows = []
    for s in doc["patches"]:
        for statistic, m in CANDIDATES:
            def at(name):
                return frame_at(doc["sets"][name]["confusions"][str(s)], k, doc["num_classes"], statistic, m)
            benign = at("benign")
            choice = thr.pick_threshold(benign, "fpr", 0.01) if benign.size >= 100 else None
            t = choice.threshold if choice else float(np.quantile(benign, 0.01))
            row = {"patch": s, "statistic": statistic, "min_pixels": m, "k": k, "threshold": t,
                   "benign_median": float(np.median(benign)), "attacks": {}, "conditions": {}}
            for name, rec in doc["sets"].items():
                scores = at(name)
                if rec["kind"] == "condition":
                    row["conditions"][name.split(":", 1)[1]] = float((scores < t).mean())
                elif rec["kind"] == "attack":
                    boots_auc, boots_tpr = [], []
                    for _ in range(bootstrap):
                        b = rng.choice(benign, benign.size)
                        a = rng.choice(scores, scores.size)
                        boots_auc.append(thr.detection_auc(b, a))
                        boots_tpr.append(tpr_at_fpr(b, a, 0.01))
                    row["attacks"][name] = {"frames": int(scores.size), "auc": thr.detection_auc(benign, scores),
                                            "auc_ci": _ci(boots_auc), "tpr_1pct": tpr_at_fpr(benign, scores, 0.01),
                                            "tpr_ci": _ci(boots_tpr), "median": float(np.median(scores))}
            rows.append(row)
    return {"k": k, "rows": rows}


def table(result: dict) -> str:
    rows = result["rows"]
    attacks = list(rows[0]["attacks"])
    conds = list(rows[0]["conditions"])
    head = (["patch", "statistic", "benign median"] + [f"{a}: AUC / TPR@1%" for a in attacks]
            + [f"{c} FA" for c in conds])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        stat = r["statistic"] + (f">={r['min_pixels']}" if r["statistic"] == "miou-min" else "")
        cells = [str(r["patch"]), stat, f"{r['benign_median']:.3f}"]
        for a in attacks:
            d = r["attacks"][a]
            cells.append(f"{d['auc']:.3f} [{d['auc_ci'][0]:.2f}, {d['auc_ci'][1]:.2f}] / "
                         f"{d['tpr_1pct']:.2f} [{d['tpr_ci'][0]:.2f}, {d['tpr_ci'][1]:.2f}]")
        cells += [f"{100 * r['conditions'][c]:.0f}%" for c in conds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rescore:
        out = args.rescore
        with gzip.open(out / "confusions.json.gz", "rt") as f:
            doc = json.load(f)
    else:
        if not args.data or not args.out:
            print("frame_study: --data and --out are needed (or --rescore DIR)", file=sys.stderr)
            return 2
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        earlier = None
        if (out / "confusions.json.gz").is_file():  # resume: sets measured before are kept
            with gzip.open(out / "confusions.json.gz", "rt") as f:
                earlier = json.load(f)
        doc = measure(args, earlier)
        with gzip.open(out / "confusions.json.gz", "wt") as f:
            json.dump(doc, f)
    if not 1 <= args.k <= doc["k_max"]:
        print(f"frame_study: --k {args.k} must lie in 1..{doc['k_max']} (the patches drawn per frame)",
              file=sys.stderr)
        return 2
    result = score(doc, args.k, args.bootstrap, args.seed)
    (out / "study.json").write_text(json.dumps(result, indent=1))
    text = table(result)
    (out / "study.md").write_text(f"Frame detector at K = {args.k}: AUC [95% CI] / TPR at 1% FPR [95% CI]; "
                                  "FA = false alarms under each camera condition at the threshold that "
                                  "flags 1% of the clean benign frames.\n\n" + text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
