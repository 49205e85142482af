"""Run the Guard on a camera or video stream: ``edge-guard run`` as a library.

Sources (cameras, files, image patterns, URLs, GStreamer pipelines) are parsed and opened
by :mod:`edge_guard.sources` (:func:`parse_source`, :func:`open_capture`); the reader thread
and its mailbox live in :mod:`edge_guard.stream_reader`, alarms in :mod:`edge_guard.alarms`,
latency statistics in :mod:`edge_guard.latency`, the window and video sinks in
:mod:`edge_guard.display`.

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

Alarms (:mod:`edge_guard.alarms`): by default the bundle's calibrated sequential alarm when
guard.json has an ``alarm`` section (:class:`SequentialAlarm`, a CUSUM on the scores, raised
when its sum S exceeds h), else M of N (:class:`AlarmWindow`: raised when M of the last N
checked frames are flagged, default 3 of 5). Either is raised once per episode and clears, and
re-arms, when its condition ends (S back to 0; fewer than M of the last N flagged).

Events (JSON Lines, :mod:`edge_guard.events`), stable field names:

- ``start``: time, version, source, source_kind, live, realtime, every, max_frames, bundle,
  model_sha256, backend, provider (the one actually in use), selection (how the backend was
  chosen: ``auto`` says why faster ones were passed over), detector ("frame": patches
  against the frame's segmentation; "pairs": the paper's overlapping pairs), statistic
  (what one comparison scores: "miou", "agreement", "miou-min"), k (patches or pairs per
  frame), threshold, patch_size, frame_size (the bundle's [h, w]), input_size (the
  source's [h, w]), source_fps, alarm ({method "m-of-n", m, n} or {method "cusum", h,
  reference, scale, drift, clip}), budget (only under a frame-rate budget,
  :mod:`edge_guard.budget`: fps, budget_ms, headroom, k chosen, met, expected_fps, warmup_ms
  {K: median check ms}, candidates), and any extra fields the caller passes (the CLI adds
  seed).
- ``frame`` (one per checked frame): frame (index in the source, from 0), capture_time (unix
  s, when the reader got it), score, threshold, adversarial, latency_ms (from the reader
  getting the frame to its verdict, the wait in the mailbox included; not the time the frame
  spent in the driver's or the network's buffers before), skipped_since_last, alarm_active,
  alarm_stat (the alarm's statistic after this frame: flagged frames in the window, or S),
  then the Verdict's fields (:meth:`~edge_guard.verdict.Verdict.as_dict`): detector,
  statistic, k, scores (the K comparison scores; score is their mean), boxes (in the
  bundle's frame: [y, x] patch top-lefts for the frame detector, [y1, x1, y2, x2] the two
  top-lefts of each pair for the pairs detector), patch_size (the boxes' side), timings_ms
  (resize, segment when the guard segmented the frame, sample, crop, infer, consistency,
  total; on the TensorRT path with GPU scoring, one "gpu" entry replaces crop, infer and
  consistency), frame_size, input_size, backend, provider. The pairs detector's records
  also carry the older names pair_mious (= scores) and pairs (= boxes). The frame's
  segmentation is not in the events (a verdict's ``labels``; ``run --show-labels`` draws it).
- ``alarm``: state ("raised" or "cleared"), frame, capture_time, episode (1, 2, ...), method,
  then flagged (of the window), m, n (M of N) or statistic, h (cusum).
- ``gap``: after_frame (last frame read before it), start_time, end_time, duration_s,
  attempts, recovered, error.
- ``end``: the summary (:meth:`Stream.run`'s return value): reason ("end of source",
  "max frames", "interrupted", "source lost", "window closed", "stopped", "error"),
  frames_read, frames_checked, frames_skipped (= skipped_every + skipped_busy +
  skipped_at_stop), frames_flagged, alarms, alarm_active, gaps, duration_s, fps_read,
  fps_checked, latency_ms and check_ms ({p50, p99, mean, max}; null before any check;
  percentiles within 0.6 %, see :class:`Durations`), events_lost (records the event log
  could not take, this one excluded), video_lost (checked frames not in a readable saved
  video), plot (the ``plot`` PNG's path, or null), output_errors ({output: its first
  failure}; empty when nothing was lost); under a frame-rate budget also k and budget
  {fps, budget_ms, k, achieved_fps, met}.

Invariant: frames_read = frames_checked + frames_skipped.

Lost output never stops the checking: an event log or a saved video that cannot be written
(a full disk, a file size limit) is reported once through ``warn`` and counted in the
summary, and the stream goes on checking and raising alarms (a vehicle's full log disk
costs the log, not the detection).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections import deque
from time import perf_counter

import cv2

from . import __version__, interrupts
from .alarms import AlarmWindow, make_alarm
from .budget import announce as announce_budget, end_fields as budget_end_fields, start_fields as budget_start_fields
from .domain import DomainWatch, calibrated_rate
from .errors import UserError
from .latency import Durations
from .run_plot import RunTrace, check_plot_path, write_run_plot
from .sources import (DEFAULT_FPS, Source, SourceError, capture_prop, captured_stderr, last_message,
                      open_capture, quiet_opencv)
from .stream_reader import RECONNECT_DELAYS, Mailbox, Reader


class Stream:
    """Check the frames of ``source`` with ``guard``; :meth:`run` returns the summary.

    guard: a :class:`~edge_guard.guard.Guard` (used from the thread calling run() only).
    source: a :class:`Source`. opener: () -> capture (read/release/get like VideoCapture),
    default ``open_capture(source)``; also used to reconnect. events: an
    :class:`~edge_guard.events.EventWriter` or None. every: check one frame in N.
    realtime: drop frames that arrive while checking (None: for live sources only).
    pace_fps: frame rate a file is read at in realtime mode (default: the file's own).
    max_frames: stop after reading this many frames. alarm: (M, N), "cusum" (the bundle's),
    an AlarmWindow or SequentialAlarm, or None (the bundle's when it has one, else 3/5).
    reconnect: back-off delays in seconds (empty: do not reconnect). sinks: objects with ``write(frame, verdict,
    info) -> bool`` (False asks to stop) and ``close()``. log: a callable for human lines
    (alarms, gaps), or None. extra: fields added to the start record. warmup: run one
    unrecorded check first so the first recorded latency is not the backend's start-up.
    warn: a callable for the one line that reports each lost output, or a frame-rate budget
    that cannot be met (default: stderr).
    plot: a .png path: at the end of each run, the plot of :meth:`plot` is written there
    (proved writable here; a failed write is lost output, as for the events).
    """

    def __init__(self, guard, source: Source, *, opener=None, events=None, every: int = 1,
                 realtime: bool | None = None, pace_fps: float | None = None,
                 max_frames: int | None = None, alarm=None, reconnect=RECONNECT_DELAYS,
                 sinks=(), log=None, extra: dict | None = None, warmup: bool = True,
                 history: int = 64, warn=None, plot=None):
        if int(every) < 1:
            raise UserError(f"every must be >= 1, got {every}")
        if max_frames is not None and int(max_frames) < 1:
            raise UserError(f"max_frames must be >= 1, got {max_frames}")
        self.guard, self.source = guard, source
        self._opener = opener or (lambda: open_capture(source))
        self.events, self.every = events, int(every)
        self.realtime = source.live if realtime is None else bool(realtime)
        self.pace_fps, self.max_frames = pace_fps, max_frames
        self.reconnect = tuple(reconnect) if source.live else ()
        self.sinks, self.log, self.extra, self.warmup = list(sinks), log, dict(extra or {}), warmup
        self.scores: deque = deque(maxlen=history)
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self.warn = warn if warn is not None else _stderr_warning
        self._alarm_spec = alarm
        self.alarm = self._make_alarm()
        self.output_errors: dict = {}
        self.plot_path = None if plot is None else check_plot_path(plot)
        self.trace = RunTrace()  # bounded (run_plot.CAPACITY rows), so a 10-hour run stays small
        self.summary: dict | None = None  # the last run's

    def _make_alarm(self):
        """The run's alarm for the K the guard checks now (a bundle's CUSUM only at its own K)."""
        self._alarm_k = getattr(self.guard, "k", None)
        return make_alarm(self._alarm_spec, getattr(getattr(self.guard, "bundle", None), "alarm", None),
                          k=self._alarm_k, warn=self.warn)

    def stop(self, reason: str = "stopped") -> None:
        """Ask the stream to end (from a signal handler or another thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def _emit(self, record: dict) -> None:
        if self.events is not None and self.events.write(record) is False:
            self._lost("events", self.events.error)

    def _lost(self, output: str, error: str | None) -> None:
        """Report an output's first failure, once; the stream goes on."""
        if output in self.output_errors:
            return
        self.output_errors[output] = error or f"{output} not written"
        with contextlib.suppress(Exception):  # a warning that cannot be shown must not stop us either
            self.warn(f"{self.output_errors[output]}; the stream goes on checking, "
                      f"without its {output} (counted in the summary)")

    def _events_lost(self) -> int:
        return int(getattr(self.events, "lost", 0)) if self.events is not None else 0

    def _check_sinks(self) -> None:
        for sink in self.sinks:
            error = getattr(sink, "error", None)
            if error:
                self._lost(getattr(sink, "output", type(sink).__name__), error)

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
        interrupts.check()  # a Ctrl-C during start-up ends the command, not this stream
        self._stop.clear()
        self._stop_reason = None
        self.output_errors = {}
        lost_before = self._events_lost()
        self.alarm.reset()
        self.scores.clear()
        cap, first = self._open()
        fps = capture_prop(cap, cv2.CAP_PROP_FPS)
        fps = fps if fps is not None and fps < 1000 else None
        pace = (self.pace_fps or fps or DEFAULT_FPS) if self.realtime and not self.source.live else None
        # A file checked frame by frame is plotted on its own clock, to match its video.
        clock = None if self.realtime else (fps or DEFAULT_FPS)
        self.trace.reset("time since the first checked frame" if clock is None
                         else f"time in the source at {clock:g} frames/s")
        try:
            if self.warmup:
                self.guard.check(first[0])
                # Frame 0 counts as read now: its latency must not include the warm-up.
                first = (first[0], time.time(), perf_counter())
            interrupts.check()
        except BaseException:
            cap.release()
            raise
        g = self.guard
        if getattr(g, "k", None) != self._alarm_k:  # a frame-rate budget chose K in the warm-up
            self.alarm = self._make_alarm()
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
                    "alarm": self.alarm.as_dict(), **budget_start_fields(g), **self.extra})
        h, w = g.bundle.frame_size
        self._say(f"# {self.source} -> {g.bundle.root} | {g.backend} ({g.provider}) | "
                  f"{g.bundle.method} detector, {g.bundle.statistic}, frame {h}x{w}, "
                  f"{g.k_text}, threshold {g.threshold:.4f} | "
                  f"{'newest frame only' if self.realtime else 'every frame in order'}"
                  f"{f', one in {self.every}' if self.every > 1 else ''} | "
                  f"alarm {self.alarm.describe()}")
        announce_budget(g, self._say, self.warn)
        domain = DomainWatch(calibrated_rate(g.bundle), (fps or DEFAULT_FPS) / self.every)
        mailbox, notices = Mailbox(), queue.Queue()
        reader = Reader(cap, first, self._opener, mailbox, notices, self._stop, live=self.source.live,
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
                change = self.alarm.feed(verdict)
                said = domain.update(verdict.adversarial)
                if said is not None:
                    self.warn(said)
                self.trace.add(mono if clock is None else index / clock, index, verdict.score,
                               verdict.adversarial, self.alarm.statistic, self.alarm.active)
                if change is not None:
                    self._alarm_event(change, index, wall)
                self._emit({"type": "frame", "frame": index, "capture_time": wall,
                            "score": verdict.score, "threshold": verdict.threshold,
                            "adversarial": verdict.adversarial, "latency_ms": latency,
                            "skipped_since_last": index - last_index - 1,
                            "alarm_active": self.alarm.active, "alarm_stat": self.alarm.statistic,
                            **verdict.as_dict()})
                last_index = index
                info.update(frame_index=index, latency_ms=latency, alarm_active=self.alarm.active,
                            scores=self.scores)
                for sink in self.sinks:
                    if sink.write(frame, verdict, info) is False:
                        self.stop("window closed")
                self._check_sinks()
        except KeyboardInterrupt:
            interrupts.consume()  # the stream's own clean stop: summary, status by alarms
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
            self._check_sinks()  # a video is verified when it is closed
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
                   "latency_ms": latencies.summary(), "check_ms": checks.summary(),
                   "events_lost": self._events_lost() - lost_before,
                   "video_lost": sum(int(getattr(s, "lost", 0)) for s in self.sinks),
                   "plot": None if self.plot_path is None else str(self.plot_path),
                   "output_errors": dict(self.output_errors)}
        summary.update(budget_end_fields(g, summary["fps_checked"]))
        if domain.said is not None:
            summary["domain_warning"] = domain.said
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        self.summary = summary
        if self.plot_path is not None:  # before the end record, which counts a plot lost
            self._write_plot(summary)
        self._emit(summary)
        if self._events_lost() - lost_before != summary["events_lost"]:  # the end record itself was lost
            summary["events_lost"] = self._events_lost() - lost_before
            summary["output_errors"] = dict(self.output_errors)
        if error is not None:
            raise error
        return summary

    def plot(self, path):
        """Write the last run's plot to ``path`` (PNG): score per checked frame over time
        against the threshold, the alarm statistic below, alarm episodes shaded
        (:func:`~edge_guard.run_plot.write_run_plot`). UserError when it cannot be written."""
        return write_run_plot(path, self.trace, self.guard, self.alarm, self.source, self.summary)

    def _write_plot(self, summary: dict) -> None:
        try:
            self.plot(self.plot_path)
        except Exception as exc:  # a plot that fails to draw must not cost the end record either
            if not isinstance(exc, UserError):
                exc = f"cannot write the plot {self.plot_path}: {type(exc).__name__}: {exc}"
            self.output_errors["plot"] = str(exc)
            summary["output_errors"] = dict(self.output_errors)
            with contextlib.suppress(Exception):
                self.warn(f"{exc} (counted in the summary)")

    def _alarm_event(self, change: str, index: int, wall: float) -> None:
        a = self.alarm
        record = {"type": "alarm", "state": change, "frame": index, "capture_time": wall,
                  "episode": a.episodes, "method": a.as_dict()["method"]}
        if isinstance(a, AlarmWindow):
            record.update(flagged=a.flagged, m=a.m, n=a.n)
            why = f"{a.flagged} of the last {a.n} checked frames flagged"
        else:
            record.update(statistic=a.statistic, h=a.h)
            why = f"CUSUM {a.statistic:.2f} (alarm above {a.h:.2f})"
        self._emit(record)
        self._say(f"alarm {change} at frame {index}: {why}")

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


def _stderr_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)
