"""A frame-rate budget: run the largest K whose check keeps up with the camera on this device.

``Guard.load(fps=30)`` (``edge-guard run --fps 30``) or ``budget_ms=...``: during the
warm-up (the first check, on a real frame) each K the bundle holds a threshold for
(guard.json's ``detector.thresholds_by_k``) is timed, smallest first, a few checks each
(the median, after one untimed check that lets the backend allocate for that batch, and
SETTLE more before the first K: a backend's first runs are slow), and
the largest K that fits is kept, with its own threshold. A K fits when its check takes at
most HEADROOM of the budget: the rest of a frame's time goes to reading and decoding the
next frame, the event log and the alarm, which the check does not include. Timing stops at
the first K that does not fit (more patches only take longer), so a slow device does not
spend its warm-up on K it cannot run.

When even the smallest K does not fit, the smallest runs and the choice says so plainly
(:meth:`BudgetChoice.warning`: the budget cannot be met, and the rate to expect). A bundle
without thresholds for several K can only run its own K; the choice says that too.

The clock is injectable (``clock``: () -> seconds), so a test with a fake backend of known
latency checks the choice of K deterministically.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from time import perf_counter

from .errors import UserError

#: The share of the budget a check may take (the rest: reading frames, events, alarms).
HEADROOM = 0.9
#: Timed checks per K (their median is K's time), after one untimed.
REPEATS = 5
#: Untimed checks before the first K is timed: a backend's first runs after loading are
#: slower (ONNX Runtime grows its memory arena and wakes its threads; measured on the 2-core
#: CPU: 70 ms for K=1 at first, 57 ms after), which would make every K look too slow.
SETTLE = 3


def _ms(value: float) -> str:
    """A time in ms for a line: one decimal, or three significant digits below 1 ms."""
    return f"{value:.1f} ms" if value >= 1 else f"{value:.3g} ms"


def budget_ms_of(fps=None, budget_ms=None) -> float | None:
    """The time one frame may take, in ms, from a frame rate (frames/s) or a time (ms);
    None when neither is given; UserError (one line) for both or a bad value."""
    if fps is not None and budget_ms is not None:
        raise UserError("give a frame rate (--fps) or a time per frame (--budget-ms), not both")
    for name, value in (("--fps", fps), ("--budget-ms", budget_ms)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UserError(f"{name} must be a finite number > 0, got {value!r}")
    if fps is not None:
        return 1e3 / float(fps)
    return None if budget_ms is None else float(budget_ms)


@dataclass(frozen=True)
class BudgetChoice:
    """What the warm-up measured and chose. ``times_ms``: {K: median check time in ms}, for
    the K timed (smallest first, up to the first that does not fit); ``k``: the K that runs;
    ``met``: whether K's check fits the budget (with the headroom); ``candidates``: every K
    the bundle holds a threshold for."""

    budget_ms: float
    k: int
    times_ms: dict
    met: bool
    candidates: tuple
    fps: float | None = None
    headroom: float = HEADROOM

    @property
    def expected_fps(self) -> float:
        """Checks per second at K's measured time (an upper bound for the stream's rate)."""
        ms = self.times_ms[self.k]
        return 1e3 / ms if ms > 0 else math.inf

    def target(self) -> str:
        """'10 fps (100.0 ms a frame)' or '100.0 ms a frame'."""
        per = f"{_ms(self.budget_ms)} a frame"
        return f"{self.fps:g} fps ({per})" if self.fps is not None else per

    def warning(self) -> str | None:
        """One line when the budget cannot be met or K cannot change; None otherwise."""
        if not self.met:
            return (f"the budget of {self.target()} cannot be met: even K={self.k} takes "
                    f"{_ms(self.times_ms[self.k])} a check here; running K={self.k} at about "
                    f"{self.expected_fps:.1f} checked frames/s")
        if len(self.candidates) == 1:
            return (f"the bundle holds a threshold for K={self.k} only, so the budget cannot change K "
                    "(add more with `edge-guard calibrate --extend --ks 1,2,3,5,8`)")
        return None

    def describe(self) -> str:
        """The header line: the budget, the K that runs and the warm-up time of each K timed."""
        timed = ", ".join(f"K={k} {_ms(ms)}" for k, ms in self.times_ms.items())
        verdict = f"K={self.k}, the largest that fits" if self.met else f"K={self.k}, the smallest, does not fit"
        return (f"budget {self.target()}, checks up to {_ms(self.headroom * self.budget_ms)}: {verdict}, "
                f"about {self.expected_fps:.1f} checks/s; warm-up check times (median) {timed}; "
                f"K calibrated: {','.join(map(str, self.candidates))}")

    def as_dict(self) -> dict:
        """JSON-ready (the run's start record): the budget, the choice, the warm-up times."""
        return {"fps": self.fps, "budget_ms": self.budget_ms, "headroom": self.headroom, "k": self.k,
                "met": self.met, "expected_fps": self.expected_fps,
                "warmup_ms": {str(k): ms for k, ms in self.times_ms.items()},
                "candidates": list(self.candidates)}


def time_check(check, repeats: int = REPEATS, clock=perf_counter, untimed: int = 1) -> float:
    """The median wall time of ``check()`` in ms over ``repeats`` calls, after ``untimed``."""
    for _ in range(untimed):
        check()
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = clock()
        check()
        times.append(1e3 * (clock() - t0))
    return float(statistics.median(times))


def choose(guard, frame, budget_ms: float, fps: float | None = None, rgb: bool = False, labels=None,
           repeats: int = REPEATS, clock=perf_counter, headroom: float = HEADROOM) -> BudgetChoice:
    """Time ``guard.check(frame)`` at each K the bundle holds a threshold for, smallest first,
    switch ``guard`` to the largest K that fits ``budget_ms`` (ms a frame) and return the
    choice. The guard's patch generator is left as it was: the warm-up's draws never reach a
    verdict, and a seeded guard draws the same patches as without a budget."""
    candidates = tuple(guard.bundle.thresholds_by_k)
    limit = headroom * budget_ms
    state, before = guard.rng.bit_generator.state, guard.k
    times: dict = {}
    try:
        for i, k in enumerate(candidates):
            guard.use_k(k)
            times[k] = time_check(lambda: guard.check(frame, rgb=rgb, labels=labels), repeats, clock,
                                  untimed=SETTLE if i == 0 else 1)
            if times[k] > limit:
                break
    except BaseException:
        guard.use_k(before)
        raise
    finally:
        guard.rng.bit_generator.state = state
    fitting = [k for k, ms in times.items() if ms <= limit]
    k = max(fitting) if fitting else candidates[0]
    guard.use_k(k)
    return BudgetChoice(budget_ms=float(budget_ms), k=k, times_ms=times, met=bool(fitting),
                        candidates=candidates, fps=fps, headroom=headroom)


# ---------------------------------------------------------------- what a run reports

def start_fields(guard) -> dict:
    """The start record's ``budget`` (the choice and the warm-up times) when the guard runs
    under a budget; {} otherwise, so that records of runs without one keep their fields."""
    choice = getattr(guard, "budget", None)
    return {} if choice is None else {"budget": choice.as_dict()}


def announce(guard, say, warn) -> None:
    """The header line of a run under a budget (``say``) and, when the budget cannot be met
    or K cannot change, its one-line warning (``warn``)."""
    choice = getattr(guard, "budget", None)
    if choice is None:
        return
    say(f"# {choice.describe()}")
    if choice.warning() is not None:
        warn(choice.warning())


def end_fields(guard, fps_checked) -> dict:
    """The end record's ``k`` and ``budget`` ({fps, budget_ms, k, achieved_fps, met}: whether
    the checked frames kept up with the budget) under a budget; {} otherwise."""
    choice = getattr(guard, "budget", None)
    if choice is None:
        return {}
    target = 1e3 / choice.budget_ms
    met = fps_checked is not None and fps_checked >= target
    return {"k": guard.k, "budget": {"fps": choice.fps, "budget_ms": choice.budget_ms, "k": guard.k,
                                     "achieved_fps": fps_checked, "met": met}}


def summary_line(summary: dict) -> str | None:
    """The summary's line about the budget ('# budget 10 fps: K=5 ran, 11.8 checked frames/s:
    met'), None without one."""
    b = summary.get("budget")
    if not b:
        return None
    target = f"{b['fps']:g} fps" if b.get("fps") is not None else f"{_ms(b['budget_ms'])} a frame"
    rate = b.get("achieved_fps") or 0.0
    return (f"# budget {target}: K={b['k']} ran, {rate:.1f} checked frames/s: "
            + ("met" if b["met"] else f"NOT met (below {1e3 / b['budget_ms']:.4g} frames/s)"))
