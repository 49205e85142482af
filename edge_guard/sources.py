"""Video sources for the stream runner: what ``--camera N`` / ``--source ...`` name, opened
through OpenCV's VideoCapture with one-line errors.

A source is a camera index (V4L2 on Linux), a device path (/dev/video0), a video file or an
image pattern (frames/%06d.png), a URL (rtsp://, http://, ...) or a GStreamer pipeline (any
source containing '!', opened with cv2.CAP_GSTREAMER; needs an OpenCV built with GStreamer,
as JetPack's is, not pip's). A Jetson CSI camera, for example::

    nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1
      ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR
      ! appsink drop=1

Opening a source silences OpenCV's and FFmpeg's own warnings (:func:`quiet_opencv`,
:func:`captured_stderr`): the caller's one line says what went wrong, with the library's
last complaint appended.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from .errors import UserError

OPEN_TIMEOUT_MS, READ_TIMEOUT_MS = 10_000, 5_000  # network streams
DEFAULT_FPS = 30.0  # when a source does not say its frame rate
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


class SourceError(UserError):
    """A source that cannot be opened or gives no frame."""


@dataclass(frozen=True)
class Source:
    """What to read: ``target`` is what VideoCapture gets; ``kind`` is camera/file/url/gstreamer."""

    target: int | str
    kind: str

    @property
    def live(self) -> bool:
        """Frames arrive in real time whether or not they are read (everything but files)."""
        return self.kind != "file"

    def __str__(self) -> str:
        return f"camera {self.target}" if self.kind == "camera" else str(self.target)


def parse_source(camera: int | None = None, source: str | None = None) -> Source:
    """A Source from ``--camera N`` or ``--source PATH|URL|PIPELINE``; UserError when unusable."""
    if (camera is None) == (source is None):
        raise UserError("give exactly one of --camera N and --source PATH|URL|PIPELINE")
    if camera is not None:
        if isinstance(camera, bool) or int(camera) < 0:
            raise UserError(f"a camera index is a non-negative integer, got {camera!r}")
        return Source(int(camera), "camera")
    text = str(source).strip()
    if not text:
        raise UserError("--source is empty")
    if "!" in text and not Path(text).expanduser().is_file():  # a file name may contain '!'
        return Source(text, "gstreamer")
    if _URL.match(text):
        if text.lower().startswith("file://"):
            return parse_source(source=text[len("file://"):])
        return Source(text, "url")
    path = Path(text).expanduser()
    if re.fullmatch(r"/dev/video\d+", text):
        return Source(text, "camera")
    if text.isdigit() and not path.exists():
        return Source(int(text), "camera")
    if path.is_dir():
        raise UserError(f"--source {text} is a folder: for an image sequence give a pattern, "
                        f"e.g. {path / '%06d.png'}")
    if path.is_file():
        return Source(str(path), "file")
    if "%" in path.name and path.parent.is_dir():  # printf pattern of an image sequence
        return Source(str(path), "file")
    raise UserError(f"--source {text} does not exist (give a video file, an image pattern such as "
                    "frames/%06d.png, a URL, a GStreamer pipeline containing '!', or --camera N)")


def has_gstreamer() -> bool:
    """Whether this OpenCV can open GStreamer pipelines."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


# OpenCV's log level and file descriptor 2 are process-wide: streams opening (or reconnecting)
# in several threads at once would save and restore them interleaved, leaving stderr pointed
# at a deleted file for good. One reentrant lock serialises the probes.
_PROBE_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_opencv():
    """Silence OpenCV's own warnings while probing a source: our one-line error says it all."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    with _PROBE_LOCK:
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            logging.setLogLevel(level)


@contextlib.contextmanager
def captured_stderr():
    """Collect what C libraries (OpenCV, FFmpeg) write to file descriptor 2 meanwhile.

    Yields a list that holds the text afterwards. Used while opening a source only, before its
    reader thread starts; another thread's stderr output in that window lands here too.
    """
    text: list = []
    with _PROBE_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (e.g. pythonw)
            yield text
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield text
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text.append(tmp.read().decode("utf-8", "replace"))


def last_message(text: str) -> str:
    """The last line FFmpeg/OpenCV printed, without its "[demuxer @ 0x...]" prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[-1]) if lines else ""


def _api(source: Source) -> int:
    if source.kind == "gstreamer":
        return cv2.CAP_GSTREAMER
    if source.kind == "camera" and sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    return cv2.CAP_ANY


def open_capture(source: Source):
    """An opened cv2.VideoCapture for ``source``; SourceError (one line) when it does not open."""
    if source.kind == "gstreamer" and not has_gstreamer():
        raise SourceError("this OpenCV was built without GStreamer (pip's opencv-python is): "
                          "use an OpenCV with GStreamer (e.g. JetPack's python3-opencv) for a pipeline")
    with quiet_opencv():
        if source.kind == "url":
            # FFmpeg waits ~30 s on a dead stream by default: fail, or detect a drop, sooner.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
            cap = cv2.VideoCapture(source.target, _api(source), params)
        else:
            cap = cv2.VideoCapture(source.target, _api(source))
        opened = cap.isOpened()
    if not opened:
        cap.release()
        hint = {"camera": " (is it connected, and readable by this user?)",
                "file": " (not a video OpenCV can decode?)",
                "url": " (is the stream up and the URL right?)",
                "gstreamer": " (check the pipeline with gst-launch-1.0; it must end in appsink)"}
        raise SourceError(f"cannot open {source}{hint[source.kind]}")
    return cap


def capture_prop(cap, prop) -> float | None:
    try:
        value = float(cap.get(prop))
    except Exception:  # a fake or exotic capture without properties
        return None
    return value if math.isfinite(value) and value > 0 else None
