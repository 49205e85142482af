"""The stream's reader thread: it owns the capture, reads and counts frames, hands them to
the checking thread through a one-slot :class:`Mailbox` and reopens a live source that stops
(back-off ``RECONNECT_DELAYS``), recording the outage as a gap notice.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from time import perf_counter

from .errors import UserError

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


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


class Reader(threading.Thread):
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
