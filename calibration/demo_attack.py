"""The attack of ``edge-guard demo``: DAG toward an empty road, white-box on the full frame,
8-bit, as the paper's; it knows nothing of the detector's patches.

Targets (:data:`TARGETS`), both ``targets.scene`` (people and vehicles replaced by what lies
behind them), from different source labels:

- ``scene``: the labels of a frame of another drive (the paper's "Scene" target): the model
  is made to see a different, empty street, the same one for the whole attacked stretch;
- ``vanish``: the frame's own ground-truth labels: the same street, its people and
  vehicles gone. Only the people and vehicle pixels count (DAG's mask): the attack spends
  its steps on making them vanish, not on the model's ordinary mistakes elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from edge_guard.errors import UserError

from .attacks import dag
from .attacks.run import load_attack_model
from .models.segmenter import labels_of
from .targets import MOVABLE, make_target

TARGETS = ("scene", "vanish")
#: The other drive a ``scene`` target comes from: this offset plus the clip's seed.
SOURCE_SEED_OFFSET = 1000


def demo_target(kind: str, labels: np.ndarray, seed: int) -> np.ndarray:
    """(H, W) uint8 target for a frame with ground truth ``labels`` of the drive ``seed``."""
    from edge_guard.scenes import render_frame

    if kind == "vanish":
        source = labels
    elif kind == "scene":
        source = render_frame(seed + SOURCE_SEED_OFFSET, labels.shape)[1]
    else:
        raise UserError(f"unknown demo target {kind!r}: choose one of {', '.join(TARGETS)}")
    return make_target("scene", labels.shape, seed, source_labels=source)


def _seen(pred: np.ndarray, movable: np.ndarray) -> Optional[float]:
    """Fraction of the true people/vehicle pixels that ``pred`` calls a person or vehicle."""
    if not movable.any():
        return None
    return float(np.isin(pred[movable], MOVABLE).mean())


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the offline extra; without it, no bar
        enabled = False
        tqdm = None
    if not enabled:
        class _Off:
            n = 0

            def update(self, k=1): self.n += k
            def set_postfix_str(self, *a, **k): pass
            def refresh(self): pass
            def close(self): pass
        return _Off()
    return tqdm(total=total, desc="DAG", unit="step", dynamic_ncols=True)


def attack_frames(model_path, frames: dict, *, iters: int, step: float, threshold: float = 0.99,
                  seed: int = 0, target: str = "scene", progress: bool = True,
                  threads: Optional[int] = None, device: Optional[str] = None,
                  on_frame: Optional[Callable] = None) -> dict:
    """Attack each frame of ``frames`` {index: (image RGB uint8 (H, W, 3), labels (H, W))} of
    the drive ``seed`` toward ``target`` (see :data:`TARGETS`).

    Returns {index: (adversarial RGB uint8, record)}; record: success (fraction of the pixels
    that count on target: all, or for ``vanish`` the people and vehicles), counted (which),
    clean_success, miou, linf and l2 (RMS) in 0..255 levels, iterations, seconds,
    movable_seen_clean / movable_seen_adv (fraction of true person/vehicle pixels the model
    calls a person or vehicle; None without any). ``on_frame(index, adv, record, maps)`` is
    called as each frame finishes (for a cache); maps: {"clean", "attacked", "target"} label
    maps (H, W) uint8, the model's predictions and the target. The progress bar counts gradient steps.
    ``device``: default the GPU when PyTorch sees one, else the CPU.
    """
    if threads:
        torch.set_num_threads(int(threads))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    segmenter, _ = load_attack_model(model_path, device=device)
    per_frame = iters + 1  # DAG's forwards: one per step, one to judge the last
    bar = _progress(per_frame * len(frames), progress)

    def counted(x):
        bar.update(len(x))
        return segmenter(x)

    out = {}
    try:
        for done, (index, (image, labels)) in enumerate(sorted(frames.items())):
            goal = demo_target(target, labels, seed)
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255)
            x = x.to(device)
            t = torch.from_numpy(goal.astype(np.int64))[None].to(device)
            movable = np.isin(labels, MOVABLE)
            mask = None
            if target == "vanish" and movable.any():
                mask = torch.from_numpy(movable)[None].to(device)
            with torch.no_grad():
                clean_pred = labels_of(segmenter(x))[0].cpu().numpy()
            res = dag(counted, x, t, mask=mask, gamma=step, max_iter=iters, threshold=threshold,
                      quantize=True)
            adv = (res.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            valid = goal != 255 if mask is None else (goal != 255) & movable
            rec = res.records()[0]
            record = {"success": rec["success"], "miou": rec["miou"],
                      "counted": "all pixels" if mask is None else "people and vehicle pixels",
                      "clean_success": float((clean_pred[valid] == goal[valid]).mean()),
                      "linf": 255 * rec["linf"], "l2": 255 * rec["l2"],
                      "iterations": rec["iterations"], "seconds": rec["seconds"],
                      "movable_fraction": float(movable.mean()),
                      "movable_seen_clean": _seen(clean_pred, movable),
                      "movable_seen_adv": _seen(res.prediction[0].numpy(), movable)}
            record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                      for k, v in record.items()}
            bar.n = per_frame * (done + 1)  # a frame that reached its target stops early
            bar.set_postfix_str(f"frame {index}: {record['success']:.1%} on target")
            bar.refresh()
            out[index] = (adv, record)
            if on_frame is not None:
                maps = {"clean": clean_pred.astype(np.uint8),
                        "attacked": res.prediction[0].numpy().astype(np.uint8), "target": goal}
                on_frame(index, adv, record, maps)
    finally:
        bar.close()
    return out


def write_demo_frames(model_path, bundle_dir, out, *, seed: int, frames: int, attacked: tuple,
                      iters: int, target: str = "scene", size=None, progress: bool = True,
                      threads: Optional[int] = None) -> dict:
    """Attack ``attacked`` (first, last) of the demo's clip and store the perturbations in
    ``out`` (the frames ``edge-guard demo`` replays without PyTorch). Settings as the demo's
    live attack; the bundle's model sha256 is recorded too. Returns the manifest's frames."""
    from edge_guard.bundle import load_bundle
    from edge_guard.demo import STEP, THRESHOLD, attack_settings, render
    from edge_guard.demo_frames import MANIFEST, FrameStore
    from edge_guard.engine_cache import sha256_file
    from edge_guard.paths import DEFAULT_BUNDLE

    bundle = load_bundle(bundle_dir if bundle_dir is not None else DEFAULT_BUNDLE)
    size = tuple(size) if size is not None else tuple(bundle.frame_size)
    first, last = attacked
    if not 0 <= first <= last < frames:
        raise UserError(f"attacked frames {first}-{last} are not inside the clip's 0-{frames - 1}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("delta_*")) + [out / MANIFEST]:  # what an earlier run wrote
        old.unlink(missing_ok=True)
    settings = attack_settings(seed, frames, size, iters, sha256_file(model_path), target)
    settings["bundle_model_sha256"] = bundle.model_sha256
    store = FrameStore(out, settings, frames={})
    clip = render(seed, frames, size)
    attack_frames(model_path, {i: clip[i] for i in range(first, last + 1)}, iters=iters, step=STEP,
                  threshold=THRESHOLD, seed=seed, target=target, progress=progress, threads=threads,
                  on_frame=lambda i, adv, rec, maps: store.save(i, clip[i][0], adv, rec, maps))
    return store.frames
