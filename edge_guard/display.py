"""The stream's picture sinks: a window (``--show``) and an annotated video (``--save``)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import cv2

from .errors import UserError
from .sources import DEFAULT_FPS, captured_stderr, quiet_opencv


HEADLESS = "run headless without --show, or record with --save VIDEO"
# Opened in a child process: on a display that does not answer, OpenCV's Qt windows abort
# the whole process (no exception to catch), which mid-run would lose the end record.
PROBE = """
import sys, cv2
try:
    cv2.namedWindow("edge-guard probe")
    cv2.waitKey(1)
    cv2.destroyAllWindows()
except cv2.error as exc:
    sys.exit(str(exc).strip().splitlines()[-1])
"""
PROBE_TIMEOUT_S = 20.0
_window_ok: set = set()  # the displays a window opened on: one probe per display and process


def gui_backend() -> str | None:
    """OpenCV's window toolkit as its build information names it ("QT5", "GTK3", ...),
    None when it was built without one (opencv-python-headless), "" when it does not say."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return None if value.strip().upper() == "NONE" else value.strip()
    return ""


def _probe_window() -> str | None:
    """Why a window does not open here (one line), or None: a child process opens one."""
    import subprocess

    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no window within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return (lines[0] if lines else f"exit status {proc.returncode}")[:200]


def check_display() -> None:
    """UserError (one line) when ``--show`` cannot open a window here: no display set, an
    OpenCV built without windows, or a window that does not open (probed in a child process,
    so that this one never aborts). Called before any work; a success is remembered."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if display in _window_ok:
        return
    if sys.platform.startswith("linux") and not display:
        raise UserError(f"--show needs a display, and none is set (no DISPLAY): {HEADLESS}")
    if gui_backend() is None:
        raise UserError("--show: this OpenCV was built without windows (opencv-python-headless?): "
                        f"{HEADLESS}")
    why = _probe_window()
    if why is not None:
        where = f" on display {display}" if display else ""
        raise UserError(f"--show cannot open a window{where} ({why}): {HEADLESS}")
    _window_ok.add(display)


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def check_video_path(save) -> None:
    """UserError (one line) unless ``save`` names a video file that can be written in an
    existing folder (a probe file proves it)."""
    from .writable import check_file

    path = Path(save).expanduser()
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--save {save}: give a video file name ending in {', '.join(VIDEO_SUFFIXES)}")
    if path.is_dir() or not path.resolve().parent.is_dir():
        raise UserError(f"cannot write {save}: the folder {path.parent} does not exist")
    check_file(path, "--save")


class Display:
    """A sink that annotates each checked frame and shows it (``show``) and/or writes it (``save``).

    The saved video holds the checked frames, at the source's frame rate divided by ``every``
    (mp4v, so name it .mp4). In the window, q or Esc ends the stream. ``labels``: tint each
    frame lightly with the verdict's segmentation (when it carries one).

    A video that cannot be written (a full disk, a file size limit, a codec that does not
    open) never stops the stream: saving ends, ``error`` says why (one line) and ``lost``
    counts the checked frames that are not in a readable video. OpenCV's writer does not
    raise, so failures are read from its return value where it has one (OpenCV 5) and, at
    :meth:`close`, by opening the written file again.
    """

    TITLE = "edge-guard"
    output = "video"

    def __init__(self, patch: int, show: bool = False, save=None, fourcc: str = "mp4v",
                 labels: bool = False):
        self.patch, self.show, self.save, self.fourcc = patch, show, save, fourcc
        self.labels = bool(labels)
        self._writer = None
        self.written = self.lost = 0
        self.error: str | None = None
        if save is not None:
            check_video_path(save)
        if show:
            check_display()

    def _fail(self, why: str) -> None:
        self.error = f"cannot write the video {self.save}: {why}"
        self.lost += 1  # the frame in hand
        if self._writer is not None:
            with captured_stderr(), quiet_opencv():
                self._writer.release()
            self._writer = None
            self._verify()  # a container cut short (mp4 without its index) loses every frame

    def _save(self, img, fps: float) -> None:
        if self.error is not None:
            self.lost += 1
            return
        with captured_stderr() if self._writer is None else contextlib.nullcontext(), quiet_opencv():
            if self._writer is None:  # our one line says why; not FFmpeg's
                h, w = img.shape[:2]
                self._writer = cv2.VideoWriter(str(Path(self.save).expanduser()),
                                               cv2.VideoWriter_fourcc(*self.fourcc), fps, (w, h))
                if not self._writer.isOpened():
                    self._writer = None
                    return self._fail(f"the writer does not open (codec {self.fourcc}, or no space)")
            try:
                ok = self._writer.write(img)
            except cv2.error as exc:
                ok, why = False, str(exc).strip().splitlines()[-1]
            else:
                why = "disk full, file size limit or I/O error"
        if ok is False:
            return self._fail(f"frame {self.written + 1} was refused ({why})")
        self.written += 1

    def write(self, frame, verdict, info) -> bool:
        from .overlay import annotate

        note = f"frame {info.get('frame_index', '?')}  {info.get('latency_ms', 0.0):.0f} ms"
        img = annotate(frame.copy(), verdict, self.patch, info.get("scores", ()),
                       info.get("alarm_active", False), note, labels=self.labels)
        if self.save is not None:
            self._save(img, float(info.get("fps", DEFAULT_FPS)))
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
            with captured_stderr(), quiet_opencv():
                self._writer.release()
            self._writer = None
            if self.error is None and self.written:
                self._verify()
        if self.show:
            with contextlib.suppress(Exception):
                cv2.destroyWindow(self.TITLE)

    def _verify(self) -> None:
        """Open the finished video again: a write that failed silently (OpenCV 4 returns
        nothing from write()) leaves a file that does not open or holds fewer frames."""
        with captured_stderr(), quiet_opencv():
            cap = cv2.VideoCapture(str(Path(self.save).expanduser()))
            try:
                opened = cap.isOpened()
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if opened else 0
            finally:
                cap.release()
        if not opened:
            self.error = self.error or f"cannot write the video {self.save}: the finished file does not open"
            self.lost, self.written = self.lost + self.written, 0
        elif 0 < count < self.written:
            self.error = self.error or (f"cannot write the video {self.save}: it holds {count} of the "
                                        f"{self.written} frames written")
            self.lost, self.written = self.lost + self.written - count, count
