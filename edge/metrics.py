"""Thread-safe delivery counters, gauges, a sliding-window drain rate and a log-bucket latency histogram."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

COUNTERS = ("sent", "acked", "failed", "dead_lettered", "producer_recreated")
GAUGES = ("pending",)  # the spool's own figures come from Spool.stats(), not from here


class LatencyHistogram:
    """Fixed log-spaced buckets (ratio 2**(1/8), about 9 % wide) from 1 ms to ~12 days.

    Memory is constant; a quantile is the geometric middle of its bucket (error under 5 %).
    Values below 1 ms count in the first bucket, above the range in the last.
    """

    PER_OCTAVE = 8
    MIN_S = 0.001
    OCTAVES = 30  # 1 ms * 2**30 ≈ 12.4 days

    def __init__(self) -> None:
        self.buckets = np.zeros(self.PER_OCTAVE * self.OCTAVES + 1, dtype=np.int64)
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self.add_many(np.array([seconds], dtype=np.float64))

    def add_many(self, seconds: np.ndarray) -> None:
        """Count many values at once (the flusher acks in batches)."""
        v = np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)
        if v.size == 0:
            return
        idx = np.zeros(v.shape, dtype=np.int64)
        above = v > self.MIN_S
        idx[above] = (np.log2(v[above] / self.MIN_S) * self.PER_OCTAVE).astype(np.int64) + 1
        np.minimum(idx, len(self.buckets) - 1, out=idx)
        self.buckets += np.bincount(idx, minlength=len(self.buckets))
        self.count += int(v.size)
        self.total_s += float(v.sum())
        self.max_s = max(self.max_s, float(v.max()))

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) in seconds, None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        i = int(np.searchsorted(np.cumsum(self.buckets), rank))
        return min(self._middle(i), self.max_s)

    def cumulative(self, every: int = PER_OCTAVE, top_s: float = 60.0) -> list[list[float]]:
        """[[upper bound s, count of values ≤ it], ...] at every `every`-th bucket edge up to `top_s` (with the
        default, the powers of two from 1 ms): a Prometheus histogram's `le` buckets, cumulative."""
        sums = np.cumsum(self.buckets)
        out = []
        for i in range(0, len(self.buckets), every):
            bound = self.MIN_S * 2 ** (i / self.PER_OCTAVE)
            if bound > top_s:
                break
            out.append([bound, int(sums[i])])
        return out

    def _middle(self, i: int) -> float:
        if i == 0:
            return self.MIN_S
        lo = self.MIN_S * 2 ** ((i - 1) / self.PER_OCTAVE)
        return lo * 2 ** (0.5 / self.PER_OCTAVE)


class RateWindow:
    """Events per second over the last `window_s` seconds, counted in one-second slots."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._slots: collections.deque[list[float]] = collections.deque()  # [slot start second, count]
        self._first: float | None = None

    def add(self, n: int) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        sec = math.floor(now)
        if self._slots and self._slots[-1][0] == sec:
            self._slots[-1][1] += n
        else:
            self._slots.append([sec, n])
        self._trim(now)

    def _trim(self, now: float) -> None:
        oldest = math.floor(now) - self.window_s + 1  # keep window_s slots, the current one included
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        if not self._slots or self._first is None:
            return 0.0
        window_start = math.floor(now) - self.window_s + 1
        span = now - max(window_start, self._first)
        return sum(c for _, c in self._slots) / max(1.0, span)


class Metrics:
    """Counters (sent, acked, failed, dead_lettered, producer_recreated), the gauge pending (in flight), drain rate
    (acked/s, sliding window) and captured→acked latency p50/p99.
    Every method may be called from any thread."""

    def __init__(self, rate_window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._gauges: dict[str, float] = dict.fromkeys(GAUGES, 0)
        self._latency = LatencyHistogram()
        self._rate = RateWindow(rate_window_s, clock)

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def record_acked(self, latencies_s: Iterable[float] | np.ndarray) -> None:
        """Count acked events and their captured→acked latencies (one per event)."""
        lat = latencies_s if isinstance(latencies_s, np.ndarray) else np.fromiter(latencies_s, dtype=np.float64)
        if lat.size == 0:
            return
        with self._lock:
            self._latency.add_many(lat)
            self._counters["acked"] += int(lat.size)
            self._rate.add(int(lat.size))

    def get(self, name: str) -> float:
        with self._lock:
            return self._counters.get(name, self._gauges.get(name, 0))

    def snapshot(self) -> dict[str, float | int | None]:
        """A flat dict: counters, gauges, drain_rate_per_s, latency_p50_ms, latency_p99_ms, latency_max_ms
        (captured→acked; None before the first ack)."""
        with self._lock:
            out: dict[str, float | int | None] = {**self._counters, **self._gauges}
            out["drain_rate_per_s"] = round(self._rate.rate(), 3)
            h = self._latency
            out["latency_p50_ms"] = _ms(h.quantile(0.5))
            out["latency_p99_ms"] = _ms(h.quantile(0.99))
            out["latency_max_ms"] = _ms(h.max_s if h.count else None)
            return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)
