"""Write generated scenes as a Cityscapes folder, readable by every Cityscapes tool.

    <out>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png        (RGB image)
    <out>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png    (train ids)

Still frames get a sequence number each (frame number 19, as Cityscapes' annotated frames);
a clip gets one sequence number and consecutive frame numbers from 0. Every frame's seed is
derived from (seed, split, index), so train and val never share frames and any frame can be
regenerated on its own.
"""

import zlib
from pathlib import Path

import cv2
import numpy as np

from edge_guard.errors import UserError

from edge_guard.scenes import DEFAULT_SIZE, render_clip, render_frame

CITIES = ("synthberg", "renderdam", "polyville")
STILL_FRAME = 19
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"


def frame_seed(seed: int, split: str, index: int) -> int:
    """The scene seed of item ``index`` (still or clip) of a split."""
    entropy = [int(seed), zlib.crc32(split.encode()), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def stem(city: str, seq: int, frame: int) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def write_split(out_dir, split: str = "train", frames: int = 100, size=DEFAULT_SIZE,
                seed: int = 0, clips: int = 0, clip_length: int = 30, progress: bool = True,
                workers: int = 1) -> list[Path]:
    """Render ``frames`` stills and ``clips`` clips of ``clip_length`` frames into out_dir.

    Returns the image paths written, in order (labels sit beside them in gtFine/). Files of
    the same names are overwritten. ``workers`` > 1 renders in that many processes; the
    output is the same.
    """
    frames, clips, clip_length, seed = int(frames), int(clips), int(clip_length), int(seed)
    if not split or not split.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"split {split!r} must be a plain name such as train or val")
    if frames < 0 or clips < 0 or seed < 0:
        raise UserError("frames, clips and seed must be >= 0")
    if clips and clip_length < 1:
        raise UserError(f"clip length must be >= 1, got {clip_length}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise UserError(f"frame size {h}x{w} is too small: at least 16x16")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    jobs = [(str(out), split, seed, i, 0, (h, w)) for i in range(frames)]
    jobs += [(str(out), split, seed, frames + c, clip_length, (h, w)) for c in range(clips)]
    bar = _bar(frames + clips * clip_length, f"generate {split}", progress)
    written = []
    try:
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                for paths in pool.map(_job, jobs):
                    written += paths
                    bar.update(len(paths))
        else:
            for job in jobs:
                paths = _job(job)
                written += paths
                bar.update(len(paths))
    finally:
        bar.close()
    return written


def _job(job) -> list[Path]:
    """Render and save one still (clip_length 0) or one clip; the paths of its images."""
    out, split, seed, seq, clip_length, size = job
    out = Path(out)
    city = CITIES[seq % len(CITIES)]
    scene_seed = frame_seed(seed, split, seq)
    if clip_length == 0:
        image, labels = render_frame(scene_seed, size)
        return [_save(out, split, city, stem(city, seq, STILL_FRAME), image, labels)]
    return [_save(out, split, city, stem(city, seq, f), image, labels)
            for f, (image, labels) in enumerate(render_clip(scene_seed, clip_length, size))]


def _save(out: Path, split: str, city: str, name: str, image, labels) -> Path:
    image_dir = out / "leftImg8bit" / split / city
    label_dir = out / "gtFine" / split / city
    image_path = image_dir / (name + IMAGE_SUFFIX)
    label_path = label_dir / (name + LABEL_SUFFIX)
    try:
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {image_dir}: {exc.strerror}") from None
    # OpenCV writes BGR; flipping the channels makes the PNG read back as the RGB we drew.
    if not (cv2.imwrite(str(image_path), np.ascontiguousarray(image[..., ::-1]))
            and cv2.imwrite(str(label_path), labels)):
        raise UserError(f"cannot write to {out}: is the disk full or read-only?")
    return image_path


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _bar(total, desc, enabled):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="frame")
