"""Fig. 8: do adversarial frames made against one model fool another (of the same architecture
or, with --transfer-models ARCH=PATH, of another)?

Models: ``--transfer-models`` checkpoints (``ARCH=PATH`` for an official checkpoint of another
architecture than the evaluated one's), or three models of the evaluated model's architecture
trained here with different seeds (``train``, on the data's train split). Each
model j is attacked (plain attack, the emblem target when evaluated, else the first target);
every model i then segments model j's adversarial frames. Cell (i, j), as in the paper:

- success: fraction of pixels predicted as the target, over the target's valid pixels where
  model i's prediction of the clean frame is not already the target;
- normalised mIoU: the mIoU between model i's prediction and the target over those same
  pixels (the paper's "normalized mIoU excluding pixels with the same label for the ground
  truth adversarial target", with model i's clean prediction standing in for the ground truth,
  which image folders lack).

The diagonal is the white-box attack; off-diagonal cells measure transfer.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from edge_guard.errors import DataError

LABELS = "ABCDEFGH"
#: Checkpoint period of the Fig. 8 models (steps): a resumed run loses at most this many.
SAVE_EVERY = 100
#: TrainConfig fields that make two training runs the same run (with the data root and crop).
RUN_KEYS = ("arch", "split", "steps", "batch_size", "seed", "lr", "weight_decay", "scale_min",
            "scale_max", "class_weights", "model_kwargs")


def training_frames(s):
    """The labelled frames Fig. 8's models train on; DataError (one line) when there are none.
    ``evaluate`` calls it before any attack, so a bad split costs seconds, not a run."""
    from .data.folders import open_dataset

    try:
        frames = open_dataset(s.data, s.transfer_split)
    except DataError as exc:
        raise DataError(f"Fig. 8 trains its models on split {s.transfer_split!r}, which is not "
                        f"usable ({exc}); pass --transfer-models CKPT,CKPT,CKPT or --skip fig8") from None
    if not getattr(frames, "labeled", False) or len(frames) == 0:
        raise DataError(f"Fig. 8 trains on labelled frames, but {s.data} split {s.transfer_split!r} has "
                        "none: pass --transfer-models CKPT,CKPT,CKPT or --skip fig8")
    return frames


def _train_models(s, meta: dict, progress: bool, log, device: str = "cpu") -> list:
    from .train import TrainConfig, crop_size, train

    frames = training_frames(s)
    folder = Path(s.out) / "transfer" / "models"
    crop = crop_size(s.transfer_crop, frames)  # what train() records as the run's crop
    paths = []
    gpu = str(device).startswith("cuda")
    for i in range(3):
        path = folder / f"model_{LABELS[i]}.pt"
        cfg = TrainConfig(data=str(s.data), out=str(path), arch=meta.get("model") or "edge_small",
                          split=s.transfer_split, steps=s.transfer_steps, seed=s.seed + 1 + i,
                          crop=s.transfer_crop, batch_size=4 if s.quick else 8,
                          # On a GPU the loaders, not the model, set the pace: decode once, load in parallel.
                          workers=min(8, os.cpu_count() or 1) if gpu else 0, preload=gpu,
                          # Hours on a CPU: checkpoints often enough that an interrupted run resumes.
                          save_every=max(1, min(SAVE_EVERY, s.transfer_steps)),
                          model_kwargs=dict(meta.get("model_kwargs") or {}))
        done = _steps_done(path, cfg, crop)
        if done < cfg.steps:
            what = f"resuming model {LABELS[i]} at step {done}" if done else f"training model {LABELS[i]}"
            log(f"Fig. 8: {what} (seed {cfg.seed}, {cfg.steps} steps) -> {path}")
            train(cfg, resume=done > 0, progress=progress, log=log, device=device)
        paths.append(path)
    return paths


def _steps_done(path: Path, cfg, crop: int) -> int:
    """Steps of ``cfg``'s run already in the checkpoint at ``path``: 0 when there is none or
    it holds another run (other seed, data, schedule or crop), which is then trained afresh."""
    from .models.checkpoint import load_segmenter

    if not path.is_file():
        return 0
    _, meta = load_segmenter(path)
    state = meta.get("train") or {}
    saved = state.get("config") or {}
    wanted = {**{k: getattr(cfg, k) for k in RUN_KEYS}, "crop": crop}
    if any(saved.get(k) != v for k, v in wanted.items()):
        return 0
    if Path(saved.get("data", "")).resolve() != Path(cfg.data).resolve():
        return 0
    return int(state.get("step", 0))


def transfer_entry(text: str, default_arch: Optional[str]) -> tuple:
    """'[ARCH=]PATH' of --transfer-models -> (arch, Path): ARCH names the architecture of a raw
    (official) checkpoint, so Fig. 8 can pair architectures (e.g. ``dla34=dla34.pth``); without
    it the evaluated model's --arch applies (none: the file must be an edge-guard checkpoint,
    which names its own)."""
    arch, sep, path = text.partition("=")
    if not (sep and re.fullmatch(r"[A-Za-z_]\w*", arch)):
        arch, path = default_arch, text
    return arch, Path(path).expanduser()


def cross_metrics(pred: np.ndarray, target: np.ndarray, clean_pred: np.ndarray, num_classes: int) -> dict:
    """Success and normalised mIoU of one prediction (see the module docstring)."""
    from edge_guard.consistency import miou

    valid = (target != 255) & (clean_pred != target)
    if not valid.any():
        return {"success": float("nan"), "miou": float("nan"), "pixels": 0}
    p, t = pred[valid], target[valid]
    return {"success": float((p == t).mean()), "miou": float(miou(p, t, num_classes)),
            "pixels": int(valid.sum())}


def transferability(s, names: list, device: str, progress: bool, log, meta: dict) -> dict:
    """Fig. 8's matrices on the frames ``names`` (the first ones of the split):
    {method: {success[i][j], miou[i][j]}}, the models and the settings. ``meta``: the
    evaluated checkpoint's, whose architecture the trained models share."""
    from edge_guard.engine_cache import sha256_file

    from .attacks.run import run_attacks
    from .attacks.store import read_adversarial
    from .data.folders import read_image, read_labels
    from .evaluate import AttackSet, attack_settings, setting_key, to_frame
    from .models.checkpoint import load_segmenter
    from .scoring import torch_segment

    if s.transfer_models:
        archs, paths = zip(*(transfer_entry(e, s.arch) for e in s.transfer_models))  # checked by EvalSettings
        source = "given"
    else:
        paths = _train_models(s, meta, progress, log, device)
        archs = [s.arch] * len(paths)
        source = f"trained here: {s.transfer_steps} steps each, seeds {s.seed + 1}..{s.seed + 3}"
    labels = LABELS[:len(paths)]
    target = "emblem" if "emblem" in s.targets else s.targets[0]
    models = [load_segmenter(p, arch=a)[0].to(device).eval() for p, a in zip(paths, archs)]
    segments = [torch_segment(m, device) for m in models]
    shas = [sha256_file(p) for p in paths]
    out = Path(s.out)
    quality = _clean_miou(models, s, len(names), device, progress)
    result = {"models": [{"label": lab, "path": str(p.resolve()), "arch": m.name, "sha256": sha, "clean_miou": q}
                         for lab, p, m, sha, q in zip(labels, paths, models, shas, quality)],
              "source": source, "target": target, "frames": len(names),
              "convention": "cell [i][j]: adversarial frames made against model j, segmented by model i",
              "methods": {}}
    for method in s.method_labels:
        a = AttackSet(method, target)
        settings = attack_settings(s, a)
        success = np.full((len(paths), len(paths)), np.nan)
        mious = np.full_like(success, np.nan)
        attack_success = []
        for j, path in enumerate(paths):
            folder = out / "transfer" / "attacks" / f"{labels[j]}_{setting_key(a, settings, shas[j])}"
            log(f"Fig. 8: {method} against model {labels[j]} -> {folder.relative_to(out)}")
            run_attacks(path, s.data, s.split, settings, folder, arch=archs[j], limit=s.adversarial,
                        device=device, progress=progress, store="delta")
            doc = json.loads((folder / "manifest.json").read_text())
            recs = [(n, doc["images"][n]) for n in names]
            attack_success.append(float(np.mean([r["success"] for _, r in recs])))
            cells = [[] for _ in paths]
            for name, rec in recs:
                adv = read_adversarial(folder, rec)
                tgt = read_labels(folder / rec["target"])
                clean = to_frame(read_image(rec["source"]), adv.shape[:2])
                for i, seg in enumerate(segments):
                    pred, clean_pred = seg(np.stack([adv, clean]))
                    cells[i].append(cross_metrics(pred, tgt, clean_pred, models[i].num_classes))
            for i in range(len(paths)):
                success[i, j] = np.nanmean([c["success"] for c in cells[i]])
                mious[i, j] = np.nanmean([c["miou"] for c in cells[i]])
        result["methods"][method] = {"success": success.tolist(), "miou": mious.tolist(),
                                     "white_box_success": attack_success}
    return result


def _clean_miou(models: list, s, n: int, device: str, progress: bool) -> list:
    """Each model's mIoU (0-1) on the first ``n`` frames of the evaluated split against their
    labels (None for an unlabelled folder): how good the models are whose transfer is measured."""
    from .data.folders import open_dataset
    from .segeval import evaluate_segmentation

    try:  # a Cityscapes/BDD layout without its label folder raises rather than says "unlabelled"
        frames = open_dataset(s.data, s.split)
    except DataError:
        return [None] * len(models)
    if not getattr(frames, "labeled", False):
        return [None] * len(models)
    return [round(evaluate_segmentation(m, frames, limit=n, device=device, progress=progress)["miou"], 4)
            for m in models]
