"""Stream events as JSON Lines: one object per line, flushed as written.

A record is a dict with a ``type`` ("start", "frame", "alarm", "gap", "end"; the fields of
each are listed in :mod:`edge_guard.stream`). The start record names the detector ("frame"
or "pairs"), its statistic and K; each frame record carries the verdict's detector,
statistic, scores (one per comparison) and boxes ([y, x] patches for the frame detector,
[y1, x1, y2, x2] pairs for the pairs detector, which also keeps its older names pair_mious
and pairs). Every line is handed to the operating system
as soon as it is written, so a crash of the process loses at most the line being written
(a power cut may lose what the OS had not yet put on disk: pass ``fsync=True`` for that, at
the cost of one disk sync per line).

A failed write (a full disk, a file size limit, an I/O error) costs that record, never the
caller: :meth:`EventWriter.write` returns False, counts the record in ``lost`` and keeps the
first error in ``error``; later records are tried again (the disk may get space back). A file
never keeps a torn line of ours: each record is one ``os.write`` of the whole line, and a
short write is cut back to the last complete line.

Files are opened for appending: a service that restarts adds a new start ... end run to the
same log instead of overwriting the previous one. Non-finite floats are written as null
(strict JSON has no NaN).
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import threading
from pathlib import Path

from .errors import UserError


def _finite(value):
    """``value`` with NaN/inf floats replaced by None, recursively (lists, tuples, dicts)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return _finite(value.item())
    return value


def dumps(record: dict) -> str:
    """One JSON line (no newline), strict JSON (NaN/inf -> null)."""
    return json.dumps(_finite(record), allow_nan=False, separators=(",", ":"))


class EventWriter:
    """Append JSON Lines to ``target``: a path, "-" for standard output, or an open text file.

    Thread-safe (one lock around each line). Use as a context manager or call :meth:`close`.
    ``lines``: records written; ``lost``: records that could not be; ``error``: the first
    failure (one line), or None.
    """

    def __init__(self, target, fsync: bool = False):
        self._lock = threading.Lock()
        self._fsync = fsync
        self._fd: int | None = None
        self._file = None
        self._torn = False
        self.lines = self.lost = 0
        self.error: str | None = None
        if target == "-":
            self._file, self.name = sys.stdout, "<stdout>"
        elif isinstance(target, (str, os.PathLike)):
            path = Path(target).expanduser()
            if path.is_dir():
                raise UserError(f"--events {path} is a folder: give a file name, "
                                f"e.g. {path / 'events.jsonl'}")
            if not path.parent.is_dir():
                raise UserError(f"cannot write events to {path}: the folder {path.parent} does not exist")
            try:
                torn = _ends_torn(path)
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"cannot write events to {path}: {exc.strerror or exc}") from None
            self.name = str(path)
            # A crash cut the last line: our first record ends it, or it would join that line.
            self._torn = torn
        else:
            self._file, self.name = target, getattr(target, "name", repr(target))

    def write(self, record: dict) -> bool:
        """Append one record; False (and the record counted in ``lost``) when it could not be."""
        line = dumps(record) + "\n"
        with self._lock:
            try:
                if self._fd is not None:
                    self._write_fd((b"\n" if self._torn else b"") + line.encode("utf-8"))
                    self._torn = False
                elif self._file is not None:
                    self._file.write(line)
                    self._file.flush()
                    if self._fsync and hasattr(self._file, "fileno"):
                        os.fsync(self._file.fileno())
                else:
                    raise OSError("the event log is closed")
            except OSError as exc:
                self.lost += 1
                if self.error is None:
                    self.error = f"cannot write events to {self.name}: {exc.strerror or exc}"
                return False
            self.lines += 1
            return True

    def _write_fd(self, data: bytes) -> None:
        """One write of the whole line; a short one is cut back off the file and raised."""
        written = os.write(self._fd, data)
        if written < len(data):
            try:
                # O_APPEND wrote at the end: the line began ``written`` bytes before the offset.
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_CUR) - written)
            except OSError:
                pass  # not a regular file (a device, a pipe): nothing to cut
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written "
                                        "(disk full or file size limit)")
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _ends_torn(path: Path) -> bool:
    """Whether the file exists, is not empty and its last byte is not a newline."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def read_events(path) -> list[dict]:
    """All records of a JSON Lines file. A line torn by a crash (the last one, or one that the
    next run's "start" record follows) is dropped; any other bad line is a ValueError."""
    records = []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f.read().split("\n"), 1) if line.strip()]
    for i, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i + 1 == len(lines) or _is_start(lines[i + 1][1]):
                continue
            raise ValueError(f"{path}: line {number} is not JSON: {line[:60]!r}") from None
    return records


def _is_start(line: str) -> bool:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and record.get("type") == "start"
