"""Each stage's latency on the way from capture to the broker's ack: sliding-window p50/p99, cumulative histograms,
and the latency budget (one WARNING naming the slowest stage when capture → ack p99 is over it, one record back).

Stages record from their own threads (`record`); the service's status loop reads `snapshot()` every few seconds.
The window answers "how is it now" (status, the budget); the cumulative histogram is what Prometheus wants
(`rate()` over its buckets gives any window the operator likes).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from edge.metrics import LatencyHistogram

log = logging.getLogger(__name__)

# In the order an event meets them. The pipeline's stages are timed per analysed frame, delivery's per event.
STAGES: dict[str, str] = {
    "capture": "decoder hand-over → preprocessing starts (hand-off and queue wait)",
    "preprocess": "letterbox and tensor conversion",
    "inference": "the model (session.run)",
    "postprocess": "decode, NMS, GPS fix and building the events",
    "spool": "spool append until committed (fsync'd)",
    "produce": "spool append → handed to the Kafka producer (commit and flusher pick-up)",
    "ack": "handed to the producer → acknowledged by the broker",
    "total": "capture → acknowledged by the broker (the budget's measure)",
}
TOTAL = "total"
WINDOW_MAX = 4096  # values kept per stage for the window's percentiles (a 60 s window at 5 FPS holds 300)
MIN_JUDGED = 20  # the budget is not judged on fewer events in the window than this


class _Stage:
    """One stage: the values of the last `window_s` seconds, and every value since start in a histogram."""

    __slots__ = ("at", "values", "hist")

    def __init__(self) -> None:
        self.at: collections.deque[float] = collections.deque(maxlen=WINDOW_MAX)
        self.values: collections.deque[float] = collections.deque(maxlen=WINDOW_MAX)
        self.hist = LatencyHistogram()


class StageLatencies:
    """Thread-safe per-stage latencies, in seconds. `record` costs a few microseconds (one lock, two appends)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stages = {name: _Stage() for name in STAGES}
        self._unbinned: dict[str, list[float]] = {name: [] for name in STAGES}

    def record(self, stage: str, seconds: float) -> None:
        now = self._clock()
        with self._lock:
            s = self._stages[stage]
            s.at.append(now)
            s.values.append(seconds)
            self._unbin(stage, [seconds])

    def record_many(self, stage: str, seconds: np.ndarray) -> None:
        """Many values at once (delivery reports come in batches)."""
        if seconds.size == 0:
            return
        now = self._clock()
        values = seconds.tolist()
        with self._lock:
            s = self._stages[stage]
            s.at.extend([now] * len(values))
            s.values.extend(values)
            self._unbin(stage, values)

    def _unbin(self, stage: str, values: list[float]) -> None:
        """Keep values for the histogram until snapshot() bins them, or bin them now once they are many: a
        command that never asks for a snapshot must not grow without bound."""
        pending = self._unbinned[stage]
        pending.extend(values)
        if len(pending) >= WINDOW_MAX:
            self._stages[stage].hist.add_many(np.asarray(pending))
            self._unbinned[stage] = []

    def snapshot(self) -> dict[str, dict[str, object]]:
        """{stage: {p50_ms, p99_ms, max_ms, count (in the window), total (ever), sum_s, buckets}} for the stages
        that have seen a value; `buckets` is [[upper bound s, cumulative count], ...] for Prometheus."""
        horizon = self._clock() - self.window_s
        out: dict[str, dict[str, object]] = {}
        with self._lock:
            for name, s in self._stages.items():
                pending = self._unbinned[name]
                if pending:  # binned here, not in record(): numpy per value would cost more than the stage itself
                    s.hist.add_many(np.asarray(pending))
                    self._unbinned[name] = []
                while s.at and s.at[0] < horizon:
                    s.at.popleft()
                    s.values.popleft()
                if not s.hist.count:
                    continue
                window = np.asarray(s.values) * 1000.0
                out[name] = {
                    "p50_ms": _q(window, 50), "p99_ms": _q(window, 99),
                    "max_ms": round(float(window.max()), 2) if window.size else None,
                    "count": int(window.size), "total": s.hist.count, "sum_s": round(s.hist.total_s, 6),
                    "buckets": s.hist.cumulative(),
                }
        return out


def _q(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values.size else None


def slowest(stages: Mapping[str, Mapping[str, object]]) -> tuple[str, float] | None:
    """The stage (not the total) with the highest window p99, and that p99 in ms."""
    parts = [(name, float(v["p99_ms"])) for name, v in stages.items()
             if name != TOTAL and isinstance(v.get("p99_ms"), (int, float))]
    return max(parts, key=lambda p: p[1]) if parts else None


def describe(stages: Mapping[str, Mapping[str, object]]) -> str:
    """`capture 1/2 ms, preprocess 4/6 ms, …` (p50/p99 over the window), in the stages' order."""
    parts = []
    for name in STAGES:
        v = stages.get(name)
        if v and v.get("p50_ms") is not None:
            parts.append(f"{name} {v['p50_ms']:.0f}/{v['p99_ms']:.0f} ms")
    return ", ".join(parts) or "no samples"


def journal_fields(stages: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """LATENCY_<STAGE>_P50_MS / _P99_MS journal fields of a periodic record (`journalctl -o json`)."""
    fields = {}
    for name, v in stages.items():
        for q in ("p50_ms", "p99_ms"):
            if v.get(q) is not None:
                fields[f"LATENCY_{name.upper()}_{q.upper()}"] = f"{v[q]}"
    return fields


class LatencyBudget:
    """Judges capture → ack p99 over the window against `budget_ms`: one WARNING when it goes over (naming the
    slowest stage), one INFO record when it is back under; `exceeded` is the flag status shows."""

    def __init__(self, budget_ms: float, clock: Callable[[], float] = time.monotonic):
        self.budget_ms = budget_ms
        self.exceeded = False
        self.warnings = 0
        self._clock = clock
        self._since: float | None = None

    def check(self, stages: Mapping[str, Mapping[str, object]]) -> None:
        total = stages.get(TOTAL)
        if not total or int(total.get("count") or 0) < MIN_JUDGED or total.get("p99_ms") is None:
            return  # too few events in the window to say (no detections, or the window aged out)
        p99 = float(total["p99_ms"])  # type: ignore[arg-type]
        if p99 > self.budget_ms and not self.exceeded:
            self.exceeded, self._since = True, self._clock()
            self.warnings += 1
            name, stage_p99 = slowest(stages) or ("unknown", 0.0)
            log.warning("latency budget exceeded: capture → ack p99 %.0f ms > budget %.0f ms over %d events; slowest "
                        "stage %s (p99 %.0f ms); stages p50/p99: %s", p99, self.budget_ms, total["count"], name,
                        stage_p99, describe(stages),
                        extra={"LATENCY_BUDGET_MS": f"{self.budget_ms:g}", "LATENCY_SLOWEST_STAGE": name})
        elif p99 <= self.budget_ms and self.exceeded:
            over = self._clock() - (self._since or self._clock())
            self.exceeded, self._since = False, None
            log.info("latency back within budget: capture → ack p99 %.0f ms ≤ %.0f ms (was over for %.0f s)",
                     p99, self.budget_ms, over, extra={"LATENCY_BUDGET_MS": f"{self.budget_ms:g}"})


class LatencyReport:
    """What the service's status loop does with the stage latencies every few seconds: a snapshot for status, the
    budget's judgement (from one window after the first update on), and every `interval_s` (and at the stop) one
    journal record with each stage's p50/p99."""

    def __init__(self, stages: StageLatencies, budget: LatencyBudget, interval_s: float):
        self.stages, self.budget, self.interval_s = stages, budget, interval_s
        self._last: float | None = None
        self._started: float | None = None

    def update(self, now: float, *, final: bool = False) -> dict[str, dict[str, object]]:
        snap = self.stages.snapshot()
        if self._started is None:
            self._started = now
        if now - self._started >= self.stages.window_s:  # a window with no start-up in it (model warm-up, the
            self.budget.check(snap)                       # stream's first burst): no warning at every start
        if self._last is None:
            self._last = now  # the first record after one interval: a window that has filled
        elif snap and self.interval_s > 0 and (final or now - self._last >= self.interval_s):
            self._last = now
            total = snap.get(TOTAL, {})
            log.info("latency over the last %.0f s, p50/p99: %s%s", self.stages.window_s, describe(snap),
                     f" (budget {self.budget.budget_ms:g} ms{', EXCEEDED' if self.budget.exceeded else ''})"
                     if total else "", extra={**journal_fields(snap), "stage": "latency"})
        return snap
