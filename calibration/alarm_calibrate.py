"""Add a calibrated sequential (CUSUM) alarm to a bundle from benign driving clips.

Every frame of every clip is checked in drive order with the bundle's own guard (ONNX
Runtime, the patch draw seeded per clip), and guard.json's ``alarm`` section is set by
:func:`edge_guard.calibration.alarm.calibrate_cusum` for the bundle's threshold, K and the
stream's frame rate. The section records the K it was calibrated at: scores at another K
spread differently, so a run at another K does not use it (edge_guard.alarms.make_alarm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_guard.bundle import GUARD_FILE, load_bundle, write_guard_json
from edge_guard.errors import UserError

from .alarm import calibrate_cusum
from .data.clips import clip_paths, frame_count, read_clip

MIN_FRAMES = 300  # fewer benign frames say too little about the lower tail


def drive_verdicts(guard, frames, key: int, rgb: bool = False):
    """The verdicts of one drive's frames (a generator: each verdict holds the frame's labels,
    so a long drive is not kept), checked in order with the patch draw seeded by ``key``: a
    drive's scores do not depend on which drives were checked before it."""
    guard.rng = np.random.default_rng([int(key), 25])
    for frame in frames:
        yield guard.check(frame, rgb=rgb)


def score_clips(guard, clips, progress: bool = True) -> list:
    """(frames,) scores per clip, in frame order (clips as from clip_paths; clip i seeds i)."""
    from tqdm import tqdm

    total = sum(frame_count(c) or 0 for c in clips)
    out = []
    with tqdm(total=total, desc="alarm clips", unit="frame", dynamic_ncols=True, disable=not progress) as bar:
        for i, clip in enumerate(clips):
            out.append(np.array([v.score for v in drive_verdicts(guard, read_clip(clip), i)], np.float64))
            bar.update(out[-1].size)
    return out


def alarm_section(scores, threshold: float, k: int, per_hour: float = 1.0, fps: float = 15.0,
                  seed: int = 0, source: str | None = None) -> dict:
    """guard.json's ``alarm`` section from benign per-clip score arrays checked at K = ``k``."""
    frames = sum(int(np.asarray(s).size) for s in scores)
    if frames < MIN_FRAMES:
        raise UserError(f"{source or 'the clips'} hold {frames} benign frames; the alarm needs at least "
                        f"{MIN_FRAMES} (a few minutes of driving) to say anything about rare low scores")
    section = calibrate_cusum(scores, per_hour=per_hour, fps=fps, threshold=threshold, seed=seed)
    section["k"] = int(k)
    if source is not None:
        section["calibration"]["source"] = str(source)
    return section


def write_alarm(bundle_dir, section: dict) -> None:
    """Set guard.json's ``alarm`` section (the rest of the file as it is)."""
    bundle_dir = Path(bundle_dir)
    doc = json.loads((bundle_dir / GUARD_FILE).read_text(encoding="utf-8"))
    doc["alarm"] = section
    write_guard_json(bundle_dir, doc)


def add_alarm(bundle_dir, clips_dir, split: str = "val", per_hour: float = 1.0, fps: float = 15.0,
              seed: int = 0, progress: bool = True, threads: int | None = None) -> dict:
    """Score the clips and write guard.json's ``alarm`` section into ``bundle_dir``; returns it."""
    from edge_guard.guard import Guard

    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    clips = clip_paths(clips_dir, split)
    with Guard.load(bundle_dir, backend="onnxruntime", threads=threads) as guard:
        scores = score_clips(guard, clips, progress)
        k = guard.k
    section = alarm_section(scores, bundle.threshold, k, per_hour, fps, seed, source=clips_dir)
    write_alarm(bundle_dir, section)
    return section
