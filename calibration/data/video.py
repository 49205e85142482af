"""Benign frames from a video of driving: every N-th frame from the start (``calibrate --data
drive.mp4 --every N``).

Frames are decoded in order, one pass per set: ``grab()`` for the frames skipped, ``read()``
for the frames kept, never a seek (seeking lands on key frames in many codecs, so the frame
found there could differ from the frame decoded in order). Nothing is held beyond one frame.
A frame is named ``<video file name>#<index in the video>``, e.g. ``drive.mp4#000120``.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from edge_guard.errors import DataError

from .clips import VIDEOS
from .folders import IMAGE_EXTENSIONS


def is_video(path: Path) -> bool:
    """Whether ``--data`` names a video: any file, or a missing path with a video suffix."""
    return path.is_file() or (not path.exists() and path.suffix.lower() in VIDEOS)


def frame_name(path: Path, index: int) -> str:
    return f"{path.name}#{index:06d}"


def _open(path: Path) -> cv2.VideoCapture:
    """An opened capture of ``path``; DataError saying whether it is missing or unreadable."""
    if not path.exists():
        raise DataError(f"video {path} does not exist")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(f"{path} is one image, not a video: give a video or a folder of images")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"cannot open video {path}: the file is unreadable or not a video OpenCV can decode")
    return cap


def _count(path: Path, every: int, limit: int) -> tuple[int, int | None]:
    """(frames kept at ``every``, at most ``limit``; the video's frame count if it ended first),
    by grabbing without converting: the exact count, which a container's header may not give."""
    cap = _open(path)
    kept = index = 0
    try:
        while kept < limit:
            if not cap.grab():
                return kept, index
            kept += index % every == 0
            index += 1
    finally:
        cap.release()
    return kept, None


def _reported_frames(path: Path) -> int | None:
    """The frame count the container reports (an estimate for some formats; None: none)."""
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return n if n > 0 else None


def check_length(path: Path, every: int, calib: int, holdout: int) -> None:
    """DataError unless the video gives ``calib + holdout`` frames at ``every``: how many it
    gives, and what to pass instead."""
    need = calib + holdout
    kept, total = _count(path, every, need)
    if kept >= need:
        return
    if not total:
        raise DataError(f"video {path} has no frames OpenCV can decode: the file is empty or unreadable")
    if total >= need:  # a smaller N gives enough: (need - 1) * N <= total - 1
        fix = f"pass --every {(total - 1) // (need - 1)} or less, or smaller --calib-frames/--holdout-frames"
    else:
        fix = f"pass smaller --calib-frames/--holdout-frames (at most {total} in all, at --every 1)"
    raise DataError(f"video {path} gives {kept} frames at --every {every} ({total} frames in all), but "
                    f"calibration needs {calib} + {holdout} held out = {need}: {fix}")


class VideoFrames:
    """Reads chosen frames of one video: ``reader(indices)`` yields them as RGB uint8, in one
    sequential pass from the start (``indices`` ascending). ImageSet's ``read``."""

    def __init__(self, path):
        self.path = Path(path)

    def __call__(self, indices):
        cap = _open(self.path)
        index = 0
        try:
            for want in indices:
                if want < index:
                    raise ValueError(f"frame indices must ascend: {want} after {index - 1}")
                while index < want and cap.grab():
                    index += 1
                ok, frame = cap.read() if index == want else (False, None)
                if not ok:
                    raise DataError(f"video {self.path} ended at frame {index}, before frame {want}: "
                                    "has it changed since the calibration checked it?")
                index += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def __repr__(self):
        return f"VideoFrames({str(self.path)!r})"


def video_frames(path, every: int, calib: int, holdout: int) -> tuple[list, list, VideoFrames, dict]:
    """(frame indices, names, reader, info) of the first ``calib + holdout`` frames at every
    ``every``-th frame of the video; DataError when it cannot give them."""
    path = Path(path).expanduser()
    if every < 1:
        raise DataError(f"--every must be at least 1, got {every}")
    check_length(path, every, calib, holdout)
    indices = [i * every for i in range(calib + holdout)]
    info = {"data": str(path.resolve()), "layout": "video", "every": every,
            "video_frames": _reported_frames(path)}
    return indices, [frame_name(path, i) for i in indices], VideoFrames(path), info


def _ordinal(n: int) -> str:
    return f"{n}{'th' if n % 100 in (11, 12, 13) else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def describe(info: dict, last: str) -> str:
    """Where the frames come from, for ``describe_benign``: the video and N (``last``: the
    last frame's name)."""
    n, total = info["every"], info.get("video_frames")
    step = "every frame" if n == 1 else f"every {_ordinal(n)} frame (--every {n})"
    of = f" of the {total} it reports" if total else ""
    return f"{step} of video {info['data']} from its start: frames 0..{int(last.rsplit('#', 1)[1])}{of}"
