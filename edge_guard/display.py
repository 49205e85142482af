"""The stream's picture sinks: a window (``--show``) and an annotated video (``--save``)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import cv2

from .errors import UserError
from .sources import DEFAULT_FPS, captured_stderr, quiet_opencv


def check_display() -> None:
    """UserError (one line) when ``--show`` cannot open a window here."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        raise UserError("--show needs a display, and none is set (no DISPLAY): "
                        "run headless without --show, or record with --save VIDEO")


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def check_video_path(save) -> None:
    """UserError (one line) unless ``save`` names a video file in an existing folder."""
    path = Path(save).expanduser()
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--save {save}: give a video file name ending in {', '.join(VIDEO_SUFFIXES)}")
    if path.is_dir() or not path.resolve().parent.is_dir():
        raise UserError(f"cannot write {save}: the folder {path.parent} does not exist")


class Display:
    """A sink that annotates each checked frame and shows it (``show``) and/or writes it (``save``).

    The saved video holds the checked frames, at the source's frame rate divided by ``every``
    (mp4v, so name it .mp4). In the window, q or Esc ends the stream. ``labels``: tint each
    frame lightly with the verdict's segmentation (when it carries one).
    """

    TITLE = "edge-guard"

    def __init__(self, patch: int, show: bool = False, save=None, fourcc: str = "mp4v",
                 labels: bool = False):
        self.patch, self.show, self.save, self.fourcc = patch, show, save, fourcc
        self.labels = bool(labels)
        self._writer = None
        self.written = 0
        if save is not None:
            check_video_path(save)

    def write(self, frame, verdict, info) -> bool:
        from .overlay import annotate

        note = f"frame {info.get('frame_index', '?')}  {info.get('latency_ms', 0.0):.0f} ms"
        img = annotate(frame.copy(), verdict, self.patch, info.get("scores", ()),
                       info.get("alarm_active", False), note, labels=self.labels)
        if self.save is not None:
            if self._writer is None:
                h, w = img.shape[:2]
                with captured_stderr(), quiet_opencv():  # our one line says it; not FFmpeg's
                    self._writer = cv2.VideoWriter(str(Path(self.save).expanduser()),
                                                   cv2.VideoWriter_fourcc(*self.fourcc),
                                                   float(info.get("fps", DEFAULT_FPS)), (w, h))
                if not self._writer.isOpened():
                    raise UserError(f"cannot write the video {self.save} (codec {self.fourcc})")
            self._writer.write(img)
            self.written += 1
        if self.show:
            try:
                cv2.imshow(self.TITLE, img)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27) or cv2.getWindowProperty(self.TITLE, cv2.WND_PROP_VISIBLE) < 1:
                    return False
            except cv2.error:
                raise UserError("--show: this OpenCV cannot open a window "
                                "(opencv-python-headless?): use --save VIDEO instead") from None
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.show:
            with contextlib.suppress(Exception):
                cv2.destroyWindow(self.TITLE)
