"""Durable delivery wiring: events → spool (SpoolSink), spool → Kafka (a flusher thread), shutdown drain."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import Config
from edge.latency import StageLatencies
from edge.metrics import Metrics
from edge.sinks.kafka import KafkaFlusher
from edge.sinks.protocols import Flusher
from edge.spool import Spool, SpoolFull, SpoolItem, SpoolStats
from edge.spool.disk import free_bytes
from edge.spool.records import Stream
from edge.types import BrokerState, DetectionEvent, ObjectRecord, QueuePolicy

log = logging.getLogger(__name__)


class SpoolSink:
    """Pipeline sink: an event is handed on only once it is committed to the spool (append is durable).

    Delivery latency is measured from the frame's capture for live sources; a replayed recording was captured
    long ago, so there it is measured from the moment the event was spooled.

    With `room_timeout` (replay and ingest-csv, policy block) waiting for room is bounded: once appends have
    found no room (disk full, or max_bytes with nothing delivered) for that long in a row, or `stop` is set
    while one waits, the sink gives up: `no_room` says why, `stop` is set so that the source stops, and what
    comes after is counted in `not_spooled` instead of waiting again. Without it, appends wait as the spool's
    policy says (the service)."""

    POLL_S = 0.5  # a wait for room looks at `stop` this often

    def __init__(
        self, spool: Spool, *, live: bool = True, room_timeout: float | None = None,
        stop: threading.Event | None = None, latency: StageLatencies | None = None,
    ):
        self.spool = spool
        self.latency = latency
        self.live = live
        self.room_timeout = room_timeout
        self.stop = stop or threading.Event()
        self.written = 0  # events and object records (items) committed to the spool
        self.objects_written = 0  # of them, object records
        self.not_spooled = 0  # events given up on: no room
        self.objects_not_spooled = 0  # object records given up on: no room
        self.no_room: str | None = None  # one line: why the sink gave up (disk full at …, bytes free)
        self._no_room_since: float | None = None

    def write(self, events: Sequence[DetectionEvent]) -> None:
        since = None if self.live else time.time()
        items = [SpoolItem.from_event(e, since) for e in events]
        start = time.perf_counter()
        if self._append_counted(items):
            if self.latency is not None:
                self.latency.record("spool", time.perf_counter() - start)
        else:
            self.not_spooled += len(items)

    def write_objects(self, records: Sequence[ObjectRecord]) -> None:
        """Object records, for kafka.objects_topic: the same spool, the same guarantees (deduplicate on
        object_id). Their delivery latency counts from now: a record is made when its track ends."""
        now = time.time()
        items = [SpoolItem(key=r.vehicle_id, value=r.to_json().encode("utf-8"), detection_id=r.object_id,
                           captured_at=now, schema_version=r.schema_version, stream=Stream.OBJECTS) for r in records]
        if self._append_counted(items):
            self.objects_written += len(items)
        else:
            self.objects_not_spooled += len(items)

    def _append_counted(self, items: list[SpoolItem]) -> bool:
        """Appends; False when there was no room within the bound (room_timeout): the caller counts them."""
        try:
            self.append(items)
            return True
        except SpoolFull:
            if self.room_timeout is None:
                raise
            return False

    def append(self, items: Sequence[SpoolItem], timeout: float | None = None) -> None:
        """Spool.append within the room bound (the same signature: it can stand in for the spool, as for
        edge.ingest.sinks.SpoolWriter). Raises SpoolFull after `timeout`, and at once after the sink gave up."""
        if self.room_timeout is None:
            self.spool.append(items, timeout)
            self.written += len(items)
            return
        if self.no_room is not None:
            raise SpoolFull(self.no_room)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.POLL_S if end is None else max(0.0, min(self.POLL_S, end - time.monotonic()))
            try:
                self.spool.append(items, timeout=wait)
            except SpoolFull:
                self._waited_for_room(wait)
                if self.no_room is not None or (end is not None and time.monotonic() >= end):
                    raise
                continue
            self._no_room_since = None
            self.written += len(items)
            return

    def _waited_for_room(self, waited: float) -> None:
        """An append found no room for `waited` s: give up past the bound, or when a stop is asked."""
        now = time.monotonic()
        if self._no_room_since is None:
            self._no_room_since = now - waited
        stalled = now - self._no_room_since
        bound = self.room_timeout or 0.0
        if stalled < bound and not self.stop.is_set():
            return
        st = self.spool.stats()
        where = self.spool.path.parent
        if st.disk_full:
            why = f"disk full: {where} has {free_bytes(where)} bytes free"
        else:
            why = f"spool {self.spool.path} full (max_bytes {st.max_bytes}) and nothing delivered"
        self.no_room = f"{why}; no room in the spool for {stalled:.0f} s"
        if stalled < bound:  # a stop ended the wait: the command reports the stop, this only explains it
            log.warning("stopping while waiting for room (%s)", self.no_room)
        else:
            log.warning("%s: stopping (%d events spooled)", self.no_room, self.written)
        self.stop.set()


def open_spool(cfg: Config, *, when_full: QueuePolicy | None = None) -> Spool:
    """The spool of every writer (run, replay, demo, ingest-csv), owned by this process until it is closed:
    a second writer gets SpoolBusy ("state dir X is in use by pid N (command)"), which the CLI exits 2 on."""
    path = cfg.spool_path()
    state_dir = Path(cfg.state.state_dir)
    owner = f"state dir {state_dir}" if path.parent.resolve() == state_dir.resolve() else f"spool {path}"
    return Spool.open(
        path,
        max_bytes=cfg.spool.max_bytes,
        when_full=when_full or cfg.spool.when_full,
        commit_interval_ms=cfg.spool.commit_interval_ms,
        commit_batch=cfg.spool.commit_batch,
        owner_name=owner,
    )


@dataclass
class Delivery:
    """The spool plus, when a broker is configured, a flusher thread draining it.

    The one delivery lifecycle of every command: `with Delivery.start(cfg) as delivery:` … `delivery.finish(s)`
    … `delivery.report()`. Leaving the block, by an error too, finishes what was started (flusher stopped,
    spool closed, its lock given back) if the command did not."""

    cfg: Config
    spool: Spool
    metrics: Metrics = field(default_factory=Metrics)
    latency: StageLatencies | None = None  # the service's stage latencies, shared with its pipeline
    flusher: Flusher | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    final_stats: SpoolStats | None = None  # at close, when the spool can no longer be asked
    drained: bool | None = None  # set by finish(): None while running

    @classmethod
    def start(cls, cfg: Config, *, when_full: QueuePolicy | None = None,
              latency: StageLatencies | None = None) -> Delivery:
        """With `latency` (the service), spool commits and each event's produce and ack are timed into it; the
        bulk commands (flush, ingest, replay) leave it out: per-event timing costs them throughput."""
        spool = open_spool(cfg, when_full=when_full)
        d = cls(cfg, spool, latency=latency)
        if cfg.kafka.bootstrap_servers:
            try:
                d.flusher = KafkaFlusher(cfg.kafka, spool, d.metrics, stages=d.latency)
            except BaseException:  # the spool holds the state dir's lock: give it back before the error goes up
                spool.close()
                raise
            d._thread = threading.Thread(target=d.flusher.run, args=(d._stop,), name="edge-flusher", daemon=True)
            d._thread.start()
        else:
            log.info("no kafka.bootstrap_servers configured: events stay in the spool %s", cfg.spool_path())
        return d

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.drained is None:  # left early (an error, a stop): what is not delivered stays in the spool
            self.finish(0.0)

    def sink(self, *, live: bool, room_timeout: float | None = None, stop: threading.Event | None = None) -> SpoolSink:
        return SpoolSink(self.spool, live=live, room_timeout=room_timeout, stop=stop, latency=self.latency)

    def finish(self, drain_timeout: float) -> bool:
        """Stop the flusher after giving it up to `drain_timeout` s to deliver what is spooled; close the spool.
        Returns True when the spool was drained (or no broker is configured). Never raises for a delivery
        error: the command still prints its summary and exits with what the spool holds. A second call
        returns the first one's answer."""
        if self.drained is not None:
            return self.drained
        drained = True
        if self.flusher is not None:
            try:
                drained = self.flusher.drain(drain_timeout)
            except Exception:  # the spool must still be closed and the summary printed
                log.exception("final drain failed")
                drained = False
            self._stop.set()
            if self._thread is not None:
                self._thread.join(10)
            self.flusher.close()
            if not drained:
                log.warning("spool not drained within %.0f s: %d events stay on disk for the next run",
                            drain_timeout, self.spool.stats().depth)
        self.final_stats = self.spool.stats()
        self.spool.close()
        self.drained = drained
        return drained

    def stats(self) -> SpoolStats:
        """The spool's counters, also after finish()."""
        return self.final_stats or self.spool.stats()

    def broker_state(self) -> BrokerState:
        if self.flusher is None:
            return "none"
        return "connected" if self.flusher.connected else "unreachable"

    def report(self) -> list[str]:
        st = self.stats()
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
                ) + (f", producer recreated {snap['producer_recreated']}" if snap.get("producer_recreated") else "")
                + (f"; {self.cfg.kafka.objects_topic}: object records acked {snap['objects_acked']}"
                   if snap.get("objects_acked") else "")
            )
        return lines
