"""Status of the running service: status.json in the runtime dir (read by `edge status`) and a Prometheus textfile.

Both files are replaced atomically (write a temporary file in the same directory, then rename), so a
reader sees the old or the new content, never a torn one. status.json holds a `Snapshot` (the fields of the
stages: pipeline, source, spool, flusher, GPS, native output) plus `updated_at` (ISO 8601, UTC) and `pid`,
which `StatusWriter` adds. Readers (`edge status`, the Prometheus textfile) take it as the JSON it is, and
tolerate missing keys: a newer or older writer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.clock import iso_utc, parse_iso_time
from edge.prometheus import Histogram, Metric, render_prometheus

if TYPE_CHECKING:  # the stages' types, for annotations only: `edge status` reads the file without numpy & co.
    from edge.latency import LatencyBudget
    from edge.pipeline import PipelineStats
    from edge.sources import SourceStats
    from edge.spool import SpoolStats
    from edge.types import BrokerState, GpsFix, GpsSource, GpsStatus

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STALE_AFTER_S = 30.0  # `format_status` flags a status older than this: the service is stopped or hung


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True, slots=True)
class GpsView:
    """The fix of the latest frame with detections, as status shows it."""

    status: GpsStatus
    lat: float | None
    lon: float | None
    source: GpsSource

    @classmethod
    def of(cls, fix: GpsFix | None) -> GpsView | None:
        return None if fix is None else cls(fix.status, fix.lat, fix.lon, fix.source)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the service reports every few seconds: each stage contributes its part (`Snapshot.of`)."""

    state: Literal["running", "stopped"]
    fps: float
    frames: int
    frames_dropped: int
    detections: int
    spool_depth: int
    spool_bytes: int
    spool_oldest_age_s: float | None
    dead_letters: int
    evicted: int
    broker: BrokerState
    spool_lost: int = 0  # events found missing when the spool was opened (a lost or damaged WAL), ever
    acked: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    dead_lettered: int = 0
    producer_recreated: int = 0
    drain_rate_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    gps: GpsView | None = None
    native_log_lines: int = 0
    native_log_dropped: int = 0
    drained: bool | None = None  # in the final snapshot: whether the spool was drained at the stop
    # edge.latency.StageLatencies.snapshot(): {stage: {p50_ms, p99_ms, max_ms, count, total, sum_s, buckets}}
    stages: dict[str, dict[str, object]] = field(default_factory=dict)
    latency_budget_ms: float | None = None
    latency_over_budget: bool = False  # capture → ack p99 over the window is above the budget
    objects: int = 0  # object records made (tracks that ended)
    objects_located: int = 0  # of them, with a position

    @classmethod
    def of(cls, *, pipeline: PipelineStats, source: SourceStats, spool: SpoolStats, broker: BrokerState,
           delivery: Mapping[str, float | None], native: Mapping[str, int],
           stages: Mapping[str, dict[str, object]] | None = None, budget: LatencyBudget | None = None,
           state: Literal["running", "stopped"] = "running", drained: bool | None = None) -> Snapshot:
        """From the pipeline's and source's counters, the spool's stats, the flusher's metrics snapshot and
        the native-output counters."""
        def count(key: str) -> int:
            return int(delivery.get(key) or 0)

        return cls(
            state=state, fps=round(pipeline.fps, 2), frames=pipeline.frames, frames_dropped=source.dropped,
            detections=pipeline.detections, spool_depth=spool.depth, spool_bytes=spool.bytes,
            spool_oldest_age_s=spool.oldest_age_s, dead_letters=spool.dead, evicted=spool.evicted_total,
            broker=broker, spool_lost=spool.lost_total, acked=count("acked"), sent=count("sent"), failed=count("failed"),
            pending=count("pending"), dead_lettered=count("dead_lettered"),
            producer_recreated=count("producer_recreated"), drain_rate_per_s=delivery.get("drain_rate_per_s"),
            latency_p50_ms=delivery.get("latency_p50_ms"), latency_p99_ms=delivery.get("latency_p99_ms"),
            gps=GpsView.of(pipeline.last_fix), native_log_lines=int(native.get("native_log_lines", 0)),
            native_log_dropped=int(native.get("native_log_dropped", 0)), drained=drained,
            stages=dict(stages or {}), latency_budget_ms=None if budget is None else budget.budget_ms,
            latency_over_budget=bool(budget and budget.exceeded), objects=pipeline.objects,
            objects_located=pipeline.objects_located,
        )

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        if self.drained is None:
            del data["drained"]
        return data

    def line(self) -> str:
        """The one-line STATUS= of systemctl status."""
        gps = self.gps.status if self.gps else "n/a"
        return (f"{self.fps:.1f} fps, {self.detections} detections, spool {self.spool_depth} "
                f"(dead {self.dead_letters}), broker {self.broker}, gps {gps}")


def _utc_now(clock: Callable[[], float]) -> str:
    return iso_utc(clock())


class StatusWriter:
    """Writes `<runtime_dir>/status.json` (and the Prometheus textfile when `prometheus_path` is given)."""

    def __init__(self, runtime_dir: Path | str, *, prometheus_path: Path | str | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = Path(runtime_dir) / STATUS_FILE
        self.prometheus_path = Path(prometheus_path) if prometheus_path else None
        self.clock = clock
        self.failures = 0

    def write(self, snapshot: Snapshot | Mapping[str, object]) -> dict[str, object] | None:
        """Writes the snapshot plus updated_at and pid; returns what was written, None when the write failed.

        A failed write (runtime dir gone, disk full) is logged and counted, never raised: status is not
        worth stopping the pipeline for.
        """
        fields = snapshot.to_dict() if isinstance(snapshot, Snapshot) else snapshot
        data = {**fields, "updated_at": _utc_now(self.clock), "pid": os.getpid()}
        try:
            # not sort_keys: the stages stay in pipeline order for `edge status`
            _atomic_write(self.path, json.dumps(data, indent=1, default=str) + "\n")
            if self.prometheus_path is not None:
                write_prometheus(self.prometheus_path, metrics_from_status(data, now=self.clock()))
        except OSError as exc:
            self.failures += 1
            log.warning("status: cannot write %s: %s", self.path, exc)
            return None
        return data


def read_status(runtime_dir: Path | str) -> dict[str, object] | None:
    """The last status.json, or None when there is none (service not running) or it is unreadable."""
    path = Path(runtime_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("status: cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def status_age(data: Mapping[str, object], now: float | None = None) -> float | None:
    """Seconds since `updated_at`, None when it is missing or malformed."""
    try:
        stamp = parse_iso_time(str(data["updated_at"]))
    except (KeyError, ValueError):
        return None
    return (time.time() if now is None else now) - stamp


def _pid_running(pid: object) -> bool | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _num(value: object, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def format_status(d: Mapping[str, object], now: float | None = None) -> str:
    """Human summary for `edge status`; tolerates missing keys (older or newer writers)."""
    gps = d.get("gps")
    if isinstance(gps, Mapping):
        fix = str(gps.get("status", "?"))
        if gps.get("lat") is not None and gps.get("lon") is not None:
            fix += f" {float(gps['lat']):.5f},{float(gps['lon']):.5f}"
        if gps.get("source"):
            fix += f" ({gps['source']})"
    else:
        fix = "n/a" if gps is None else str(gps)
    age = status_age(d, now)
    updated = f"{d.get('updated_at', 'n/a')}" + (f" ({age:.0f} s ago)" if age is not None else "")
    lines = [
        f"state:       {d.get('state', 'unknown')} (pid {d.get('pid', '?')})",
        f"updated:     {updated}",
        f"fps:         {_num(d.get('fps'), '{:.1f}')}",
        f"frames:      {_num(d.get('frames'))} read, {_num(d.get('frames_dropped'))} dropped",
        f"detections:  {_num(d.get('detections'))}",
        f"objects:     {_num(d.get('objects'))} ({_num(d.get('objects_located'))} located)",
        f"spool:       {_num(d.get('spool_depth'))} waiting, oldest {_num(d.get('spool_oldest_age_s'), '{:.0f} s')}"
        + (f", {d['dead_letters']} dead letters" if d.get("dead_letters") else "")
        + (f", LOST {d['spool_lost']} (WAL lost or damaged: edge queue stats)" if d.get("spool_lost") else ""),
        f"broker:      {d.get('broker', 'n/a')}" + (f", {d['acked']} acked" if d.get("acked") is not None else "")
        + (f", {d['pending']} in flight, {d.get('failed', 0)} failed, {d.get('dead_lettered', 0)} dead-lettered"
           if d.get("pending") is not None else "")
        + (f", latency p50 {d['latency_p50_ms']:.0f} ms p99 {d['latency_p99_ms']:.0f} ms"
           if isinstance(d.get("latency_p50_ms"), (int, float)) and isinstance(d.get("latency_p99_ms"), (int, float)) else "")
        + (f", producer recreated {d['producer_recreated']}" if d.get("producer_recreated") else ""),
        f"gps:         {fix}",
    ] + _stage_lines(d)
    warnings = []
    if age is not None and age > STALE_AFTER_S and d.get("state") != "stopped":
        warnings.append(f"status is {age:.0f} s old: the service is stopped or hung (systemctl status edge-detector)")
    if d.get("state") != "stopped" and _pid_running(d.get("pid")) is False:
        warnings.append(f"process {d.get('pid')} is not running")
    if d.get("latency_over_budget") and d.get("state") != "stopped":
        total = _stages(d).get("total", {})
        warnings.append(f"capture → ack p99 {total.get('p99_ms', '?')} ms is over the latency budget of "
                        f"{d.get('latency_budget_ms')} ms (the slowest stage is named in the journal)")
    return "\n".join(lines + [f"WARNING: {w}" for w in warnings])


def _stages(d: Mapping[str, object]) -> Mapping[str, Mapping[str, object]]:
    stages = d.get("stages")
    return {k: v for k, v in stages.items() if isinstance(v, Mapping)} if isinstance(stages, Mapping) else {}


def _stage_lines(d: Mapping[str, object]) -> list[str]:
    """`latency:` then one line per stage: p50/p99 over the window and how many values it holds."""
    stages = _stages(d)
    if not stages:
        return []
    budget = d.get("latency_budget_ms")
    head = "latency:     p50 / p99 over the sliding window" + (f", budget {budget:g} ms (capture → ack p99)"
                                                              if isinstance(budget, (int, float)) else "")
    rows = [f"  {name:<12} {_num(v.get('p50_ms'), '{:.1f}'):>7} / {_num(v.get('p99_ms'), '{:.1f}'):>7} ms"
            f"  ({_num(v.get('count'))})" for name, v in stages.items()]
    return [head, *rows]


# --- Prometheus textfile (node_exporter --collector.textfile.directory) -----------------------------------


def write_prometheus(path: Path | str,
                     metrics: Mapping[str, float | int | bool | Metric | Sequence[Metric] | None]) -> None:
    """Atomically replaces `path` (name it `*.prom` in node_exporter's textfile directory)."""
    _atomic_write(Path(path), render_prometheus(metrics))


def metrics_from_status(d: Mapping[str, object], now: float | None = None) -> dict[str, Metric | None]:
    """The status snapshot as `edge_*` metrics (missing keys are left out)."""

    def m(key: str, help_text: str, type_: Literal["gauge", "counter"] = "gauge") -> Metric | None:
        v = d.get(key)
        return Metric(v, help_text, type_) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    gps = d.get("gps")
    broker = d.get("broker")
    age = status_age(d, now)
    gps_state = str(gps.get("status", "no_fix")) if isinstance(gps, Mapping) else "no_fix"
    taken = None if age is None else (time.time() if now is None else now) - age
    return {
        **_latency_metrics(d),
        "edge_fps": m("fps", "Frames per second through the detector"),
        "edge_frames_total": m("frames", "Frames read from the source", "counter"),
        "edge_frames_dropped_total": m("frames_dropped", "Frames dropped before detection", "counter"),
        "edge_detections_total": m("detections", "Detections produced", "counter"),
        "edge_objects_total": m("objects", "Object records made (tracks that ended)", "counter"),
        "edge_objects_located_total": m("objects_located", "Object records with a position", "counter"),
        "edge_spool_depth": m("spool_depth", "Events in the spool waiting for the broker"),
        "edge_spool_bytes": m("spool_bytes", "Size of the spool in bytes"),
        "edge_spool_oldest_age_seconds": m("spool_oldest_age_s", "Age of the oldest undelivered event"),
        "edge_dead_letters": m("dead_letters", "Events the broker rejected for good"),
        "edge_acked_total": m("acked", "Events acknowledged by the broker", "counter"),
        "edge_sent_total": m("sent", "Events handed to the Kafka producer", "counter"),
        "edge_failed_total": m("failed", "Deliveries that failed and were retried", "counter"),
        "edge_in_flight": m("pending", "Events sent, not yet acknowledged"),
        "edge_dead_lettered_total": m("dead_lettered", "Events moved to the dead-letter table", "counter"),
        "edge_producer_recreated_total": m("producer_recreated", "Kafka producers replaced after a fatal error "
                                           "or a producer id the broker no longer knew", "counter"),
        "edge_spool_lost_total": m("spool_lost", "Events found missing when the spool was opened (WAL lost or "
                                   "damaged)", "counter"),
        "edge_evicted_total": m("evicted", "Events evicted from a full spool (drop_oldest)", "counter"),
        "edge_drain_rate": m("drain_rate_per_s", "Events acknowledged per second, recent window"),
        "edge_delivery_latency_p50_ms": m("latency_p50_ms", "Capture to acknowledgement, median"),
        "edge_delivery_latency_p99_ms": m("latency_p99_ms", "Capture to acknowledgement, 99th percentile"),
        "edge_native_log_lines_total": m("native_log_lines", "Lines FFmpeg/OpenCV/onnxruntime wrote to stdout/stderr",
                                         "counter"),
        "edge_native_log_dropped_total": m("native_log_dropped", "Native output lines dropped, logging behind",
                                           "counter"),
        "edge_broker_up": None if broker is None else Metric(
            broker == "connected", "1 when the Kafka broker is reachable",
            labels={"state": str(broker)}),
        "edge_gps_fix": Metric(
            gps_state == "ok", "1 when a current GPS fix is available", labels={"status": gps_state}),
        "edge_status_updated_timestamp_seconds": None if taken is None else Metric(
            round(taken), "Unix time of the status snapshot (alert when it stops moving)"),
    }


def _latency_metrics(d: Mapping[str, object]) -> dict[str, Metric | Sequence[Metric | Histogram] | None]:
    """Each stage's latency histogram (since start) and window p50/p99, and the latency budget's state."""
    stages = {k: v for k, v in _stages(d).items() if isinstance(v.get("buckets"), list)}
    budget = d.get("latency_budget_ms")

    def window(q: str) -> list[Metric]:
        return [Metric(float(v[f"{q}_ms"]) / 1000.0, f"Stage latency, {q} over the sliding window",  # type: ignore[arg-type]
                       labels={"stage": k}) for k, v in stages.items() if isinstance(v.get(f"{q}_ms"), (int, float))]

    help_text = ("Latency of each stage from capture to the broker's ack (stage=total: capture to ack), "
                 "since the service started")
    return {
        "edge_stage_latency_seconds": [
            Histogram(v["buckets"], int(v.get("total") or 0), float(v.get("sum_s") or 0.0), help_text,  # type: ignore[arg-type]
                      {"stage": k}) for k, v in stages.items()],
        "edge_stage_latency_p50_seconds": window("p50"),
        "edge_stage_latency_p99_seconds": window("p99"),
        "edge_latency_budget_seconds": None if not isinstance(budget, (int, float)) else Metric(
            budget / 1000.0, "The latency budget: capture to ack p99 above it is flagged"),
        "edge_latency_over_budget": None if "latency_over_budget" not in d else Metric(
            bool(d["latency_over_budget"]), "1 while capture to ack p99 over the sliding window is above the budget"),
    }
