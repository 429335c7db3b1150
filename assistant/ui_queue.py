"""The line for the chat model: how many questions wait ahead of a user, and how long answers take.

The workspace answers one question at a time (one model on a few cores); a user who asks while
others wait is told their place and the recent median and p95 answer times. app.py calls
`join()` when a question is sent (outside the model's queue, so it answers at once), `start()`
when its answer begins and `finish()` when it ends:

    line = AnswerLine()
    ahead = line.join()            # questions sent earlier that have not started or finished
    note = line.note(ahead)        # "2 questions ahead of you ..."
    line.start(); ...; line.finish(seconds)
"""

from __future__ import annotations

import statistics
import threading
from collections import deque


class AnswerLine:
    """Counts of waiting and running questions, and the durations of recent answers."""

    def __init__(self, keep: int = 50) -> None:
        self._lock = threading.Lock()
        self.waiting = 0  # joined, not started
        self.running = 0
        self.seconds: deque[float] = deque(maxlen=keep)

    def join(self) -> int:
        """Register a question; returns how many questions are ahead of it."""
        with self._lock:
            ahead = self.waiting + self.running
            self.waiting += 1
            return ahead

    def start(self) -> None:
        with self._lock:
            self.waiting = max(0, self.waiting - 1)  # a question sent through the API alone never joined
            self.running += 1

    def finish(self, seconds: float) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
            self.seconds.append(seconds)

    def timings(self) -> tuple[float, float] | None:
        """(median, p95) seconds of the recent answers, or None before the first one."""
        with self._lock:
            values = sorted(self.seconds)
        if not values:
            return None
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        return statistics.median(values), p95

    def note(self, ahead: int) -> str:
        """What a user who just asked reads above the chat."""
        timing = self.timings()
        recent = (f" Recent answers took {timing[0]:.0f} s (median), {timing[1]:.0f} s (p95)."
                  if timing else "")
        if ahead == 0:
            return f"Your question is next for the model.{recent}"
        plural = "question is" if ahead == 1 else "questions are"
        return (f"⏳ {ahead} {plural} ahead of yours: the model answers one at a time, so yours starts when "
                f"they finish (your place also shows on the chat).{recent}")
