"""Upper bounds on every size, count and thread setting, in one place.

Each bound is checked before any work (the CLI's argparse types, guard.json's schema,
Guard.load), so that no option, bundle or input file can ask for more memory, threads or
time than a vehicle has, and the error names the limit. Only the standard library is
imported here: the CLI's argument types use these bounds before anything heavy loads.
"""

from __future__ import annotations

import os

#: A frame or patch side in pixels: twice an 8K frame's width.
MAX_SIDE = 16384
#: K, patches (frame detector) or pairs (pairs detector) per frame; the paper uses K <= 50.
MAX_PAIRS = 1024
#: Classes of a model. The host scoring holds K (C, C) int64 confusion matrices (at the
#: bounds, 1024 x 256 x 256 x 8 bytes = 512 MiB) and uint8 labels hold ids 0..255; the GPU
#: kernels handle up to 64 (kernels/ops.py: MAX_CLASSES) and a bundle with more classes is
#: scored on the host.
MAX_CLASSES = 256
#: Decoded pixels of a still image, by default (64 megapixels: 192 MiB as BGR uint8, about
#: eight 4K frames); ``check --max-pixels`` and ``read_image(max_pixels=)`` change it, up to
#: MAX_SIDE x MAX_SIDE.
DEFAULT_MAX_PIXELS = 64_000_000
MAX_PIXELS = MAX_SIDE * MAX_SIDE
#: guard.json and export.json are a few KiB; anything this large is not one.
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Threads per usable CPU core for --threads (and worker processes): more than a few per
#: core only adds switching (512 threads made one check 300x slower on two cores).
THREADS_PER_CORE = 4
#: Timed or warm-up iterations of a benchmark (each keeps one sample).
MAX_ITERS = 1_000_000
#: Attempts to reopen a live source (each keeps one back-off delay).
MAX_RECONNECTS = 1000
#: N of an M/N alarm rule (the window is summed for every checked frame).
MAX_ALARM_WINDOW = 10_000
#: Frames (or images, or clips) one offline command reads or writes.
MAX_FRAMES = 1_000_000
#: Images (or frames) in one batch of an offline tool.
MAX_BATCH = 4096
#: Rendered frames held in memory at once by the scene generator (``generate``).
MAX_RENDER_BYTES = 8 * 2**30


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most threads (or worker processes) any option may ask for on this machine."""
    return THREADS_PER_CORE * usable_cores()


def thread_count_error(value, what: str = "threads") -> str | None:
    """Why ``value`` is not a usable count of ``what``, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{what} must be a positive integer, got {value!r}"
    limit = max_threads()
    if value > limit:
        return (f"at most {limit} {what} ({THREADS_PER_CORE} per usable CPU core, "
                f"{usable_cores()} here), got {value}")
    return None
