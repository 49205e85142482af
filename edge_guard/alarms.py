"""Alarms over a stream's verdicts: M of the last N checked frames flagged (:class:`AlarmWindow`),
or a one-sided CUSUM on the per-frame scores (:class:`SequentialAlarm`).

Both are fed one verdict per checked frame (``feed(verdict)``) and return "raised" when an
episode starts, "cleared" when it ends, else None; ``statistic`` is what the rule compares
(flagged frames in the window; the CUSUM sum S).

The CUSUM model. A checked frame's score s_t (lower = patches disagree more = more suspicious)
becomes evidence in benign standard deviations below the benign median,

    x_t = min((mu0 - s_t) / sigma0 - k, c)        mu0, sigma0: benign median and 1.4826 * MAD
    S_t = max(0, S_{t-1} + x_t),   S_0 = 0

so a benign frame adds -k on average and a frame d deviations low adds d - k (k: the drift,
half the shift in deviations that the test is tuned to, by default the distance from the
median to the per-frame threshold, so that a frame adds how far it falls below the threshold;
c bounds one frame's contribution, by default twice that distance: with h < c one frame far
below the threshold raises the alarm on its own, which the calibration allows only when benign
driving makes such frames rare enough; with h > c it takes several). An episode is raised when S_t > h; while
it is active S is held at most h, so that it clears (S back to 0, the alarm re-arms) about h/k
benign frames after the attack stops, however long the attack lasted. h is calibrated for a
false-alarm rate per hour (:mod:`edge_guard.calibration.alarm`) and stored in guard.json's
``alarm`` section.
"""

from __future__ import annotations

import math
from collections import deque


from .errors import UserError
from .limits import MAX_ALARM_WINDOW


class AlarmWindow:
    """M of the last N checked frames flagged -> an alarm episode, raised once.

    ``update(flagged)`` returns "raised" when an episode starts, "cleared" when it ends (fewer
    than M of the last N flagged: the alarm re-arms), else None.
    """

    def __init__(self, m: int = 3, n: int = 5):
        if not (isinstance(m, int) and isinstance(n, int) and 1 <= m <= n):
            raise UserError(f"an alarm rule is M/N with 1 <= M <= N, got {m}/{n}")
        if n > MAX_ALARM_WINDOW:
            raise UserError(f"an alarm window of at most N={MAX_ALARM_WINDOW} checked frames, got {m}/{n}")
        self.m, self.n = m, n
        self._window: deque = deque(maxlen=n)
        self.active = False
        self.episodes = 0

    @property
    def flagged(self) -> int:
        return sum(self._window)

    statistic = flagged

    def reset(self) -> None:
        """Forget the window and the episodes (a new run)."""
        self._window.clear()
        self.active, self.episodes = False, 0

    def feed(self, verdict) -> str | None:
        return self.update(verdict.adversarial)

    def describe(self) -> str:
        return f"{self.m}/{self.n}"

    def as_dict(self) -> dict:
        """The start record's ``alarm`` (also the alarm events' fields)."""
        return {"method": "m-of-n", "m": self.m, "n": self.n}

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


class SequentialAlarm:
    """One-sided CUSUM on the per-frame scores (the model is in the module docstring).

    h: the alarm level (benign deviations, > 0); reference: mu0, the benign median score;
    scale: sigma0 (> 0, score units); drift: k (>= 0, deviations); clip: c (> 0, deviations).
    ``update(score)`` or ``feed(verdict)`` -> "raised" / "cleared" / None.
    """

    method = "cusum"

    def __init__(self, h: float, reference: float, scale: float, drift: float = 0.5, clip: float = 4.0):
        values = {"h": h, "reference": reference, "scale": scale, "drift": drift, "clip": clip}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values.values()):
            raise UserError(f"a CUSUM alarm needs finite numbers, got {values}")
        if h <= 0 or scale <= 0 or drift < 0 or clip <= 0:
            raise UserError(f"a CUSUM alarm needs h > 0, scale > 0, drift >= 0, clip > 0, got {values}")
        self.h, self.reference, self.scale = float(h), float(reference), float(scale)
        self.drift, self.clip = float(drift), float(clip)
        self.reset()

    @classmethod
    def from_section(cls, section: dict) -> "SequentialAlarm":
        """From guard.json's ``alarm`` section (validated by the bundle loader)."""
        return cls(section["h"], section["reference"], section["scale"], section["drift"], section["clip"])

    def reset(self) -> None:
        """S = 0, no episode (a new run)."""
        self.statistic, self.active, self.episodes = 0.0, False, 0

    def evidence(self, score: float) -> float:
        """x_t for one score (deviations below mu0, minus the drift, at most clip)."""
        return min((self.reference - float(score)) / self.scale - self.drift, self.clip)

    def update(self, score: float) -> str | None:
        s = max(0.0, self.statistic + self.evidence(score))
        change = None
        if not self.active and s > self.h:
            self.active, change = True, "raised"
            self.episodes += 1
        elif self.active and s <= 0.0:
            self.active, change = False, "cleared"
        self.statistic = min(s, self.h) if self.active else s
        return change

    def feed(self, verdict) -> str | None:
        return self.update(verdict.score)

    def describe(self) -> str:
        return f"cusum h={self.h:.2f}"

    def as_dict(self) -> dict:
        return {"method": "cusum", "h": self.h, "reference": self.reference, "scale": self.scale,
                "drift": self.drift, "clip": self.clip}


def make_alarm(spec, bundle_alarm: dict | None, k: int | None = None, warn=None):
    """The alarm a run uses: spec (M, N), "M/N", "cusum", an alarm object, or None (the
    bundle's calibrated CUSUM when guard.json has an ``alarm`` section, else 3/5).

    ``k``: the K the run checks. A CUSUM calibrated at another K (the section's ``k``) does
    not fit its scores: "cusum" is refused, and the default falls back to 3/5, said once
    through ``warn(message)``."""
    if isinstance(spec, (AlarmWindow, SequentialAlarm)):
        return spec
    if spec == "cusum" and not bundle_alarm:
        raise UserError("the bundle has no calibrated sequential alarm (guard.json has no 'alarm' "
                        "section): add one with `edge-guard calibrate --extend --out BUNDLE --clips DIR`, "
                        "or use --alarm M/N")
    if spec in (None, "cusum") and bundle_alarm:
        at = bundle_alarm.get("k")
        if k is None or at is None or int(at) == int(k):
            return SequentialAlarm.from_section(bundle_alarm)
        message = (f"the bundle's sequential alarm was calibrated at K={at} and this run checks "
                   f"K={k}")
        if spec == "cusum":
            raise UserError(f"{message}: run at K={at}, or use --alarm M/N")
        if warn is not None:
            warn(f"{message}: the alarm is 3/5 instead")
        return AlarmWindow(3, 5)
    if spec is None:
        return AlarmWindow(3, 5)
    if isinstance(spec, str):
        spec = parse_alarm(spec)
    return AlarmWindow(*spec)
