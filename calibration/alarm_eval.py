"""How a stream alarm does on attacked windows and benign drives: detection delay and false
alarms per hour, replayed through the runtime's own alarm objects (edge_guard.alarms).

An alarm is fed the per-frame verdicts of a drive in order; ``make_alarm()`` gives a fresh
one per drive. Frames are indexed from 0; an attack covers frames onset .. onset + length - 1.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from edge_guard.errors import UserError


def window_scores(benign, attacked, onset: int, length: int) -> np.ndarray:
    """(frames,) scores of a drive attacked for ``length`` frames from ``onset``: the benign
    scores with frames onset .. onset + length - 1 replaced by the first ``length`` attacked
    scores (the attacked stretch's scores from its first frame on)."""
    scores = np.array(benign, np.float64)
    attacked = np.asarray(attacked, np.float64)
    if not (0 <= onset and 1 <= length <= attacked.size and onset + length <= scores.size):
        raise UserError(f"an attack of {length} frames from frame {onset} does not fit a drive of "
                        f"{scores.size} frames with {attacked.size} attacked scores")
    scores[onset:onset + length] = attacked[:length]
    return scores


def feed(alarm, scores, threshold: float) -> list:
    """The alarm's change ("raised"/"cleared"/None) after each frame of ``scores``."""
    return [alarm.feed(SimpleNamespace(score=float(s), adversarial=bool(s < threshold)))
            for s in scores]


def detection_delay(make_alarm, scores, threshold: float, onset: int, length: int) -> dict:
    """Replay one attacked drive. Returns {"delay": frames from onset to the first raise at or
    after onset inside the attack (0: raised on the onset frame itself), None if the attack
    ended unraised; "active_at_onset": an episode was already active (a false alarm running
    into the attack; the delay is then counted from the next raise); "false_before": alarms
    raised before the onset}."""
    changes = feed(make_alarm(), scores, threshold)
    raised = [i for i, c in enumerate(changes) if c == "raised"]
    before = [i for i in raised if i < onset]
    active = False
    for c in changes[:onset]:
        active = True if c == "raised" else False if c == "cleared" else active
    inside = [i - onset for i in raised if onset <= i < onset + length]
    return {"delay": inside[0] if inside else None, "active_at_onset": active,
            "false_before": len(before)}


def false_alarms(make_alarm, sequences, threshold: float, fps: float) -> dict:
    """Alarms raised on benign drives (one fresh alarm per drive): {"alarms", "frames",
    "hours", "per_hour", "per_hour_ci95" (exact Poisson interval)}."""
    alarms = frames = 0
    for s in sequences:
        alarms += sum(c == "raised" for c in feed(make_alarm(), s, threshold))
        frames += len(s)
    hours = frames / (3600.0 * fps)
    lo, hi = poisson_interval(alarms)
    return {"alarms": alarms, "frames": frames, "hours": hours, "per_hour": alarms / hours,
            "per_hour_ci95": [lo / hours, hi / hours]}


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson mean from an observed ``count``."""
    from scipy.stats import chi2

    a = (1.0 - level) / 2.0
    lo = 0.0 if count == 0 else float(chi2.ppf(a, 2 * count) / 2.0)
    hi = float(chi2.ppf(1.0 - a, 2 * count + 2) / 2.0)
    return lo, (hi if math.isfinite(hi) else float("inf"))


def count_alarms(alarm, scores, threshold: float) -> int:
    """Alarms ``alarm`` (a fresh AlarmWindow or SequentialAlarm; only its settings are read)
    raises on one long run of ``scores``: the runtime rule, vectorised for simulated hours."""
    from edge_guard.alarms import AlarmWindow

    from .alarm import count_raises, evidence

    scores = np.asarray(scores, np.float64)
    if isinstance(alarm, AlarmWindow):
        flagged = (scores < threshold).astype(np.int64)
        active = np.convolve(flagged, np.ones(alarm.n, np.int64))[:flagged.size] >= alarm.m
        return int(active[0]) + int((active[1:] & ~active[:-1]).sum())
    x = evidence(scores, alarm.reference, alarm.scale, alarm.drift, alarm.clip)
    return count_raises(x, alarm.h)
