"""Metrics: thread-safe counters, the latency histogram's quantiles, the sliding drain rate, snapshots."""

from __future__ import annotations

import random
import threading

import pytest

from edge.metrics import LatencyHistogram, Metrics, RateWindow


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_counters_are_thread_safe():
    m = Metrics()

    def work():
        for _ in range(10_000):
            m.inc("sent")
        m.record_acked([0.01] * 1000)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = m.snapshot()
    assert snap["sent"] == 40_000, f"lost increments under contention: {snap['sent']}"
    assert snap["acked"] == 4_000, f"acked counter wrong: {snap['acked']}"


@pytest.mark.parametrize(
    "dist",
    [
        lambda r: r.uniform(0.010, 2.0),
        lambda r: r.lognormvariate(-1.0, 1.5),
        lambda r: 0.250,
    ],
    ids=["uniform", "lognormal", "constant"],
)
def test_histogram_quantiles_within_five_percent(dist):
    # given a known sample
    r = random.Random(7)
    values = sorted(dist(r) for _ in range(20_000))
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    # then p50/p99 are within the bucket resolution of the exact quantiles
    for q in (0.5, 0.99):
        exact = values[int(q * len(values)) - 1]
        got = h.quantile(q)
        assert got is not None and abs(got - exact) / exact < 0.05, f"q={q}: got {got}, exact {exact}"


def test_histogram_edges():
    h = LatencyHistogram()
    assert h.quantile(0.5) is None, "an empty histogram has no quantile"
    h.add(-1.0)  # clock skew: a capture time in the future counts as zero
    h.add(10**9)  # beyond the range: the last bucket, reported as at most the max seen
    assert h.quantile(0.0) == LatencyHistogram.MIN_S, "values under 1 ms land in the first bucket"
    assert h.quantile(1.0) <= 10**9, "the top quantile never exceeds the max seen"
    assert h.buckets.size == LatencyHistogram.PER_OCTAVE * LatencyHistogram.OCTAVES + 1, "memory is fixed"


def test_rate_window_slides():
    clock = FakeClock()
    w = RateWindow(window_s=10, clock=clock)
    assert w.rate() == 0.0, "no events: zero rate"
    for _ in range(10):  # 100 events/s for 10 s
        w.add(100)
        clock.t += 1
    assert w.rate() == pytest.approx(100, rel=0.15), f"steady 100/s measured as {w.rate()}"
    clock.t += 30  # nothing for longer than the window
    assert w.rate() == 0.0, "old events leave the window"


def test_rate_at_start_divides_by_elapsed_not_window():
    clock = FakeClock(500.5)
    w = RateWindow(window_s=10, clock=clock)
    w.add(200)
    clock.t += 2.0
    assert w.rate() == pytest.approx(100, rel=0.01), f"200 events over 2 s gave {w.rate()}"


def test_snapshot_has_every_field():
    m = Metrics()
    m.inc("sent", 3)
    m.inc("failed")
    m.inc("dead_lettered")
    m.set_gauge("pending", 2)
    m.record_acked([0.1, 0.2, 0.3])
    snap = m.snapshot()
    expected = {
        "sent": 3, "acked": 3, "failed": 1, "dead_lettered": 1, "pending": 2,
    }
    for key, value in expected.items():
        assert snap[key] == value, f"{key}: {snap[key]!r} != {value!r}"
    assert 180 < snap["latency_p50_ms"] < 220, f"p50 {snap['latency_p50_ms']}"
    assert 280 < snap["latency_p99_ms"] <= 300, f"p99 {snap['latency_p99_ms']}"
    assert snap["drain_rate_per_s"] > 0, "acked events make a drain rate"
