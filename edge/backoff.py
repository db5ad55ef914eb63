"""The one retry delay: capped exponential backoff with equal jitter (Kafka flusher, gpsd, live sources)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """initial·2ⁿ capped at max, times a random 50–100 % (AWS's "equal jitter": retries of many vehicles
    spread out, yet never retry sooner than half the nominal delay). `reset()` after a success."""

    def __init__(self, initial_s: float, max_s: float, rng: Callable[[], float] = random.random):
        self.initial_s, self.max_s, self._rng = initial_s, max(max_s, initial_s), rng
        self.failures = 0

    def nominal(self, attempt: int) -> float:
        """The delay before jitter of the 0-based `attempt`."""
        return min(self.max_s, self.initial_s * 2 ** min(attempt, 60))

    def next(self) -> float:
        base = self.nominal(self.failures)
        self.failures += 1
        return base * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.failures = 0
