"""The issue 23 table from one `edge-guard evaluate` output, and every frame's score.

    python benchmarks/grid_report.py /work/grid23/cpu256 --k 5 --std 3 \\
        --md reports/.../tables.md --json reports/.../frames.json.gz

One row per attack cell: attack success, perturbation (L2 RMS, L-inf x255), attack wall time,
and per detector its AUC [95% bootstrap CI] and TPR at 1% FPR [CI] against the 100 benign
frames: the paper's pairs (K), patch-vs-frame (K, the shipped statistic) and scale (blur std).
A plain cell is read by all three detectors; an adaptive cell by the detector it attacks
(spatial<K> -> pairs, frame<K> -> frame, scale -> scale) and, for the spatial kinds, by the
other spatial detector too (does an attack on one detector escape the other?).

--json writes what re-derives every number without the adversarial frames: per frame and
detector its score at every K and std, the attack's settings, and each frame's name, source
sha256, success, L2 and L-inf (from the manifests).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path


DETECTORS = {"spatial": "pairs", "frame": "frame", "scale": "scale"}
READERS = {"plain": ("frame", "spatial", "scale"), "spatial": ("spatial", "frame"), "frame": ("frame", "spatial"),
           "scale": ("scale",)}


def load(out: Path, results_file: str = "results.json") -> tuple:
    """(results.json, EvalSettings, benign scores, {cell: scores}) of an evaluate --out."""
    from edge_guard.calibration.eval_plan import EvalSettings

    results = json.loads((out / results_file).read_text())
    fields = EvalSettings.__dataclass_fields__
    s = EvalSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["settings"].items()
                        if k in fields})
    benign = json.loads((out / "scores" / "benign.json").read_text())["scores"]
    cells = {}
    for name, a in results["attacks"].items():
        path = out / "scores" / f"{Path(a['folder']).name}.json"
        cells[name] = json.loads(path.read_text())["scores"]
    return results, s, benign, cells


def per_frame(scores: dict, s) -> dict:
    """{detector: {param: [score per frame]}} for every detector the set was scored with."""
    from edge_guard.calibration.eval_tables import detector_params, detector_scores

    out = {}
    for det, params in detector_params(s, scores):
        if det not in scores:  # an adaptive cell is scored by the detectors it attacks
            continue
        out[det] = {f"{p:g}": detector_scores(scores, det, p, s).round(6).tolist() for p in params}
    return out


def _cell(benign, adversarial) -> dict:
    from edge_guard.calibration.eval_tables import auc_interval, tpr_at_fpr
    from edge_guard.calibration.threshold import detection_auc

    return {"auc": detection_auc(benign, adversarial), "tpr_1pct": tpr_at_fpr(benign, adversarial, 0.01),
            **auc_interval(benign, adversarial)}


def rows(results: dict, s, benign: dict, cells: dict, k: int, std: float) -> list:
    params = {"spatial": f"{k:g}", "frame": f"{k:g}", "scale": f"{std:g}"}
    ben = per_frame(benign, s)
    out = []
    for name, a in results["attacks"].items():
        adv = per_frame(cells[name], s)
        kind = a["kind"]
        row = {"cell": name, "method": a["method"], "target": a["target"], "kind": kind, "k_attack": a["k_attack"],
               "frames": a["frames"], "success": a["mean"]["success"], "l2": a["mean"]["l2"],
               "linf255": a["mean"]["linf"] * 255, "iterations": a["mean"]["iterations"],
               "attack_seconds": a.get("attack_seconds"), "detectors": {}}
        for det in READERS[kind]:
            if det in adv:
                row["detectors"][DETECTORS[det]] = _cell(ben[det][params[det]], adv[det][params[det]])
        out.append(row)
    return out


def _f(v, d=2):
    return "n/a" if v is None else f"{v:.{d}f}"


def markdown(table: list, k: int, std: float) -> str:
    head = ("| cell | frames | success | L2 (RMS) | L-inf x255 | attack s | "
            f"frame K={k}: AUC [CI] / TPR@1% | pairs K={k}: AUC [CI] / TPR@1% | scale std={std:g}: AUC [CI] / TPR@1% |")
    lines = [head, "|" + "---|" * 9]
    for r in table:
        def det(name):
            c = r["detectors"].get(name)
            if c is None:
                return ""
            lo, hi = c["auc_ci"]
            return f"{c['auc']:.3f} [{lo:.2f}, {hi:.2f}] / {c['tpr_1pct']:.2f}"
        lines.append(f"| {r['cell']} | {r['frames']} | {_f(r['success'], 3)} | {_f(r['l2'], 4)} | "
                     f"{_f(r['linf255'], 1)} | {_f(r['attack_seconds'], 0)} | {det('frame')} | {det('pairs')} | "
                     f"{det('scale')} |")
    return "\n".join(lines) + "\n"


def dump(out: Path, results: dict, s, benign: dict, cells: dict) -> dict:
    """Every frame's scores, the attack settings and the frames' hashes (see the docstring)."""
    doc = {"settings": results["settings"], "model": results["model"],
           "benign": {"names": benign["names"], **per_frame(benign, s)}, "attacks": {}}
    for name, a in results["attacks"].items():
        manifest = json.loads((out / a["folder"] / "manifest.json").read_text())
        frames = [{"name": n, "source_sha256": manifest["images"][n]["source_sha256"],
                   **{k: manifest["images"][n][k] for k in ("success", "l2", "linf", "iterations", "seconds")}}
                  for n in cells[name]["names"]]
        doc["attacks"][name] = {"settings": manifest["settings"], "frames": frames, **per_frame(cells[name], s)}
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="an `edge-guard evaluate --out` folder")
    ap.add_argument("--k", type=int, default=5, help="the spatial detectors' K (default: 5)")
    ap.add_argument("--std", type=float, default=3.0, help="the scale detector's blur std (default: 3)")
    ap.add_argument("--results", default="results.json",
                    help="the results file in OUT (a copy kept from an earlier run over the same cache)")
    ap.add_argument("--md", type=Path, help="write the table here")
    ap.add_argument("--json", type=Path, help="write every frame's scores here (.json.gz)")
    args = ap.parse_args(argv)
    if not (args.out / args.results).is_file():
        print(f"error: {args.out}/{args.results} not found: pass an `edge-guard evaluate --out` folder", file=sys.stderr)
        return 2
    results, s, benign, cells = load(args.out, args.results)
    table = rows(results, s, benign, cells, args.k, args.std)
    text = markdown(table, args.k, args.std)
    print(text)
    if args.md:
        args.md.write_text(text)
    if args.json:
        with gzip.open(args.json, "wt") as f:
            json.dump({"rows": table, **dump(args.out, results, s, benign, cells)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
