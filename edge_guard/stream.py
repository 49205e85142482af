"""Run the Guard on a camera or video stream: ``edge-guard run`` as a library.

Sources (cameras, files, image patterns, URLs, GStreamer pipelines) are parsed and opened
by :mod:`edge_guard.sources` (:func:`parse_source`, :func:`open_capture`, re-exported here).

Threads: a reader thread owns the capture and hands frames to the checking thread (the
caller's) through a one-slot mailbox, so decoding overlaps checking.

- Live sources (cameras, URLs, pipelines; or any source with ``realtime=True``): the slot
  keeps only the newest frame. A frame that arrives while a check runs replaces the waiting
  one: a slow check never builds a queue, and a frame waits for the check in progress at
  most. Replaced frames are counted as skipped (``skipped_since_last`` in the next frame
  event), never silently lost from the record. A file read with ``realtime=True`` is paced
  at its own frame rate, as a camera would deliver it.
- Files (default ``realtime=None`` means "live sources only"): every frame is checked in
  order; the reader decodes the next frame while the current one is checked, then waits
  for the slot to empty. A file is not real time, and skipping frames of a recording would
  hide them from the check.

``every=N`` checks one frame in N (the others are counted as skipped). A live source that
stops delivering frames is reopened with back-off (``reconnect`` delays, default 0.5, 1, 2,
4, 8 s); the outage is recorded as a ``gap`` event, and when every attempt fails the stream
ends with reason "source lost".

Alarms (:class:`AlarmWindow`): an episode is raised when M of the last N checked frames are
flagged (default 3 of 5), once per episode; it clears, and re-arms, when fewer than M of the
last N are flagged.

Events (JSON Lines, :mod:`edge_guard.events`), stable field names:

- ``start``: time, version, source, source_kind, live, realtime, every, max_frames, bundle,
  model_sha256, backend, provider (the one actually in use), selection (how the backend was
  chosen: ``auto`` says why faster ones were passed over), detector ("frame": patches
  against the frame's segmentation; "pairs": the paper's overlapping pairs), statistic
  (what one comparison scores: "miou", "agreement", "miou-min"), k (patches or pairs per
  frame), threshold, patch_size, frame_size (the bundle's [h, w]), input_size (the
  source's [h, w]), source_fps, alarm {m, n}, and any extra fields the caller passes (the
  CLI adds seed).
- ``frame`` (one per checked frame): frame (index in the source, from 0), capture_time (unix
  s, when the reader got it), score, threshold, adversarial, latency_ms (from the reader
  getting the frame to its verdict, the wait in the mailbox included; not the time the frame
  spent in the driver's or the network's buffers before), skipped_since_last, alarm_active,
  then the Verdict's fields (:meth:`~edge_guard.verdict.Verdict.as_dict`): detector,
  statistic, k, scores (the K comparison scores; score is their mean), boxes (in the
  bundle's frame: [y, x] patch top-lefts for the frame detector, [y1, x1, y2, x2] the two
  top-lefts of each pair for the pairs detector), patch_size (the boxes' side), timings_ms
  (resize, segment when the guard segmented the frame, sample, crop, infer, consistency,
  total; on the TensorRT path with GPU scoring, one "gpu" entry replaces crop, infer and
  consistency), frame_size, input_size, backend, provider. The pairs detector's records
  also carry the older names pair_mious (= scores) and pairs (= boxes). The frame's
  segmentation is not in the events (a verdict's ``labels``; ``run --show-labels`` draws it).
- ``alarm``: state ("raised" or "cleared"), frame, capture_time, flagged (of the window),
  m, n, episode (1, 2, ...).
- ``gap``: after_frame (last frame read before it), start_time, end_time, duration_s,
  attempts, recovered, error.
- ``end``: the summary (:meth:`Stream.run`'s return value): reason ("end of source",
  "max frames", "interrupted", "source lost", "window closed", "stopped", "error"),
  frames_read, frames_checked, frames_skipped (= skipped_every + skipped_busy +
  skipped_at_stop), frames_flagged, alarms, alarm_active, gaps, duration_s, fps_read,
  fps_checked, latency_ms and check_ms ({p50, p99, mean, max}; null before any check;
  percentiles within 0.6 %, see :class:`Durations`).

Invariant: frames_read = frames_checked + frames_skipped.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from . import __version__
from .errors import UserError
from .sources import (Source, SourceError, capture_prop, captured_stderr, has_gstreamer,  # noqa: F401
                      last_message, open_capture, parse_source, quiet_opencv)  # (re-exported: the stream's API)

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_FPS = 30.0  # when a source does not say its frame rate


# -------------------------------------------------------------------------------- the mailbox

class Mailbox:
    """A one-slot hand-over between the reader and the checker.

    ``put(item)`` replaces the waiting item and returns it (so the caller can count it as
    skipped), or with ``wait=True`` blocks until the slot is empty. After :meth:`close`,
    ``put`` delivers nothing and returns ``item`` itself; ``get`` still returns what is
    waiting, then None.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item, wait: bool = False):
        with self._cond:
            if wait:
                while self._item is not None and not self._closed:
                    self._cond.wait()
            if self._closed:
                return item
            old, self._item = self._item, item
            self._cond.notify_all()
            return old

    def get(self, timeout: float | None = None):
        """The waiting item, or None after ``timeout`` seconds or once closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self._cond.notify_all()
            return item

    def wait_empty(self) -> bool:
        """Block until the slot is empty; False when the mailbox was closed meanwhile."""
        with self._cond:
            while self._item is not None and not self._closed:
                self._cond.wait()
            return not self._closed

    def discard(self):
        """Remove and return the waiting item (None when empty)."""
        with self._cond:
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# ------------------------------------------------------------------------------------- alarms

class AlarmWindow:
    """M of the last N checked frames flagged -> an alarm episode, raised once.

    ``update(flagged)`` returns "raised" when an episode starts, "cleared" when it ends (fewer
    than M of the last N flagged: the alarm re-arms), else None.
    """

    def __init__(self, m: int = 3, n: int = 5):
        if not (isinstance(m, int) and isinstance(n, int) and 1 <= m <= n):
            raise UserError(f"an alarm rule is M/N with 1 <= M <= N, got {m}/{n}")
        self.m, self.n = m, n
        self._window: deque = deque(maxlen=n)
        self.active = False
        self.episodes = 0

    @property
    def flagged(self) -> int:
        return sum(self._window)

    def update(self, flagged: bool) -> str | None:
        self._window.append(bool(flagged))
        count = self.flagged
        if not self.active and count >= self.m:
            self.active = True
            self.episodes += 1
            return "raised"
        if self.active and count < self.m:
            self.active = False
            return "cleared"
        return None


def parse_alarm(text: str) -> tuple[int, int]:
    """'3/5' -> (3, 5); UserError otherwise."""
    try:
        m, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UserError(f"{text!r} is not an alarm rule: write M/N, e.g. 3/5") from None
    AlarmWindow(m, n)
    return m, n


# ------------------------------------------------------------------------------------- reader

class _Reader(threading.Thread):
    """Owns the capture: reads, counts, hands frames over, reconnects a live source."""

    def __init__(self, cap, first, opener, mailbox: Mailbox, notices: queue.Queue, stop: threading.Event,
                 *, live: bool, drop: bool, every: int, max_frames: int | None, pace_fps: float | None,
                 delays):
        super().__init__(name="edge-guard-reader", daemon=True)
        self.cap, self._first, self._opener = cap, first, opener
        self._mailbox, self._notices, self._halt = mailbox, notices, stop
        self._live, self._drop, self._every = live, drop, every
        self._max, self._pace, self._delays = max_frames, pace_fps, tuple(delays)
        self.read = 0
        self.skipped_every = 0
        self.skipped_busy = 0
        self.skipped_at_stop = 0
        self.end_reason = "stopped"
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the checking thread, which re-raises it
            self.error, self.end_reason = exc, "error"
        finally:
            self._mailbox.close()
            with contextlib.suppress(Exception):
                self.cap.release()

    def _loop(self) -> None:
        frame, wall, mono = self._first
        t0 = mono
        while True:
            index = self.read
            self.read += 1
            if index % self._every:
                self.skipped_every += 1
            else:
                item = (index, wall, mono, frame)
                back = self._mailbox.put(item, wait=not self._drop)
                if back is item:
                    self.skipped_at_stop += 1
                elif back is not None:
                    self.skipped_busy += 1
            if self._max is not None and self.read >= self._max:
                self.end_reason = "max frames"
                return
            if self._halt.is_set():
                return
            if self._pace:
                delay = t0 + self.read / self._pace - perf_counter()
                if delay > 0 and self._halt.wait(delay):
                    return
            # In order: read the next frame only once the checker took this one, so a frame
            # waits for one check at most (decoding still overlaps that check).
            if not self._drop and not self._mailbox.wait_empty():
                return
            ok, frame = self.cap.read()
            if not ok or frame is None:
                if not self._live:
                    self.end_reason = "end of source"
                    return
                frame = self._reconnect()
                if frame is None:
                    if not self._halt.is_set():
                        self.end_reason = "source lost"
                    return
            wall, mono = time.time(), perf_counter()

    def _reconnect(self):
        """Reopen with back-off; the first frame of the new capture, or None when it failed."""
        start_wall, start = time.time(), perf_counter()
        with contextlib.suppress(Exception):
            self.cap.release()
        attempts, error, frame = 0, "no frame from the source", None
        for delay in self._delays:
            if self._halt.wait(delay):
                break
            attempts += 1
            try:
                cap = self._opener()
            except UserError as exc:
                error = str(exc)
                continue
            ok, got = cap.read()
            if ok and got is not None:
                self.cap, frame, error = cap, got, None
                break
            with contextlib.suppress(Exception):
                cap.release()
            error = "the source opened but gave no frame"
        end_wall = time.time()
        self._notices.put({"type": "gap", "after_frame": self.read - 1, "start_time": start_wall,
                           "end_time": end_wall, "duration_s": perf_counter() - start,
                           "attempts": attempts, "recovered": frame is not None, "error": error})
        return frame


# ------------------------------------------------------------------------------------- stream

class Durations:
    """p50/p99/mean/max of durations in ms, in constant memory (a stream may run for days).

    Log-spaced bins, 200 per decade from 1 us to 100 s: a percentile is the centre of its bin,
    within 0.6 % of the exact value; mean and max are exact.
    """

    PER_DECADE, LOW, DECADES = 200, -3, 8

    def __init__(self):
        self.counts = np.zeros(self.PER_DECADE * self.DECADES + 2, np.int64)  # + under/overflow
        self.n, self.total, self.max = 0, 0.0, 0.0

    def add(self, ms: float) -> None:
        ms = float(ms)
        pos = (math.log10(ms) - self.LOW) * self.PER_DECADE + 1 if ms > 0 else 0
        self.counts[min(max(int(pos), 0), len(self.counts) - 1)] += 1
        self.n, self.total, self.max = self.n + 1, self.total + ms, max(self.max, ms)

    def percentile(self, q: float) -> float:
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n, side="left"))
        if i == 0:
            return 0.0
        centre = 10 ** (self.LOW + (i - 0.5) / self.PER_DECADE)
        return min(centre, self.max)

    def summary(self) -> dict | None:
        if not self.n:
            return None
        return {"p50": self.percentile(50), "p99": self.percentile(99),
                "mean": self.total / self.n, "max": self.max}


class Stream:
    """Check the frames of ``source`` with ``guard``; :meth:`run` returns the summary.

    guard: a :class:`~edge_guard.guard.Guard` (used from the thread calling run() only).
    source: a :class:`Source`. opener: () -> capture (read/release/get like VideoCapture),
    default ``open_capture(source)``; also used to reconnect. events: an
    :class:`~edge_guard.events.EventWriter` or None. every: check one frame in N.
    realtime: drop frames that arrive while checking (None: for live sources only).
    pace_fps: frame rate a file is read at in realtime mode (default: the file's own).
    max_frames: stop after reading this many frames. alarm: (M, N). reconnect: back-off
    delays in seconds (empty: do not reconnect). sinks: objects with ``write(frame, verdict,
    info) -> bool`` (False asks to stop) and ``close()``. log: a callable for human lines
    (alarms, gaps), or None. extra: fields added to the start record. warmup: run one
    unrecorded check first so the first recorded latency is not the backend's start-up.
    """

    def __init__(self, guard, source: Source, *, opener=None, events=None, every: int = 1,
                 realtime: bool | None = None, pace_fps: float | None = None,
                 max_frames: int | None = None, alarm=(3, 5), reconnect=RECONNECT_DELAYS,
                 sinks=(), log=None, extra: dict | None = None, warmup: bool = True,
                 history: int = 64):
        if int(every) < 1:
            raise UserError(f"every must be >= 1, got {every}")
        if max_frames is not None and int(max_frames) < 1:
            raise UserError(f"max_frames must be >= 1, got {max_frames}")
        self.guard, self.source = guard, source
        self._opener = opener or (lambda: open_capture(source))
        self.events, self.every = events, int(every)
        self.realtime = source.live if realtime is None else bool(realtime)
        self.pace_fps, self.max_frames = pace_fps, max_frames
        self.alarm = AlarmWindow(*alarm)
        self.reconnect = tuple(reconnect) if source.live else ()
        self.sinks, self.log, self.extra, self.warmup = list(sinks), log, dict(extra or {}), warmup
        self.scores: deque = deque(maxlen=history)
        self._stop = threading.Event()
        self._stop_reason: str | None = None

    def stop(self, reason: str = "stopped") -> None:
        """Ask the stream to end (from a signal handler or another thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def _emit(self, record: dict) -> None:
        if self.events is not None:
            self.events.write(record)

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _open(self):
        """Open the source and read its first frame; a failure is one line, with the library's
        own complaint (e.g. FFmpeg's "moov atom not found") appended instead of printed."""
        cap, frame, error = None, None, None
        with captured_stderr() as noise, quiet_opencv():
            try:
                cap = self._opener()
                ok, frame = cap.read()
                if not ok or frame is None:
                    frame, error = None, SourceError(f"{self.source} opened but gave no frame")
            except UserError as exc:
                error = exc
        said = "".join(noise)
        if error is not None:
            if cap is not None:
                with contextlib.suppress(Exception):
                    cap.release()
            detail = last_message(said)
            raise SourceError(f"{error}: {detail}" if detail else str(error)) from None
        if said.strip():
            sys.stderr.write(said)  # warnings of a source that works: pass them on
        return cap, (frame, time.time(), perf_counter())

    def run(self) -> dict:
        """Read and check until the source ends, max_frames, stop() or Ctrl-C; the summary.
        Callable again (e.g. after "source lost"): each run starts with a fresh alarm window."""
        self._stop.clear()
        self._stop_reason = None
        self.alarm = AlarmWindow(self.alarm.m, self.alarm.n)
        self.scores.clear()
        cap, first = self._open()
        fps = capture_prop(cap, cv2.CAP_PROP_FPS)
        fps = fps if fps is not None and fps < 1000 else None
        pace = (self.pace_fps or fps or DEFAULT_FPS) if self.realtime and not self.source.live else None
        try:
            if self.warmup:
                self.guard.check(first[0])
                # Frame 0 counts as read now: its latency must not include the warm-up.
                first = (first[0], time.time(), perf_counter())
        except BaseException:
            cap.release()
            raise
        g = self.guard
        self._emit({"type": "start", "time": time.time(), "version": __version__,
                    "source": str(self.source), "source_kind": self.source.kind,
                    "live": self.source.live, "realtime": self.realtime, "every": self.every,
                    "max_frames": self.max_frames, "bundle": str(g.bundle.root),
                    "model_sha256": g.bundle.model_sha256, "backend": g.backend,
                    "provider": g.provider, "selection": getattr(g, "selection", ""),
                    "detector": g.bundle.method, "statistic": g.bundle.statistic, "k": g.k,
                    "threshold": g.threshold,
                    "patch_size": g.bundle.patch_size, "frame_size": list(g.bundle.frame_size),
                    "input_size": list(first[0].shape[:2]), "source_fps": fps,
                    "alarm": {"m": self.alarm.m, "n": self.alarm.n}, **self.extra})
        h, w = g.bundle.frame_size
        self._say(f"# {self.source} -> {g.bundle.root} | {g.backend} ({g.provider}) | "
                  f"{g.bundle.method} detector, {g.bundle.statistic}, frame {h}x{w}, "
                  f"{g.k_text}, threshold {g.threshold:.4f} | "
                  f"{'newest frame only' if self.realtime else 'every frame in order'}"
                  f"{f', one in {self.every}' if self.every > 1 else ''} | "
                  f"alarm {self.alarm.m}/{self.alarm.n}")
        mailbox, notices = Mailbox(), queue.Queue()
        reader = _Reader(cap, first, self._opener, mailbox, notices, self._stop, live=self.source.live,
                         drop=self.realtime, every=self.every, max_frames=self.max_frames,
                         pace_fps=pace, delays=self.reconnect)
        info = {"fps": (fps or DEFAULT_FPS) / self.every, "source": str(self.source)}
        checked = flagged = gaps = 0
        stop_skips = 0  # counted here, not on the reader, which may still be running
        last_index, in_hand, error = -1, False, None
        latencies, checks = Durations(), Durations()
        started = perf_counter()
        reader.start()
        try:
            while True:
                item = mailbox.get(timeout=0.1)
                gaps += self._drain(notices)
                if self._stop.is_set():
                    stop_skips += item is not None
                    break
                if item is None:
                    if mailbox.closed:
                        break
                    continue
                in_hand = True
                index, wall, mono, frame = item
                verdict = g.check(frame)
                latency = 1e3 * (perf_counter() - mono)
                checked += 1
                in_hand = False
                flagged += verdict.adversarial
                latencies.add(latency)
                checks.add(verdict.timings_ms["total"])
                self.scores.append(verdict.score)
                change = self.alarm.update(verdict.adversarial)
                if change is not None:
                    self._emit({"type": "alarm", "state": change, "frame": index, "capture_time": wall,
                                "flagged": self.alarm.flagged, "m": self.alarm.m, "n": self.alarm.n,
                                "episode": self.alarm.episodes})
                    self._say(f"alarm {change} at frame {index}: {self.alarm.flagged} of the last "
                              f"{self.alarm.n} checked frames flagged")
                self._emit({"type": "frame", "frame": index, "capture_time": wall,
                            "score": verdict.score, "threshold": verdict.threshold,
                            "adversarial": verdict.adversarial, "latency_ms": latency,
                            "skipped_since_last": index - last_index - 1,
                            "alarm_active": self.alarm.active, **verdict.as_dict()})
                last_index = index
                info.update(frame_index=index, latency_ms=latency, alarm_active=self.alarm.active,
                            scores=self.scores)
                for sink in self.sinks:
                    if sink.write(frame, verdict, info) is False:
                        self.stop("window closed")
        except KeyboardInterrupt:
            self.stop("interrupted")
        except BaseException as exc:
            error = exc
            self.stop("error")
        finally:
            self._stop.set()
            mailbox.close()
            reader.join(timeout=5.0)
            stop_skips += in_hand
            stop_skips += mailbox.discard() is not None
            gaps += self._drain(notices)
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    sink.close()
        if error is None and reader.error is not None:
            error = reader.error
        duration = perf_counter() - started
        at_stop = reader.skipped_at_stop + stop_skips
        skipped = reader.skipped_every + reader.skipped_busy + at_stop
        summary = {"type": "end", "time": time.time(),
                   "reason": "error" if error is not None else (self._stop_reason or reader.end_reason),
                   "frames_read": reader.read, "frames_checked": checked, "frames_skipped": skipped,
                   "skipped_every": reader.skipped_every, "skipped_busy": reader.skipped_busy,
                   "skipped_at_stop": at_stop, "frames_flagged": flagged,
                   "alarms": self.alarm.episodes, "alarm_active": self.alarm.active, "gaps": gaps,
                   "duration_s": duration, "fps_read": reader.read / duration if duration > 0 else None,
                   "fps_checked": checked / duration if duration > 0 else None,
                   "latency_ms": latencies.summary(), "check_ms": checks.summary()}
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        self._emit(summary)
        if error is not None:
            raise error
        return summary

    def _drain(self, notices: queue.Queue) -> int:
        count = 0
        while True:
            try:
                record = notices.get_nowait()
            except queue.Empty:
                return count
            count += 1
            self._emit(record)
            state = "recovered" if record["recovered"] else "not recovered"
            self._say(f"source gap after frame {record['after_frame']}: {record['duration_s']:.1f} s, "
                      f"{record['attempts']} reconnect attempt(s), {state}")


# ---------------------------------------------------------------------------- display / video

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
