"""Cross-check our DAG against a third-party implementation: adv_lib's (Jérôme Rony) ``dag``
and its minimum-norm L-inf ``alma_prox``, on the same frames, model and targets (issue 23).

    edge-guard generate --out /tmp/xc --split test --frames 10 --seed 1 --size 256x512
    python benchmarks/adv_lib_crosscheck.py --data /tmp/xc --split test --frames 10 \\
        --json reports/2026-12-06-adv-lib-crosscheck/frames.json.gz

Each frame is loaded, given its target and its seed exactly as ``edge-guard attack --method dag
--target pure`` does (``run._prepare``: the same image_seed and targets.make_target), and
attacked by

- ``ours-8bit``: edge_guard.calibration.attacks.dag with quantize=True, i.e. what
  ``edge-guard attack`` runs (success measured on the 8-bit frame it writes);
- ``ours-float``: the same with quantize=False (continuous images, as adv_lib's);
- ``adv_lib-dag``: adv_lib.attacks.segmentation.dag(targeted=True, γ=gamma, p=inf,
  adv_threshold=threshold, max_iter, masks = valid pixels);
- ``alma-prox``: adv_lib.attacks.segmentation.alma_prox(targeted=True, adv_threshold=threshold,
  num_steps=--alma-steps, every other argument at adv_lib's default).

adv_lib returns float images in [0, 1] that are not 8-bit: its dag returns the first iterate
that reached ``adv_threshold``, and the CLEAN image for a frame that never did; alma_prox the
reached iterate of smallest L-inf (else the one of highest success). Each is measured as
returned and after rounding to 8-bit (our budget.quantize without budgets: the perturbation
rounded to the nearest 1/255); for adv_lib's dag also at its last iterate (what the model saw
last; it differs from the returned image only on frames that did not reach the threshold).
Success is the fraction of valid pixels (target != 255) predicted as the target; L2 is the
RMS of the perturbation over all 3*H*W values and L-inf its largest change, both as
AttackResult reports them (result.distances). Steps are gradient steps; adv_lib's are counted
with a wrapper around the model (forward calls).

How adv_lib is imported: ``import adv_lib.attacks.segmentation`` runs adv_lib/attacks/__init__,
which imports every attack, among them augmented_lagrangian -> distances.lpips -> torchvision
(absent here, or broken beside torch's CPU build: "operator torchvision::nms does not exist"),
and every attack module imports utils.visdom_logger -> visdom (not installed with --no-deps).
So the two files dense_adversary.py and alma_prox.py are loaded on their own
(importlib.util.spec_from_file_location, under private module names), bypassing the
attacks/__init__; they import only adv_lib.utils.losses and adv_lib.utils.visdom_logger. When
visdom is missing, a placeholder ``adv_lib.utils.visdom_logger`` (a VisdomLogger class that
cannot be instantiated; the attacks only name it, for their unused ``callback``) sits in
sys.modules while the two files load, as calibration/models/onnx_import.py does for onnx2torch.
Its placeholder_torchvision is not used: neither file needs torchvision once the __init__ is
bypassed. alma_prox.py decorates its prox operator with @torch.compile; here it runs eager
(the undecorated function, inspect.unwrap): the same arithmetic, without an inductor build on
the CPU. The loader is edge_guard.calibration.attacks.adv_lib_attacks.load_adv_lib, which also
makes the two attacks methods of ``edge-guard attack`` (adv_lib.dag, adv_lib.alma_prox).

Install adv_lib with ``pip install --no-deps adv-lib`` (the ``crosscheck`` extra names it; a
plain ``pip install 'edge-guard[crosscheck]'`` would also pull its torchvision and visdom, which
this script does not need and which break beside torch's CPU build).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edge_guard.calibration.attacks import dag as our_dag
from edge_guard.calibration.attacks.adv_lib_attacks import load_adv_lib
from edge_guard.calibration.attacks.budget import is_8bit, quantize as quantize_8bit
from edge_guard.calibration.attacks.result import distances, success_rate, valid_pixels
from edge_guard.calibration.models.segmenter import labels_of
from edge_guard.errors import MissingDependency, UserError, exit_status

METHODS = ("ours-8bit", "ours-float", "adv_lib-dag", "alma-prox")


# --- measuring -------------------------------------------------------------------------------

class Probe(torch.nn.Module):
    """The model, counting forward calls and keeping the last input it saw."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0
        self.last = None

    def forward(self, x):
        self.calls += 1
        self.last = x.detach().clone()
        return self.model(x)


def measure(model, clean, target, valid, adv) -> dict:
    """Success, L2 (RMS), L-inf and whether the image is 8-bit, for one (1, 3, H, W) image."""
    with torch.no_grad():
        pred = labels_of(model(adv))
    l2, linf = distances(clean, adv)
    return {"success": float(success_rate(pred, target, valid)[0]), "l2": float(l2[0]),
            "linf": float(linf[0]), "is_8bit": is_8bit(adv)}


def with_rounding(model, clean, target, valid, adv) -> dict:
    """``adv`` measured as it is, and rounded to 8-bit (budget.quantize, no budgets)."""
    return {"returned": measure(model, clean, target, valid, adv),
            "rounded": measure(model, clean, target, valid, quantize_8bit(clean, adv))}


def attack_frame(model, x, target, seed: int, *, adv: dict | None, methods=METHODS, max_iter=200,
                 gamma=0.5 / 255, threshold=0.99, alma_steps=500) -> dict:
    """Every method of ``methods`` on one frame x (1, 3, H, W) 8-bit in [0, 1], target (1, H, W)
    int64 (255 ignored): one dict per method. ``adv``: load_adv_lib()'s (None: ours only)."""
    valid = valid_pixels(target, None)
    out = {}
    for method in methods:
        if method.startswith("ours"):
            quantize = method == "ours-8bit"
            res = our_dag(model, x, target, quantize=quantize, gamma=gamma, max_iter=max_iter,
                          threshold=threshold, seed=[seed])  # run_attacks's call, without budgets or views
            rec = {k: v for k, v in res.records()[0].items()}
            rec["reached"] = rec["success"] >= threshold
            rec["is_8bit"] = is_8bit(res.images)
            if not quantize:
                rec["rounded"] = measure(model, x, target, valid, quantize_8bit(x, res.images))
            out[method] = rec
            continue
        if adv is None:
            raise MissingDependency(f"{method} needs adv_lib")
        probe = Probe(model)
        start = time.perf_counter()
        if method == "adv_lib-dag":
            image = adv["dag"](probe, x, target, masks=valid, targeted=True, adv_threshold=threshold,
                               max_iter=max_iter, γ=gamma, p=float("inf"))
        else:
            image = adv["alma_prox"](probe, x, target, masks=valid, targeted=True, adv_threshold=threshold,
                                     num_steps=alma_steps)
        seconds = time.perf_counter() - start
        rec = with_rounding(model, x, target, valid, image.detach())
        reached = rec["returned"]["success"] >= threshold
        if method == "adv_lib-dag":
            # a forward per iteration; it stops after the forward that reached the threshold
            steps = probe.calls - 1 if reached else probe.calls
            rec["last_iterate"] = measure(model, x, target, valid, probe.last)
            rec["returned_clean"] = bool(torch.equal(image, x))
        else:
            steps = probe.calls  # every step runs (a forward and a backward each)
        rec.update(reached=reached, iterations=int(steps), forwards=probe.calls, seconds=seconds)
        out[method] = rec
    return out


# --- frames, summary, table ----------------------------------------------------------------

def load_frames(data, split: str, count: int, model, target: str = "pure", seed: int = 0, size=None):
    """[(name, x, target, seed, clean_success)] for the first ``count`` frames, prepared by
    ``edge-guard attack``'s own code (run._prepare: the same target and seed per frame)."""
    from edge_guard.calibration.attacks.run import AttackSettings, _prepare
    from edge_guard.calibration.data.folders import open_dataset

    s = AttackSettings(method="dag", target=target, seed=seed, size=size).resolved()
    frames = open_dataset(Path(data).expanduser(), split, labeled=False)
    if len(frames) == 0:
        raise UserError(f"{data} has no frames in split {split!r}")
    out = []
    for i in range(min(count, len(frames))):
        p = _prepare(frames, i, s, model, "cpu")
        t = torch.from_numpy(p["target"].astype(np.int64))[None]
        out.append((p["name"], p["x"], t, p["seed"], p["clean_success"]))
    return out


#: (row label, method, where in its record the figures are)
ROWS = (
    ("ours DAG, 8-bit (edge-guard attack)", "ours-8bit", ()),
    ("ours DAG, float", "ours-float", ()),
    ("ours DAG, float -> rounded", "ours-float", ("rounded",)),
    ("adv_lib dag, returned (float)", "adv_lib-dag", ("returned",)),
    ("adv_lib dag, returned -> rounded", "adv_lib-dag", ("rounded",)),
    ("adv_lib dag, last iterate (float)", "adv_lib-dag", ("last_iterate",)),
    ("adv_lib alma_prox, returned (float)", "alma-prox", ("returned",)),
    ("adv_lib alma_prox, returned -> rounded", "alma-prox", ("rounded",)),
)


def _get(rec: dict, path) -> dict:
    for key in path:
        rec = rec[key]
    return rec


def summarize(records: list, threshold: float) -> list:
    """One dict per ROWS entry present: means over frames."""
    rows = []
    for label, method, path in ROWS:
        recs = [r["methods"][method] for r in records if method in r["methods"]]
        if not recs:
            continue
        figs = [_get(rec, path) for rec in recs]
        rows.append({
            "row": label, "method": method, "where": "/".join(path) or "result", "frames": len(recs),
            "success": float(np.mean([f["success"] for f in figs])),
            "min_success": float(np.min([f["success"] for f in figs])),
            "reached": int(sum(f["success"] >= threshold for f in figs)),
            "l2": float(np.mean([f["l2"] for f in figs])), "linf": float(np.mean([f["linf"] for f in figs])),
            "iterations": float(np.mean([rec["iterations"] for rec in recs])),
            "seconds": float(np.mean([rec["seconds"] for rec in recs])),
            # the median over frames: robust to a frame slowed by other work on the machine
            "seconds_per_step": float(np.median([rec["seconds"] / max(rec["iterations"], 1) for rec in recs])),
        })
    return rows


def table(rows: list, threshold: float) -> str:
    head = (f"| run | pixel success (mean) | min | frames >= {threshold:g} | L2 (RMS) x255 | L-inf x255 | "
            "steps (mean) | s/frame (mean) | s/step (median) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['success']:.4f} | {r['min_success']:.4f} | {r['reached']}/{r['frames']} | "
                     f"{255 * r['l2']:.3f} | {255 * r['linf']:.2f} | {r['iterations']:.1f} | {r['seconds']:.1f} | "
                     f"{r['seconds_per_step']:.3f} |")
    return "\n".join(lines)


def frame_table(records: list) -> str:
    cols = [("ours 8-bit", "ours-8bit", ()), ("ours float", "ours-float", ()),
            ("adv_lib dag", "adv_lib-dag", ("returned",)), ("adv_lib dag 8-bit", "adv_lib-dag", ("rounded",)),
            ("alma_prox", "alma-prox", ("returned",)), ("alma_prox 8-bit", "alma-prox", ("rounded",))]
    cols = [c for c in cols if any(c[1] in r["methods"] for r in records)]
    head = "| frame | target | clean | " + " | ".join(f"{c[0]} success / L-inf x255 / steps" for c in cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    for r in records:
        cells = []
        for _, method, path in cols:
            rec = r["methods"].get(method)
            if rec is None:
                cells.append("-")
                continue
            f = _get(rec, path)
            cells.append(f"{f['success']:.4f} / {255 * f['linf']:.2f} / {rec['iterations']}")
        lines.append(f"| {r['name']} | {r['target_class']} | {r['clean_success']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(records: list, threshold: float) -> tuple:
    """Print the per-frame and summary tables and the issue's verdict; (summary rows, verdict)."""
    rows = summarize(records, threshold)
    print()
    print(frame_table(records))
    print()
    print(table(rows, threshold))
    means = {r["row"]: r["success"] for r in rows}
    verdict = None
    ours = means.get(ROWS[0][0])
    if ours is not None and means.get(ROWS[3][0]) is not None:
        verdict = {"ours_8bit": ours}
        print()
        for key, row in (("adv_lib_dag_returned", ROWS[3][0]), ("adv_lib_dag_last_iterate", ROWS[5][0])):
            gap = 100 * (ours - means[row])
            verdict[key] = {"success": means[row], "gap_points": gap, "within_5_points": abs(gap) <= 5}
            print(f"ours (8-bit) - {row}: {gap:+.2f} points of pixel success "
                  f"({'within' if abs(gap) <= 5 else 'NOT within'} 5 points)")
    return rows, verdict


def _read_json(path) -> dict:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _write_json(path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, allow_nan=True)
    print(f"wrote {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="frames (e.g. `edge-guard generate --size 256x512`); required unless --from-json")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=10, help="first N frames (default 10)")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped edge_small)")
    p.add_argument("--target", default="pure", help="target kind, as `edge-guard attack --target` (default pure)")
    p.add_argument("--seed", type=int, default=0, help="as `edge-guard attack --seed` (default 0)")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--gamma", type=float, default=0.5 / 255, help="DAG step on [0, 1] images (default 0.5/255)")
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--alma-steps", type=int, default=500, help="alma_prox num_steps (default: adv_lib's 500)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="per-frame figures (.json or .json.gz)")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="attack nothing: print the tables of a saved run (and with --json, rewrite it "
                        "with this version's summary)")
    args = p.parse_args(argv)
    if args.from_json:
        saved = _read_json(args.from_json)
        rows, verdict = report(saved["frames"], saved["settings"]["threshold"])
        if args.json:
            _write_json(args.json, {**saved, "summary": rows, "verdict": verdict})
        return 0
    if not args.data:
        raise UserError("give --data (the frames to attack) or --from-json (a saved run)")
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(sorted(unknown))}: choose from {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    adv = load_adv_lib() if any(not m.startswith("ours") for m in methods) else None

    from edge_guard.calibration.attacks.run import load_attack_model
    from edge_guard.engine_cache import sha256_file
    from edge_guard.paths import DEFAULT_MODEL

    model_path = Path(args.model).expanduser() if args.model else DEFAULT_MODEL
    model, meta = load_attack_model(model_path)  # as edge-guard attack: eval, frozen, BN folded
    frames = load_frames(args.data, args.split, args.frames, model, args.target, args.seed)
    settings = {"data": str(Path(args.data).resolve()), "split": args.split, "frames": len(frames),
                "model": str(model_path), "model_sha256": sha256_file(model_path), "arch": meta.get("model"),
                "target": args.target, "seed": args.seed, "max_iter": args.max_iter, "gamma": args.gamma,
                "threshold": args.threshold, "alma_steps": args.alma_steps, "methods": list(methods),
                "threads": args.threads, "torch": torch.__version__,
                "adv_lib": None if adv is None else adv["version"],
                "visdom_placeholder": None if adv is None else adv["visdom_placeholder"],
                "frame_size": list(frames[0][1].shape[2:]) if frames else None}
    print(f"{len(frames)} frames {settings['frame_size']} from {args.data}/{args.split}, model {model_path.name}, "
          f"adv_lib {settings['adv_lib']}, torch {torch.__version__}, {args.threads} threads", flush=True)
    records = []
    start = time.perf_counter()
    for name, x, target, seed, clean_success in frames:
        t0 = time.perf_counter()
        res = attack_frame(model, x, target, seed, adv=adv, methods=methods, max_iter=args.max_iter,
                           gamma=args.gamma, threshold=args.threshold, alma_steps=args.alma_steps)
        tc = target[target != 255]
        records.append({"name": name, "seed": seed, "target_class": int(tc[0]) if len(tc) else None,
                        "clean_success": clean_success, "valid_pixels": int((target != 255).sum()),
                        "methods": res})
        brief = ", ".join(f"{m} {r.get('returned', r)['success']:.4f}/{r['iterations']}" for m, r in res.items())
        print(f"{name}: {brief} ({time.perf_counter() - t0:.0f} s)", flush=True)
    total = time.perf_counter() - start
    rows, verdict = report(records, args.threshold)
    print(f"total {total:.0f} s")
    if args.json:
        _write_json(args.json, {"settings": settings, "summary": rows, "verdict": verdict, "seconds": total,
                                "frames": records})
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "adv_lib_crosscheck.py"))
