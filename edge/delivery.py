"""Durable delivery wiring: events → spool (SpoolSink), spool → Kafka (a flusher thread), shutdown drain."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import Config
from edge.metrics import Metrics
from edge.sinks.kafka import KafkaFlusher
from edge.spool import Spool, SpoolItem, SpoolStats
from edge.types import DetectionEvent

log = logging.getLogger(__name__)


class SpoolSink:
    """Pipeline sink: an event is handed on only once it is committed to the spool (append is durable).

    Delivery latency is measured from the frame's capture for live sources; a replayed recording was captured
    long ago, so there it is measured from the moment the event was spooled."""

    def __init__(self, spool: Spool, *, live: bool = True):
        self.spool = spool
        self.live = live
        self.written = 0

    def write(self, events: Sequence[DetectionEvent]) -> None:
        since = None if self.live else time.time()
        self.spool.append([SpoolItem.from_event(e, since) for e in events])
        self.written += len(events)


def open_spool(cfg: Config, *, when_full: str | None = None) -> Spool:
    path = cfg.spool_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Spool.open(
        path,
        max_bytes=cfg.spool.max_bytes,
        when_full=when_full or cfg.spool.when_full,
        commit_interval_ms=cfg.spool.commit_interval_ms,
        commit_batch=cfg.spool.commit_batch,
    )


@dataclass
class Delivery:
    """The spool plus, when a broker is configured, a flusher thread draining it."""

    cfg: Config
    spool: Spool
    metrics: Metrics = field(default_factory=Metrics)
    flusher: KafkaFlusher | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    final_stats: SpoolStats | None = None  # at close, when the spool can no longer be asked

    @classmethod
    def start(cls, cfg: Config, *, when_full: str | None = None) -> Delivery:
        spool = open_spool(cfg, when_full=when_full)
        d = cls(cfg, spool)
        if cfg.kafka.bootstrap_servers:
            d.flusher = KafkaFlusher(cfg.kafka, spool, d.metrics)
            d._thread = threading.Thread(target=d.flusher.run, args=(d._stop,), name="edge-flusher", daemon=True)
            d._thread.start()
        else:
            log.info("no kafka.bootstrap_servers configured: events stay in the spool %s", cfg.spool_path())
        return d

    def sink(self, *, live: bool) -> SpoolSink:
        return SpoolSink(self.spool, live=live)

    def finish(self, drain_timeout: float) -> bool:
        """Stop the flusher after giving it up to `drain_timeout` s to deliver what is spooled; close the spool.
        Returns True when the spool was drained (or no broker is configured)."""
        drained = True
        if self.flusher is not None:
            drained = self.flusher.drain(drain_timeout)
            self._stop.set()
            if self._thread is not None:
                self._thread.join(10)
            self.flusher.close()
            if not drained:
                log.warning("spool not drained within %.0f s: %d events stay on disk for the next run",
                            drain_timeout, self.spool.stats().depth)
        self.final_stats = self.spool.stats()
        self.spool.close()
        return drained

    def report(self) -> list[str]:
        st = self.final_stats or self.spool.stats()
        snap = self.metrics.snapshot()
        lines = [
            f"  spool {Path(self.cfg.spool_path())}: depth {st.depth} ({st.bytes} bytes), dead letters {st.dead}, "
            f"quarantined {st.quarantined}, evicted {st.evicted_total}",
        ]
        if self.flusher is not None:
            lines.append(
                "  kafka {topic}: sent {sent}, acked {acked}, failed {failed}, dead-lettered {dead}, "
                "delivery latency p50 {p50:.0f} ms p99 {p99:.0f} ms".format(
                    topic=self.cfg.kafka.topic, sent=snap.get("sent", 0), acked=snap.get("acked", 0),
                    failed=snap.get("failed", 0), dead=snap.get("dead_lettered", 0),
                    p50=snap.get("latency_p50_ms") or 0.0, p99=snap.get("latency_p99_ms") or 0.0,
                )
            )
        return lines
