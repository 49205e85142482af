"""Benign driving clips for the stream alarm's calibration: frames in drive order.

A clips folder is either a Cityscapes-layout split of sequences (``edge-guard generate
--frames 0 --clips N``: images named <city>_<seq>_<frame>_leftImg8bit.png; stills, sequences
of one frame, are left out) or a folder of videos (.mp4, .avi, .mkv, .mov, .webm), each one
drive. ``read_clips`` yields each clip as a list of BGR frames (as OpenCV reads them).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2

from edge_guard.errors import UserError

SUFFIX = "_leftImg8bit.png"
VIDEOS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def clip_paths(folder, split: str = "val") -> list:
    """[[frame paths] per sequence, in frame order] or [video path per drive]; UserError when
    the folder holds neither."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of clips: give a `edge-guard generate --clips` "
                        "folder or a folder of driving videos")
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEOS)
    if videos:
        return videos
    images = root / "leftImg8bit" / split
    groups = defaultdict(list)
    for path in images.glob(f"*/*{SUFFIX}") if images.is_dir() else ():
        try:
            city, seq, frame = path.name[:-len(SUFFIX)].rsplit("_", 2)
            groups[(city, seq)].append((int(frame), path))
        except ValueError:
            continue
    clips = [[p for _, p in sorted(g)] for _, g in sorted(groups.items()) if len(g) > 1]
    if not clips:
        raise UserError(f"{root} holds no videos and no clips under leftImg8bit/{split}: make some with "
                        f"`edge-guard generate --out {root} --split {split} --frames 0 --clips 40 "
                        "--clip-length 90`, or put benign driving videos there")
    return clips


def read_clip(clip) -> list:
    """The BGR frames of one clip (a list of image paths, or a video path)."""
    if isinstance(clip, (list, tuple)):
        frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in clip]
        bad = next((p for p, f in zip(clip, frames) if f is None), None)
        if bad is not None:
            raise UserError(f"cannot read {bad}: replace or remove it")
        return frames
    cap = cv2.VideoCapture(str(clip))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if len(frames) < 2:
        raise UserError(f"cannot read frames from {clip}: is it a video OpenCV can decode?")
    return frames


def frame_count(clip) -> int | None:
    """Frames in a clip, without decoding it where that is cheap (None: unknown)."""
    if isinstance(clip, (list, tuple)):
        return len(clip)
    cap = cv2.VideoCapture(str(clip))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return n if n > 0 else None
