"""Ctrl-C for the command line: honoured from the first instruction, never swallowed.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is. When that
is inside an extension module's import or a C call that clears errors (ONNX Runtime's import
does, now and then), the exception vanishes and the command runs on as if nothing had been
pressed. :func:`install` (called first thing by the CLI's main) records the signal as well
as raising it, and until some code takes the interrupt (:func:`take`, :func:`consume`) a
watchdog thread raises it again every quarter second, so that it lands in Python code and
ends the command. A library that embeds edge-guard keeps its own handler: nothing here runs
on import.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time

#: Seconds between re-raises of an interrupt that no code has taken.
RETRY_S = 0.25

_pending = threading.Event()    # a Ctrl-C that no code has taken yet
_requested = threading.Event()  # a Ctrl-C since install(), unless consumed
_finished = threading.Event()   # the command is ending: further Ctrl-C changes nothing
_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def _handler(signum, frame):
    if _finished.is_set():
        return
    _requested.set()
    _pending.set()
    _start_watchdog()
    raise KeyboardInterrupt


def _watch() -> None:
    while _pending.is_set() and not _finished.is_set():
        time.sleep(RETRY_S)
        if _pending.is_set() and not _finished.is_set():
            _thread.interrupt_main(signal.SIGINT)


def _start_watchdog() -> None:
    global _watchdog
    with _lock:
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(target=_watch, name="edge-guard-interrupt", daemon=True)
            _watchdog.start()


def install():
    """Handle SIGINT as described above; returns the previous handler for :func:`restore`.
    A no-op off the main thread, and when SIGINT is ignored (a shell's background job: it
    stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        return None
    _pending.clear()
    _requested.clear()
    _finished.clear()
    signal.signal(signal.SIGINT, _handler)
    return previous


def restore(previous) -> None:
    """Put back the handler :func:`install` replaced (the CLI called in-process, by tests)."""
    _finished.set()
    _pending.clear()
    _requested.clear()
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)


def take() -> None:
    """The command ends because of the interrupt: no more re-raises, and a second Ctrl-C
    while it reports and exits is ignored (it would only turn the exit into a traceback)."""
    _finished.set()
    _pending.clear()


def consume() -> None:
    """The caller honours the interrupt itself (a stream's clean stop, with its own exit
    status): no more re-raises, and it no longer makes the command's status 130."""
    _pending.clear()
    _requested.clear()


def requested() -> bool:
    """Whether Ctrl-C was pressed since :func:`install` and not consumed."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt when an interrupt is pending (one swallowed earlier)."""
    if _pending.is_set():
        raise KeyboardInterrupt
