"""The plan ``evaluate`` prints before it starts: every cell, the frames it still has to attack
(the attack cache holds the others), its steps, the seconds a step takes here (measured on
this model, frame size and device) and the hours the grid will take.

Step times: each attack method is timed once plain, each adaptive view set (kind, K_attack)
once with the first method that has views; an adaptive cell of another method is scaled by
that method's plain ratio (a step's cost is the model's forward and backward passes, which
the views multiply alike). After a warm-up call, a step is timed as (4 steps - 2 steps) / 2,
each the fastest of two calls, so the setup and what else runs on the machine are left out. The times are kept in OUT/plan.json, keyed by what
decides them, so a resumed grid does not time them again. An early-stopping attack (DAG,
Houdini) is planned at its full --max-iter: the estimate is an upper bound for those cells.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .eval_plan import _digest, has_adaptive, parse_label

#: A step is timed as (seconds of LONG steps - seconds of SHORT steps) / (LONG - SHORT), after
#: a warm-up call of SHORT steps (adv_lib's alma_prox needs at least 2).
SHORT, LONG = 2, 4
REPEATS = 2


def _time_attack(segmenter, settings, x, t) -> float:
    """Seconds per step of ``settings``' attack on x (1, 3, H, W) toward t (1, H, W)."""
    from dataclasses import replace

    from .attacks.pool import attack_batch
    from .attacks.views import make_views

    views = make_views(settings.adaptive, settings.k_attack, settings.patch_size, settings.b_low,
                       settings.b_high, settings.blur_stds, settings.pair_weight, settings.agree_weight)
    prepared = [{"x": x, "target": t, "seed": 0}]

    def seconds(steps: int) -> float:
        # Every step runs: no early stop (1.0, all pixels on target, is not reached this soon)
        run = replace(settings, max_iter=steps, threshold=None if settings.threshold is None else 1.0)
        start = time.perf_counter()
        attack_batch(segmenter, run, views, prepared)
        return time.perf_counter() - start

    seconds(SHORT)  # warm-up: allocations, lazy inits
    # The fastest of REPEATS: what the machine does when nothing else runs on it
    short = min(seconds(SHORT) for _ in range(REPEATS))
    long = min(seconds(LONG) for _ in range(REPEATS))
    return (long - short) / (LONG - SHORT) if long > short else long / LONG


def step_seconds(s, cells: list, resolved: dict, model_id: str, image: np.ndarray, device: str, cache: Path,
                 log=print) -> dict:
    """{cell name: seconds per step}: measured on the model the attacks load (see the module
    docstring), or read from ``cache``. ``resolved``: {cell name: its AttackSettings}."""
    import torch

    from .attacks.run import load_attack_model

    plain = {}  # method label -> its plain settings
    views = {}  # (kind, k_attack) -> settings with the first adaptive-capable method
    for a in cells:
        st = resolved[a.name]
        if a.kind == "plain":
            plain.setdefault(parse_label(a.method)[0], st)
        elif has_adaptive(a.method):
            views.setdefault((a.kind, a.k_attack), st)
    key = _digest([sorted(plain), sorted(views), list(s.frame), s.patch, s.b_low, s.b_high, list(s.stds),
                   str(device), torch.get_num_threads(), model_id])
    try:
        doc = json.loads(cache.read_text())
        timed = doc["timed"] if doc.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        timed = None
    if timed is None:
        log(f"timing {len(plain)} attack method(s) and {len(views)} adaptive view set(s) on one "
            f"{s.frame[0]}x{s.frame[1]} frame ({(REPEATS + 1) * SHORT + REPEATS * LONG} steps each)")
        segmenter, _ = load_attack_model(s.model, arch=s.arch, device=device, onnx=s.onnx)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255).to(device)
        t = np.zeros(image.shape[:2], np.uint8)  # a step's cost does not depend on the target
        timed = {"plain": {m: _time_attack(segmenter, st, x, t) for m, st in plain.items()},
                 "views": {f"{k}:{n}": _time_attack(segmenter, st, x, t) for (k, n), st in views.items()},
                 "views_method": {f"{k}:{n}": st.method for (k, n), st in views.items()}}
        cache.write_text(json.dumps({"key": key, "timed": timed}, indent=1))
    out = {}
    for a in cells:
        method = parse_label(a.method)[0]
        if a.kind == "plain":
            out[a.name] = timed["plain"][method]
        else:
            ref = f"{a.kind}:{a.k_attack}"
            base = timed["plain"][timed["views_method"][ref]]
            out[a.name] = timed["views"][ref] * timed["plain"][method] / base
    return out


def cached_frames(folder: Path, names: list) -> int:
    """How many of ``names`` the attack folder already holds (its manifest's records)."""
    try:
        images = json.loads((folder / "manifest.json").read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return sum(1 for n in names if n in images)


def grid_plan(s, cells: list, resolved: dict, folders: dict, seconds: dict, score_seconds: float, names: list,
              workers: int = 1) -> dict:
    """The plan: per cell its frames to attack, steps per frame and estimated seconds; the
    totals (attacks + scoring, over ``workers`` parallel attack workers: at most one per frame
    of a cell, since cells run one after another)."""
    rows = []
    for a in cells:
        st = resolved[a.name]
        done = cached_frames(folders[a.name], names)
        todo = len(names) - done
        rows.append({"cell": a.name, "frames": len(names), "cached": done, "todo": todo,
                     "steps": st.max_iter, "early_stop": st.threshold is not None,
                     "seconds_per_step": seconds[a.name], "seconds": todo * st.max_iter * seconds[a.name]})
    workers = max(1, min(workers, len(names)))
    attack = sum(r["seconds"] for r in rows) / workers
    frames_to_score = s.benign + sum(r["frames"] for r in rows)
    score = frames_to_score * score_seconds
    return {"cells": rows, "frame": list(s.frame), "benign": s.benign, "adversarial": len(names),
            "workers": workers, "attack_hours": attack / 3600, "score_hours": score / 3600,
            "hours": (attack + score) / 3600,
            "frames_to_attack": sum(r["todo"] for r in rows)}


def format_plan(plan: dict) -> str:
    """The plan as the lines ``evaluate`` prints."""
    h, w = plan["frame"]
    rows = plan["cells"]
    cached = sum(1 for r in rows if r["todo"] == 0)
    lines = [f"plan: {len(rows)} cells x {plan['adversarial']} frames at {h}x{w}, {plan['benign']} benign "
             f"frames; {cached} cell(s) cached, {plan['frames_to_attack']} frame attacks to run",
             f"  {'cell':<34} {'to attack':>9} {'steps':>7} {'s/step':>7} {'hours':>6}"]
    for r in rows:
        steps = f"<={r['steps']}" if r["early_stop"] else str(r["steps"])
        lines.append(f"  {r['cell']:<34} {r['todo']:>4}/{r['frames']:<4} {steps:>7} "
                     f"{r['seconds_per_step']:>7.3f} {r['seconds'] / 3600:>6.2f}")
    workers = f" over {plan['workers']} workers" if plan["workers"] > 1 else ""
    lines.append(f"  estimate: {plan['hours']:.1f} h{workers} (attacks {plan['attack_hours']:.1f} h at most, "
                 f"scoring {plan['score_hours']:.1f} h); early-stopping cells are counted at every step")
    return "\n".join(lines)
