"""Training of a registered segmentation model on a Cityscapes-layout folder.

Scale-resilient training as in the paper (§5.1): random rescaling by 0.5x..2x and random
square crops, cross-entropy ignoring 255 with ENet class weights (so thin classes count), whose
prior the checkpoint's logit bias takes back out of predictions (so they are not over-predicted).
Checkpoints are resumable and carry the model name, classes, normalisation, logit bias and how
much data the model has seen.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from edge_guard.classes import IGNORE, NUM_CLASSES
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError
from edge_guard.calibration.data.conditions import photometric
from edge_guard.calibration.data.folders import open_dataset
from edge_guard.calibration.models import create_model
from edge_guard.calibration.models.checkpoint import load_segmenter, save_checkpoint
from edge_guard.calibration.models.segmenter import Segmenter


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "edge_small"
    split: str = "train"
    steps: int = 3000
    batch_size: int = 8
    crop: int = 512
    scale_min: float = 0.5
    scale_max: float = 2.0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    workers: int = 2
    save_every: int = 250
    class_weights: str = "enet"
    model_kwargs: dict = field(default_factory=dict)
    init: str | None = None  # start from this checkpoint's weights (fresh optimiser and schedule)
    preload: bool = False  # decode every frame once into memory (workers share it after fork)
    photometric: float = 0.0  # probability of each camera-condition change per crop (conditions.py)


class ScaleCropDataset(Dataset):
    """Random rescale (scale_min..scale_max), flip and crop of the frames of a labelled folder.

    ``photometric``: probability of each camera-condition change (gain, noise, blur, JPEG;
    ``conditions.photometric``) on the crop, i.e. at the resolution the model sees.
    Items: image float32 (3, crop, crop) in [0, 1], labels int64 (crop, crop) with 255 padding.
    """

    def __init__(self, frames, crop: int, scale_min: float, scale_max: float, seed: int,
                 photometric: float = 0.0):
        self.frames = frames
        self.crop = crop
        self.scale_min, self.scale_max = scale_min, scale_max
        self.seed = seed
        self.photometric = float(photometric)
        self.epoch = 0

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        # Per-item generator so that a resumed run and any worker count draw the same crops.
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, labels, _ = self.frames[index]
        scale = math.exp(rng.uniform(math.log(self.scale_min), math.log(self.scale_max)))
        h, w = labels.shape
        nh, nw = max(8, round(h * scale)), max(8, round(w * scale))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        labels = cv2.resize(labels, (nw, nh), interpolation=cv2.INTER_NEAREST)
        if rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        c = self.crop
        ph, pw = max(0, c - nh), max(0, c - nw)
        if ph or pw:
            image = cv2.copyMakeBorder(np.ascontiguousarray(image), 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            labels = cv2.copyMakeBorder(np.ascontiguousarray(labels), 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE)
        y = int(rng.integers(0, labels.shape[0] - c + 1))
        x = int(rng.integers(0, labels.shape[1] - c + 1))
        image = np.ascontiguousarray(image[y:y + c, x:x + c])
        if self.photometric > 0:  # after the old draws: a run without it crops exactly as before
            image = photometric(image, rng, self.photometric)
        image = image.astype(np.float32) / 255.0
        labels = labels[y:y + c, x:x + c].astype(np.int64)
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), torch.from_numpy(labels.copy())


def preload(frames, threads: int = 8) -> list:
    """Every (image, labels, name) of ``frames`` decoded into a list (OpenCV decodes off the GIL).

    Decoding a PNG costs more than the crop and rescale that use it, so a GPU run that reads
    every frame from disk is bound by its data loaders; decoded once, forked workers share it.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(frames.__getitem__, range(len(frames))))


def channel_stats(frames, limit: int = 64) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (RGB, [0, 1] units) over up to `limit` frames."""
    total = np.zeros(3)
    sq = np.zeros(3)
    count = 0
    for i in np.linspace(0, len(frames) - 1, min(limit, len(frames))).astype(int):
        image = frames[int(i)][0].reshape(-1, 3).astype(np.float64) / 255.0
        total += image.sum(0)
        sq += (image ** 2).sum(0)
        count += image.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean ** 2, 1e-8))
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def class_weights(frames, num_classes: int, limit: int = 100) -> list[float]:
    """ENet's class weights 1 / ln(1.02 + p_c) from label frequencies p_c over up to `limit` frames.

    Rare, thin classes (poles, lights, bicycles) barely move an unweighted loss but count as
    much as road in mIoU. Scaled so that the average weight per pixel is 1 (same loss scale).
    """
    counts = np.zeros(num_classes, np.float64)
    for i in np.linspace(0, len(frames) - 1, min(limit, len(frames))).astype(int):
        labels = frames[int(i)][1]
        counts += np.bincount(labels[labels < num_classes].ravel(), minlength=num_classes)[:num_classes]
    p = counts / max(1.0, counts.sum())
    w = 1.0 / np.log(1.02 + p)
    w /= max(1e-12, float((p * w).sum()))
    return [round(float(v), 4) for v in w]


def crop_size(crop: int, frames) -> int:
    """The square crop (pixels) training takes: ``crop`` clipped to the frames' labels, or
    their short side when ``crop`` <= 0; it is what a checkpoint records as its crop."""
    shape = frames[0][1].shape
    return min(crop, *shape) if crop > 0 else min(shape)


def poly_lr(base: float, step: int, steps: int, warmup: int = 100) -> float:
    """Linear warm-up then poly(0.9) decay, the usual schedule of DRN/DLA training."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (1 - (step - warmup) / max(1, steps - warmup)) ** 0.9


class _SkipFirst(Sampler):
    """The indices of ``sampler`` after its first ``skip`` (no frame is loaded to skip it)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, int(skip)

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          device: str = "cpu") -> dict:
    """Train per `cfg` on `device`, writing a checkpoint to cfg.out every cfg.save_every steps
    and at the end.

    Returns a summary dict (final loss, steps, seconds, samples seen).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    frames = open_dataset(cfg.data, cfg.split)
    if getattr(frames, "labeled", True) is False:
        raise UserError(f"{cfg.data} has no labels for split {cfg.split!r}: training needs a labelled folder")
    out = Path(cfg.out)
    if out.is_dir():  # found now, not when the first checkpoint is written
        raise UserError(f"--out {out} is a folder: give a checkpoint file name, e.g. {out / 'model.pt'}")
    out.parent.mkdir(parents=True, exist_ok=True)

    state, init_meta = None, {}
    if resume and out.exists():
        segmenter, meta = load_segmenter(out)
        state = meta.get("train") or {}
        if state.get("config", {}).get("arch", segmenter.name) != cfg.arch:
            raise UserError(f"{out} holds a {segmenter.name} model, not {cfg.arch}: pick another --out")
        log(f"resuming {out} at step {state.get('step', 0)}")
    elif cfg.init:
        segmenter, init_meta = load_segmenter(cfg.init, arch=cfg.arch)  # arch: official weights
        if segmenter.name != cfg.arch:
            raise UserError(f"--init {cfg.init} holds a {segmenter.name} model, not {cfg.arch}: pass --arch {segmenter.name}")
        log(f"starting from the weights of {cfg.init}")
    else:
        mean, std = channel_stats(frames)
        net = create_model(cfg.arch, num_classes=NUM_CLASSES, **cfg.model_kwargs)
        segmenter = Segmenter(net, name=cfg.arch, num_classes=NUM_CLASSES, mean=mean, std=std,
                              model_kwargs=cfg.model_kwargs)

    segmenter = segmenter.to(device)
    cuda = str(device).startswith("cuda")
    if cuda:
        # Fixed crop size: let cuDNN pick the fastest convolution algorithms once.
        torch.backends.cudnn.benchmark = True
    params = [p for p in segmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    seen = 0
    elapsed = 0.0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        step, seen, elapsed = state["step"], state["samples_seen"], state.get("seconds", 0.0)

    # One entry per (re)start, so a checkpoint trained in stages says what each stage was.
    # --init: the new run continues the history of the weights it starts from.
    earlier = (state or {}).get("history") or ((init_meta.get("train") or {}).get("history") if cfg.init else None)
    history = list(earlier or []) + [{
        "from_step": step, "to_step": cfg.steps, "data": str(Path(cfg.data).resolve()),
        "split": cfg.split, "frames": len(frames), "class_weights": cfg.class_weights,
        "batch_size": cfg.batch_size, "crop": cfg.crop, "lr": cfg.lr, "device": str(device),
        "photometric": cfg.photometric,
        **({"init": str(Path(cfg.init).resolve()), "init_sha256": sha256_file(cfg.init)} if cfg.init and not state else {})}]
    weights = None
    if cfg.class_weights == "enet":
        weights = torch.tensor(class_weights(frames, segmenter.num_classes), dtype=torch.float32, device=device)
    elif cfg.class_weights != "none":
        raise UserError(f"unknown class weighting {cfg.class_weights!r}: use enet or none")
    # The loss trains raw logits toward the weighted posterior; predictions take the
    # weights' prior back out (see Segmenter), which this run's weights alone determine.
    segmenter.set_logit_bias(None if weights is None else (-torch.log(weights)).tolist())

    crop = crop_size(cfg.crop, frames)
    if cfg.preload:
        log(f"decoding {len(frames)} frames into memory")
        frames = preload(frames)
    data = ScaleCropDataset(frames, crop, cfg.scale_min, cfg.scale_max, cfg.seed, cfg.photometric)

    def checkpoint(final_loss):
        save_checkpoint(out, segmenter, train_state={
            "step": step, "samples_seen": seen, "seconds": round(elapsed + time.perf_counter() - start, 1),
            "loss": final_loss, "optimizer": optimizer.state_dict(),
            "config": {**asdict(cfg), "crop": crop,
                       "weights": None if weights is None else weights.tolist()},
            "data": {"root": str(Path(cfg.data).resolve()), "split": cfg.split, "frames": len(frames)},
            "history": history,
        })

    segmenter.train()
    start = time.perf_counter()
    # Speed after warm-up (cuDNN's search, loader start): the second half of this run's steps.
    half, half_time = step + (cfg.steps - step) // 2, None
    ema = state.get("loss") if state else None
    per_epoch = max(1, len(data) // cfg.batch_size)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {cfg.arch}", unit="step")
    while step < cfg.steps:
        # The epoch seeds both the shuffle and the augmentation, and a run resumed mid-epoch
        # skips the batches it already took: it continues the same stream of crops.
        data.epoch = step // per_epoch
        generator = torch.Generator().manual_seed(cfg.seed * 100003 + data.epoch)
        order = _SkipFirst(RandomSampler(data, generator=generator), (step % per_epoch) * cfg.batch_size)
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=order, drop_last=len(data) >= cfg.batch_size,
                            num_workers=cfg.workers, pin_memory=cuda, generator=generator)
        for images, labels in loader:
            if step >= cfg.steps:
                break
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(cfg.lr, step, cfg.steps)
            try:
                logits = segmenter.raw_logits(images)
            except ValueError as exc:  # e.g. BatchNorm over a 1x1 map: a crop too small for the net
                raise UserError(f"{cfg.arch} cannot train on {tuple(images.shape[-2:])} crops in batches of "
                                f"{images.shape[0]} ({str(exc).splitlines()[0]}): use a larger --crop or "
                                "--batch-size") from None
            loss = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += images.shape[0]
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            if step == half:
                half_time = time.perf_counter()
            if step % cfg.save_every == 0:
                checkpoint(ema)
    bar.close()
    end = time.perf_counter()
    checkpoint(ema)
    elapsed += time.perf_counter() - start
    steady = None
    if half_time is not None and step > half:
        steady = round((step - half) / max(1e-9, end - half_time), 2)
    return {"steps": step, "samples_seen": seen, "loss": ema, "seconds": round(elapsed, 1),
            "steps_per_s_steady": steady, "out": str(out)}
