"""Where an attack folder's batches run: here, one after another (SerialPool), or as tasks on a
Ray cluster (calibration/attacks/ray_pool.py). ``run_attacks`` writes every result itself, so
a pool only computes: its workers need neither the data folder nor the output folder.

A pool has one method::

    imap(fn, shared, items) -> iterator of (item, fn(*shared, item)), in completion order

``shared`` (the model, the settings) is sent once; ``items`` may be a generator, consumed no
faster than the pool has room for, so a cluster never holds more frames than it attacks.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator


class SerialPool:
    """Every item here, in order."""

    name = "serial"

    def imap(self, fn: Callable, shared: tuple, items: Iterable) -> Iterator:
        for item in items:
            yield item, fn(*shared, item)


def attack_batch(segmenter, settings, views, prepared: list) -> list:
    """Attack one batch (run._prepare's dicts: x (1, 3, H, W), target (H, W) uint8, seed) with
    ``settings`` (resolved AttackSettings) and ``views``; returns per frame (adversarial (H, W, 3)
    uint8 RGB, the AttackResult record, the batch's seconds). Pure: what a Ray task runs."""
    import numpy as np
    import torch

    from . import ATTACKS

    x = torch.cat([p["x"] for p in prepared])
    device = x.device
    t = torch.from_numpy(np.stack([p["target"] for p in prepared]).astype(np.int64)).to(device)
    hyper = {"gamma": settings.step} if settings.method == "dag" else {"step": settings.step}
    result = ATTACKS[settings.method](segmenter, x, t, quantize=True, l2=settings.l2, linf=settings.linf,
                                      max_iter=settings.max_iter, threshold=settings.threshold, views=views,
                                      seed=[p["seed"] for p in prepared], **hyper)
    seconds = float(result.seconds.max())
    return [((result.images[j].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8), metrics, seconds)
            for j, metrics in enumerate(result.records())]
