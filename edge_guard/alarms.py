"""Alarms over a stream's verdicts: M of the last N checked frames flagged."""

from __future__ import annotations

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
