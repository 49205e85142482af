"""``edge-guard evaluate``: the paper's experiments (§5, Table 1, Fig. 3, 7, 8) on any model and data.

Output folder::

    OUT/results.json        every number below, the settings, seeds and sample sizes
    OUT/report.md           what a person reads first (tables, figures, an honest reading)
    OUT/*.png               ROC curves, Fig. 7 heat maps, Fig. 3 entropy maps, Fig. 8 matrices
    OUT/attacks/<key>/      one `edge-guard attack` folder per attack setting (resumable)
    OUT/scores/<key>.json   detector scores per image set (reused when the settings match)
    OUT/transfer/           Fig. 8: its models (when trained here) and attacks

Sets: the first ``benign`` frames of the split are the benign set; the first ``adversarial``
frames are attacked once per setting: the plain attack (method x target), the adaptive
attack on the scale detector (all blur stds at once, the paper's L2 bound 0.06) and the
adaptive attack on the spatial detector for every K_attack > 0 of the grid (§5.4). Every
frame is resized to the evaluation frame before it is attacked or scored.

Scores (calibration/eval_scores.py): the spatial (pair), frame (patch-vs-frame) and scale
detectors, through the runtime's own primitives; K_max = max(ks) pairs and patches per frame,
the score at K from the first K. Each set draws from ``SeedSequence([seed, crc32(set
name)])``: its scores do not depend on the other sets. Tables: calibration/eval_tables.py;
settings and the attack plan: calibration/eval_plan.py.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np

from edge_guard.classes import NUM_CLASSES
from edge_guard.errors import DataError, UserError

from .eval_plan import (FIGURES, FORMAT, REACHED, SKIPPABLE, VERSION, AttackSet, EvalSettings,  # noqa: F401
                        attack_settings, plan_attacks, setting_key)
from .eval_scores import MissingCache, Scorer, frame_at, spatial_at, to_frame  # noqa: F401
from .eval_tables import (ROC_FPRS, THRESHOLD_RULES, adaptive_matrix, benign_summary,  # noqa: F401
                          detection_cell, fig7, own_adversary, reached_cell, roc_points, table1,
                          tpr_at_fpr)

def _benign_frames(s: EvalSettings) -> tuple:
    from .data.folders import open_dataset

    data = Path(s.data).expanduser()
    if not data.exists():
        raise DataError(f"data folder {data} does not exist (make one with `edge-guard generate`)")
    frames = open_dataset(data, s.split, labeled=False)
    need = max(s.benign, s.adversarial)
    if len(frames) < need:
        raise DataError(f"{data} has {len(frames)} frames in split {s.split!r}, but the evaluation "
                        f"needs {need}: pass smaller --benign/--adversarial or add frames")
    return frames


def _attack_frames(folder: Path, names: list) -> tuple:
    """([(name, stored file)], read(path) -> (H, W, 3) uint8 RGB) of an attack folder's frames
    (rebuilt from their perturbations where the folder keeps those)."""
    from .attacks.store import read_adversarial

    doc = json.loads((folder / "manifest.json").read_text())
    images = doc["images"]
    missing = [n for n in names if n not in images]
    if missing:
        raise DataError(f"{folder}/manifest.json lacks {missing[0]}: re-run evaluate to resume the attack")
    records = {folder / images[n]["adversarial"]: images[n] for n in names}
    return list(zip(names, records)), lambda path: read_adversarial(folder, records[path])


def _attack_record(folder: Path, names: list) -> dict:
    """A cell's attack figures: means, seconds (per frame and in all, as the frames were
    attacked, here or on the machine that attacked them), cache bytes per frame."""
    from .attacks.run import summarize

    doc = json.loads((folder / "manifest.json").read_text())
    recs = [doc["images"][n] for n in names]
    summary = summarize(recs, doc["settings"]["threshold"])
    stored = [sum((folder / r[k]).stat().st_size for k in ("adversarial", "target", "target_color")
                  if (folder / r[k]).is_file()) for r in recs]
    return {"frames": len(recs), **summary, "attack_seconds": summary["seconds_per_frame"] * len(recs),
            "cache_bytes_per_frame": float(np.mean(stored)) if stored else None,
            "stored": sorted({r.get("stored", "png") for r in recs}),
            "success": [float(r["success"]) for r in recs], "settings": doc["settings"]}


def cache_summary(attacks: dict) -> dict:
    """The attack cache's mean bytes per attacked frame (perturbation + target maps)."""
    sizes = [(a["cache_bytes_per_frame"], a["frames"]) for a in attacks.values()
             if a.get("cache_bytes_per_frame") is not None]
    frames = sum(n for _, n in sizes)
    return {"frames": frames, "bytes_per_frame": sum(b * n for b, n in sizes) / frames if frames else None}


def evaluate(s: EvalSettings, device: str = "cpu", progress: bool = True, log=print,
             cached_only: bool = False, plan_only: bool = False, pool=None) -> dict:
    """Run the evaluation per ``s`` into ``s.out``; returns results.json's document.

    The grid's plan (calibration/grid_plan.py) is printed through ``log`` first; ``plan_only``:
    return {"plan": ...} then, attacking nothing. ``pool``: where attack batches run
    (calibration/attacks/pool.py; None: here, one after another).

    ``cached_only``: attack nothing and score nothing; build the results from the manifests
    and scores already under OUT (e.g. several GPU runs' outputs unpacked into one folder,
    without their adversarial images). Fig. 3 and Fig. 8 need the images and are skipped
    (an earlier run's Fig. 3 is kept); a missing setting is a UserError naming it."""
    import time

    from edge_guard.engine_cache import sha256_file

    from .attacks.run import run_attacks
    from .models.complexity import count_parameters

    started = time.perf_counter()
    s.check()
    out = Path(s.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    model_path = Path(s.model).expanduser()
    if not model_path.is_file():
        raise UserError(f"{'--onnx' if s.onnx is not None else 'checkpoint'} {model_path} does not exist")
    frames = _benign_frames(s)
    out.mkdir(parents=True, exist_ok=True)  # after the inputs are known to be usable
    if "fig8" not in s.skip and not s.transfer_models and not cached_only:
        from .transfer import training_frames

        training_frames(s)  # Fig. 8 comes last: find out now that it has no data to train on
    segmenter, meta = _load_model(s, model_path, log)
    if segmenter.num_classes != NUM_CLASSES:
        raise UserError(f"{model_path} predicts {segmenter.num_classes} classes; the attack targets "
                        f"use the {NUM_CLASSES} Cityscapes train ids")
    segmenter = segmenter.to(device).eval()
    model_sha = sha256_file(model_path)
    model_id = _model_id(model_sha, meta)
    scorer = Scorer(s, segmenter, model_id, device, progress, cached_only)

    benign_list = list(zip(frames.names[:s.benign], frames.image_paths[:s.benign]))
    adv_names = list(frames.names[:s.adversarial])
    cells = plan_attacks(s)
    resolved = {a.name: attack_settings(s, a) for a in cells}
    folders = {a.name: out / "attacks" / setting_key(a, resolved[a.name], model_id) for a in cells}
    plan = None
    if not cached_only:
        from edge_guard.calibration.data.folders import read_image

        from .grid_plan import format_plan, grid_plan, step_seconds

        image = read_image(frames.image_paths[0])
        seconds = step_seconds(s, cells, resolved, model_id, to_frame(image, s.frame), device,
                               out / "plan.json", log)
        plan = grid_plan(s, cells, resolved, folders, seconds, scorer.time_frame(image), adv_names,
                         workers=getattr(pool, "workers", 1))
        log(format_plan(plan))
        if plan_only:
            return {"plan": plan}
    attacks, adv_scores, missing, attacked = {}, {}, [], 0
    try:
        benign = scorer.scores("benign", benign_list)
    except MissingCache as exc:
        missing.append(str(exc))
    for a in cells:
        settings, folder = resolved[a.name], folders[a.name]
        detectors = {"plain": ("spatial", "frame", "scale"), "scale": ("scale",)}.get(a.kind, ("spatial", "frame"))
        if not cached_only:
            log(f"attack {a.name} -> {folder.relative_to(out)}")
            done = run_attacks(model_path, s.data, s.split, settings, folder, arch=s.arch, limit=s.adversarial,
                               device=device, progress=progress, onnx=s.onnx, store="delta", pool=pool)
            attacked += done["attacked"]
        try:
            record = _attack_record(folder, adv_names)
            listed, read = _attack_frames(folder, adv_names)
            adv_scores[a.name] = scorer.scores(folder.name, listed, detectors, read=read)
        except MissingCache as exc:
            missing.append(str(exc))
            continue
        except (OSError, ValueError, KeyError, DataError):
            if not cached_only:
                raise
            missing.append(f"attacks/{folder.name}")  # no manifest, or one without these frames
            continue
        attacks[a.name] = {"folder": str(folder.relative_to(out)), "method": a.method,
                           "target": a.target, "kind": a.kind, "k_attack": a.k_attack, **record}
    if missing:
        raise UserError(f"--cached-only: {len(missing)} cached result(s) missing under {out} "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
                        "run those settings (with images) and unpack their output here")

    rows = table1(s, benign, adv_scores, {n: a["success"] for n, a in attacks.items()})
    results = {"format": FORMAT, "version": VERSION, "settings": s.record(), "device": str(device),
               "cached_only": bool(cached_only),
               "model": {"path": str(model_path.resolve()), "sha256": model_sha, "arch": meta.get("model"),
                         "model_kwargs": meta.get("model_kwargs"),
                         "parameters": count_parameters(segmenter),
                         **({"onnx": {"sha256": model_sha, **meta["onnx"]}} if "onnx" in meta else {})},
               "sample_sizes": {"benign": s.benign, "adversarial": s.adversarial},
               "plan": plan, "attacked": attacked, "cache": cache_summary(attacks),
               "attacks": attacks,
               "benign": benign_summary(benign, s),
               "table1": rows,
               "roc": roc_points(rows, benign, adv_scores, s),
               "figures": {}}
    if "fig7" not in s.skip and "adaptive" not in s.skip:
        results["fig7"] = fig7(s, benign, adv_scores)
    if s.pair_counts:
        results["own_adversary"] = own_adversary(s, benign, adv_scores)
    if "adaptive" not in s.skip:
        results["adaptive_matrix"] = adaptive_matrix(s, benign, adv_scores)
    if cached_only:
        earlier = _earlier_fig3(out)
        if earlier:
            results["fig3"] = earlier
    elif "fig3" not in s.skip:
        results["fig3"] = entropy_maps(s, scorer, benign_list[0], attacks, out)
    if "fig8" not in s.skip and not cached_only:
        from .transfer import transferability

        # Table 1 and Figs. 3/7 are on disk before Fig. 8's training (hours on a CPU) begins.
        results["seconds"] = round(time.perf_counter() - started, 1)
        _write_outputs(results, out)
        results["fig8"] = transferability(s, adv_names, device, progress, log, meta)
    results["seconds"] = round(time.perf_counter() - started, 1)
    _write_outputs(results, out)
    return results


def _load_model(s: EvalSettings, model_path: Path, log) -> tuple:
    """(Segmenter, meta) of the evaluated model: a checkpoint, or a user's ONNX graph (meta
    ``model`` "onnx" and ``onnx``: its file, conventions and how its output is read)."""
    if s.onnx is None:
        from .models.checkpoint import load_segmenter

        return load_segmenter(model_path, arch=s.arch)
    from .models.onnx_model import describe, load_onnx

    segmenter = load_onnx(model_path, s.onnx, log=log)
    return segmenter, {"model": "onnx", "model_kwargs": {}, "onnx": describe(segmenter)}


def _model_id(sha: str, meta: dict) -> str:
    """What attack folders and score caches are keyed by: the file's sha256, and for an ONNX
    graph how it is fed and read too (other conventions are another model)."""
    if "onnx" not in meta:
        return sha
    from .attacks.run import onnx_identity
    from .eval_plan import _digest

    return f"{sha}+{_digest(onnx_identity(meta['onnx']))}"


def entropy_maps(s: EvalSettings, scorer: Scorer, benign_frame: tuple, attacks: dict, out: Path) -> dict:
    """Fig. 3: per-pixel vote entropy over random patches of the first benign frame and of
    its plain adversarial versions (the same patch boxes for every version)."""
    from edge_guard.calibration.data.folders import read_image
    from edge_guard.consistency import vote_entropy
    from edge_guard.crop import crop_patches
    from edge_guard.patches import sample_pairs

    name, path = benign_frame
    h, w = s.frame
    rng = np.random.default_rng(np.random.SeedSequence([int(s.seed), zlib.crc32(b"fig3")]))
    pairs = sample_pairs(h, w, s.patch, s.b_low, s.b_high, max(1, math.ceil(s.entropy_patches / 2)), rng)
    boxes = pairs.reshape(-1, 2)[:s.entropy_patches]
    versions = [("benign", Path(path))]
    for aname, rec in attacks.items():
        if rec["kind"] == "plain":
            versions.append((aname.rsplit("_", 1)[0], _adversarial(out / rec["folder"], name)))
    maps, images, summary = {}, {}, {}
    for label, p in versions:
        image = to_frame(read_image(p) if isinstance(p, Path) else p, (h, w))
        labels = scorer.segment(crop_patches(image, pairs, s.patch))[:len(boxes)]
        ent = vote_entropy(labels, boxes, (h, w), scorer.num_classes)
        maps[label], images[label] = ent, image
        summary[label] = {"mean_entropy": float(np.nanmean(ent)),
                          "covered_fraction": float(np.isfinite(ent).mean())}
    from .figures import entropy_figure

    png = entropy_figure(images, maps, out / "fig3_entropy.png", name, len(boxes))
    return {"frame": name, "patches": int(len(boxes)), "png": png.name, "maps": summary,
            "units": "nats; max log(19) = 2.94"}


def _earlier_fig3(out: Path):
    """Fig. 3 of an earlier run in ``out`` (its record, if its PNG is still there)."""
    try:
        fig3 = json.loads((out / "results.json").read_text()).get("fig3")
        return fig3 if fig3 and (out / fig3["png"]).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _adversarial(folder: Path, name: str) -> np.ndarray:
    from .attacks.store import read_adversarial

    return read_adversarial(folder, json.loads((folder / "manifest.json").read_text())["images"][name])


def _write_outputs(results: dict, out: Path) -> None:
    from .figures import write_figures
    from .report import write_report

    results["figures"] = write_figures(results, out)
    if "fig3" in results:
        results["figures"]["fig3"] = results["fig3"]["png"]
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "results.json")
    write_report(results, out)


__all__ = ["EvalSettings", "AttackSet", "plan_attacks", "evaluate", "detection_cell", "spatial_at",
           "tpr_at_fpr", "table1", "fig7"]
