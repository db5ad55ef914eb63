"""edge.latency: per-stage window percentiles, cumulative histograms, the budget's warning and recovery, the
periodic journal record; and how status and the Prometheus textfile show them."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge.latency import (
    STAGES,
    LatencyBudget,
    LatencyReport,
    StageLatencies,
    describe,
    slowest,
)
from edge.status import Snapshot, format_status, metrics_from_status, render_prometheus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def filled(values_ms: dict[str, list[float]], clock: Clock | None = None) -> StageLatencies:
    lat = StageLatencies(window_s=60.0, clock=clock or Clock())
    for stage, values in values_ms.items():
        for v in values:
            lat.record(stage, v / 1000.0)
    return lat


def test_window_percentiles_per_stage_in_ms():
    snap = filled({"preprocess": [float(i) for i in range(1, 101)], "ack": [5.0] * 10}).snapshot()
    pre = snap["preprocess"]
    assert pre["count"] == 100 and pre["total"] == 100, f"100 values in the window and in all: {pre}"
    assert pre["p50_ms"] == pytest.approx(50.5) and pre["p99_ms"] == pytest.approx(99.01), f"numpy percentiles: {pre}"
    assert pre["max_ms"] == pytest.approx(100.0), f"max: {pre}"
    assert set(snap) == {"preprocess", "ack"}, f"only stages that saw a value: {sorted(snap)}"


def test_values_leave_the_window_but_stay_in_the_histogram():
    clock = Clock()
    lat = filled({"spool": [100.0] * 50}, clock)
    clock.now += 61.0
    lat.record("spool", 0.002)
    s = lat.snapshot()["spool"]
    assert s["count"] == 1 and s["p99_ms"] == pytest.approx(2.0), f"the 100 ms values aged out of the window: {s}"
    assert s["total"] == 51 and s["sum_s"] == pytest.approx(5.002), f"the histogram keeps everything: {s}"


def test_cumulative_buckets_are_powers_of_two_from_one_ms():
    lat = filled({"inference": [0.5, 1.5, 3.0, 3.9, 70.0]})
    buckets = dict((round(le * 1000), n) for le, n in lat.snapshot()["inference"]["buckets"])
    assert buckets[1] == 1 and buckets[2] == 2 and buckets[4] == 4, f"≤1 ms: 1, ≤2: 2, ≤4: 4: {buckets}"
    assert buckets[64] == 4 and buckets[128] == 5, f"70 ms lands under 128 ms: {buckets}"
    counts = list(buckets.values())
    assert counts == sorted(counts), f"cumulative: {counts}"


def test_record_many_and_unknown_stage():
    lat = StageLatencies()
    lat.record_many("total", np.array([0.01, 0.02, 0.03]))
    lat.record_many("total", np.array([]))
    assert lat.snapshot()["total"]["count"] == 3, "three values, the empty batch adds none"
    with pytest.raises(KeyError):
        lat.record("no-such-stage", 0.1)


def test_slowest_is_a_stage_not_the_total_and_describe_keeps_their_order():
    snap = filled({"total": [300.0] * 30, "inference": [60.0] * 30, "produce": [120.0] * 30}).snapshot()
    assert slowest(snap) == ("produce", pytest.approx(120.0)), f"the total is not a stage: {slowest(snap)}"
    assert describe(snap) == "inference 60/60 ms, produce 120/120 ms, total 300/300 ms", describe(snap)
    assert list(STAGES)[-1] == "total", "total last"


def test_budget_warns_once_names_the_slowest_stage_and_records_the_recovery(caplog):
    caplog.set_level(logging.INFO, logger="edge.latency")
    clock = Clock()
    budget = LatencyBudget(200.0, clock=clock)
    few = filled({"total": [900.0] * 5}).snapshot()
    budget.check(few)
    assert not budget.exceeded and not caplog.records, "not judged on 5 events"
    over = filled({"total": [250.0] * 40, "spool": [180.0] * 40, "inference": [50.0] * 40}).snapshot()
    budget.check(over)
    budget.check(over)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert budget.exceeded and len(warnings) == 1, f"one WARNING while over: {[r.getMessage() for r in warnings]}"
    assert "slowest stage spool (p99 180 ms)" in warnings[0].getMessage(), warnings[0].getMessage()
    assert warnings[0].LATENCY_SLOWEST_STAGE == "spool", "a journal field names the stage"
    clock.now += 42.0
    budget.check(filled({"total": [150.0] * 40}).snapshot())
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert not budget.exceeded and len(back) == 1 and "was over for 42 s" in back[0], f"one recovery record: {back}"
    assert budget.warnings == 1, "counted"


def test_report_writes_one_journal_record_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="edge.latency")
    lat = filled({"total": [20.0] * 30, "inference": [10.0] * 30})
    report = LatencyReport(lat, LatencyBudget(200.0), interval_s=60.0)
    assert report.update(0.0)["total"]["count"] == 30, "update returns the snapshot"
    report.update(30.0)
    assert not caplog.records, "nothing before the first interval has passed"
    report.update(61.0)
    report.update(62.0)
    assert len(caplog.records) == 1, f"one record per interval: {[r.getMessage() for r in caplog.records]}"
    rec = caplog.records[0]
    assert "inference 10/10 ms" in rec.getMessage() and "budget 200 ms" in rec.getMessage(), rec.getMessage()
    assert rec.LATENCY_TOTAL_P99_MS == "20.0" and rec.LATENCY_INFERENCE_P50_MS == "10.0", "journal fields"
    report.update(63.0, final=True)
    assert len(caplog.records) == 2, "and one at the stop"


def test_the_budget_is_judged_once_a_window_has_passed_since_start(caplog):
    caplog.set_level(logging.INFO, logger="edge.latency")
    budget = LatencyBudget(200.0)
    report = LatencyReport(filled({"total": [900.0] * 30}), budget, interval_s=0)
    report.update(100.0)
    report.update(159.0)
    assert not budget.exceeded, "start-up latency (warm-up, the stream's first burst) is not judged"
    report.update(160.0)
    assert budget.exceeded and budget.warnings == 1, "judged from one window (60 s) after the first update"


def _status(budget: LatencyBudget) -> dict:
    snap = filled({"capture": [1.0] * 30, "spool": [3.0] * 30, "total": [250.0] * 30}).snapshot()
    budget.check(snap)
    return Snapshot(state="running", fps=5.0, frames=10, frames_dropped=0, detections=3, spool_depth=0,
                    spool_bytes=0, spool_oldest_age_s=None, dead_letters=0, evicted=0, broker="connected",
                    stages=snap, latency_budget_ms=budget.budget_ms, latency_over_budget=budget.exceeded).to_dict()


def test_status_shows_each_stage_and_flags_the_budget():
    text = format_status(_status(LatencyBudget(200.0)))
    assert "latency:     p50 / p99 over the sliding window, budget 200 ms" in text, text
    assert "  spool            3.0 /     3.0 ms  (30)" in text, text
    assert "WARNING: capture → ack p99 250.0 ms is over the latency budget of 200.0 ms" in text, text
    assert "WARNING" not in format_status(_status(LatencyBudget(1000.0))), "no flag under the budget"


def test_prometheus_histograms_and_window_quantiles():
    text = render_prometheus(metrics_from_status(_status(LatencyBudget(200.0))))
    lines = text.splitlines()
    assert "# TYPE edge_stage_latency_seconds histogram" in lines, text
    assert 'edge_stage_latency_seconds_bucket{stage="spool",le="0.004"} 30' in lines, text
    assert 'edge_stage_latency_seconds_bucket{stage="spool",le="0.002"} 0' in lines, text
    assert 'edge_stage_latency_seconds_bucket{stage="total",le="+Inf"} 30' in lines, text
    assert 'edge_stage_latency_seconds_count{stage="total"} 30' in lines, text
    assert 'edge_stage_latency_seconds_sum{stage="total"} 7.5' in lines, text
    assert 'edge_stage_latency_p99_seconds{stage="capture"} 0.001' in lines, text
    assert "edge_latency_over_budget 1" in lines and "edge_latency_budget_seconds 0.2" in lines, text


def test_values_are_binned_without_a_snapshot_so_memory_stays_bounded():
    lat = StageLatencies()
    for _ in range(10):
        lat.record_many("ack", np.full(1000, 0.003))
    assert all(len(v) < 4096 for v in lat._unbinned.values()), "values wait for the histogram only in small numbers"
    assert lat.snapshot()["ack"]["total"] == 10_000, "and every value is counted"
