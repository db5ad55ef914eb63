"""The Kafka flusher: leases events from the spool, produces them idempotently, acks them only on delivery.

Invariants:
- Each record goes to the topic of its spool stream (`stream_topics`: detection events to kafka.topic, object
  records to kafka.objects_topic). Both come out of one lease order, so each topic gets them in spool order.
- An event leaves the spool (`ack`) only from a successful delivery report; every other outcome
  `release`s it (sent again later: consumers dedupe on detection_id) or, for an error about the
  message itself, `dead_letter`s it. Nothing is ever only in librdkafka's memory: until acked it
  is in the spool, and `message.timeout.ms` hands undelivered events back within 30 s.
- At most `max_in_flight` events are leased and not yet reported (100 while the broker is unreachable).
- The producer and the bookkeeping are used under one lock: `drain`/`close` may be called from another
  thread while `run` is active (drain then has the producer to itself until it returns).
- A producer that can no longer deliver (a fatal error, fenced, or stuck on a producer id the broker does not
  know) is discarded at once: what it reported as delivered stays acked, everything else it held goes back to
  the spool, and a new producer with the same configuration sends it. Only unacknowledged events are resent.
- A recreated producer gets the events back at once, not after a backoff: events in flight are what end a
  backoff wait as soon as a broker answers (librdkafka reconnects within min(backoff_max_s, 10 s)).
Delivery reports and the broker's state are handled in reports.py, error classes in errors.py.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import KafkaException, Producer

from edge.backoff import Backoff
from edge.config import KafkaConfig
from edge.latency import StageLatencies
from edge.metrics import Metrics
from edge.sinks.kafka.config import (
    IDLE_WAIT_S,
    LEASE_CHUNK,
    LOGGER,
    PROBE_WINDOW,
    ClientLog,
    event_headers,
    producer_config,
    redact,
    stream_topics,
)
from edge.sinks.kafka.errors import Kind, classify, describe, error_of, quietly
from edge.sinks.kafka.reports import DeliveryReports, State

if TYPE_CHECKING:
    from edge.sinks.protocols import FlusherSpool
    from edge.spool import SpoolRecord

log = logging.getLogger(LOGGER)


class Step(enum.Enum):
    """What one `step()` did: produced something, found nothing to do, or failed (back off)."""

    OK = "ok"
    IDLE = "idle"
    FAILED = "failed"


class _Produced(enum.Enum):
    SKIPPED = 1  # dead-lettered at produce time, or the round halted to isolate a message
    STOP = 2  # not produced; end this round and back off


class KafkaFlusher(DeliveryReports):
    """Moves events from the spool to Kafka. `run(stop)` in a thread; `drain()` then `close()` at shutdown."""

    def __init__(
        self,
        cfg: KafkaConfig,
        spool: FlusherSpool,
        metrics: Metrics | None = None,
        *,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        rng: Callable[[], float] = random.random,
        stages: StageLatencies | None = None,  # the service's stage latencies: produce, ack and total recorded here
    ):
        self.cfg = cfg
        self._topics = stream_topics(cfg)  # indexed by SpoolRecord.stream
        self.stages = stages
        self._sent_at: dict[int, float] = {}  # seq -> when produced (wall clock), only while `stages` is kept
        self.spool = spool
        self.metrics = metrics if metrics is not None else Metrics()
        self.loops = 0  # run/wait iterations: the service watchdog checks that this keeps moving
        self._factory = producer_factory
        self._conf = producer_config(cfg) if cfg.bootstrap_servers else None
        self._producer = None
        self._backoff = Backoff(cfg.backoff_initial_ms / 1000.0, cfg.backoff_max_s, rng)
        self._inflight = {}
        self._reports = []
        self._retry = []
        self._dead = []
        self._solo = set()
        self._solo_inflight = None
        self._broken = None
        self._fresh = False
        self._idle_down = False
        self._epoch_mark = None
        self._state = State.STARTING
        self.outage = None
        self._progress = False
        self._lock = threading.RLock()
        self._finished = False  # close(), or a shutdown drain that gave up: produce nothing more
        if self._conf is None:
            log.warning("kafka.bootstrap_servers is empty: offline, events stay in the spool")
        else:
            log.info("kafka producer config: %s", redact(self._conf))

    # ------------------------------------------------------------------ loop

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def connected(self) -> bool:
        return self._state is State.CONNECTED

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; errors are logged and backed off, never raised."""
        while not stop.is_set() and not self._finished:
            self.loops += 1
            try:
                result = self.step()
            except Exception:  # stage boundary: a spool or client error must not kill the thread
                log.exception("kafka flusher step failed; backing off")
                self.metrics.inc("errors")
                result = Step.FAILED
            if result is Step.FAILED:
                self._wait(self._backoff.next(), stop, until_progress=True)
            elif result is Step.IDLE:
                self._wait_idle(stop)

    def _wait_idle(self, stop: threading.Event) -> None:
        """Nothing to lease. With events in flight, serve the producer (poll returns with their first report);
        with none, wait for the spool's next commit instead, so that a new event is produced as soon as it is
        committed rather than at the next look (up to IDLE_WAIT_S later: most of a live event's latency)."""
        if self._inflight or self._producer is None or self._reports:
            self._wait(IDLE_WAIT_S, stop, until_progress=False, once=True)
            return
        self.loops += 1
        self.spool.wait_appended(IDLE_WAIT_S)
        with self._lock:
            self._serve(0)  # the client's own callbacks (errors, statistics) at least every IDLE_WAIT_S

    def step(self) -> Step:
        """One round: serve delivery reports, then lease and produce what the window allows."""
        with self._lock:
            return self._step()

    def _step(self) -> Step:
        if self._conf is None or self._finished:
            return Step.IDLE
        if self._producer is None:
            self._producer = self._new_producer()
        self._serve(0)
        if self._broken is not None and not self._recover():
            return Step.FAILED
        produced, stopped = self._fill()
        self._apply()
        if self._broken is not None:
            return Step.OK if self._recover() else Step.FAILED  # OK: the new producer gets the events at once
        if stopped or self._state is State.UNREACHABLE:
            return Step.FAILED
        return Step.OK if produced else Step.IDLE

    def drain(self, timeout_s: float) -> bool:
        """At shutdown: deliver what the spool holds for at most `timeout_s` (from any thread; a `run()`
        still looping waits meanwhile).

        True when the spool was emptied and every report came back. Otherwise the librdkafka queue is
        purged, the rest stays in the spool for the next start, and the flusher is finished."""
        with self._lock:
            return self._drain(timeout_s)

    def _drain(self, timeout_s: float) -> bool:
        if self._conf is None or self._finished:
            return self._spool_depth() == 0
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.step()
            if result is not Step.OK and not self._inflight and self._settled_empty(deadline):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if result is Step.FAILED:
                self._wait(min(remaining, self._backoff.next()), None, until_progress=True)
            elif result is Step.IDLE:
                self._wait(min(remaining, IDLE_WAIT_S), None, until_progress=False, once=True)
        log.warning("drain: %d events not delivered within %.1f s, they stay in the spool", self._spool_depth(), timeout_s)
        self._abandon()
        self._finished = True  # shutdown: a run() still looping must not start a new producer
        return False

    def close(self) -> None:
        """Drop the producer; events still in flight go back to the spool. The flusher is finished."""
        with self._lock:
            self._finished = True
            self._abandon()

    def _settled_empty(self, deadline: float) -> bool:
        """Nothing pending once the spool has committed the acks handed to it (its flush() barrier)."""
        self.spool.flush(max(0.0, deadline - time.monotonic()))
        return self._spool_depth() == 0

    def _wait(self, seconds: float, stop: threading.Event | None, *, until_progress: bool, once: bool = False) -> None:
        """Serve the producer for up to `seconds`, in slices so a stop is seen at once."""
        deadline = time.monotonic() + seconds
        self._progress = False
        while True:
            self.loops += 1  # a heartbeat for the service watchdog: backing off is alive, not hung
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return
            if self._producer is None:
                if stop is not None:
                    stop.wait(min(0.1, remaining))
                else:
                    time.sleep(min(0.1, remaining))
            else:
                with self._lock:  # held one slice at a time: drain() can take over between slices
                    self._serve(min(0.1, remaining))
            if once or (until_progress and self._progress) or self._broken is not None:
                return

    # ------------------------------------------------------------------ producing

    def _new_producer(self) -> Any:
        conf = dict(self._conf or {})
        conf["error_cb"] = self._on_error
        conf["logger"] = ClientLog(logging.getLogger(LOGGER + ".librdkafka"))
        if int(conf.get("statistics.interval.ms") or 0) > 0:
            conf["stats_cb"] = self._on_stats
        self._epoch_mark = None
        return self._factory(conf)

    def _window(self) -> int:
        if self._state is State.UNREACHABLE:
            return min(PROBE_WINDOW, self.cfg.max_in_flight)
        return self.cfg.max_in_flight

    def _fill(self) -> tuple[int, bool]:
        """Lease and produce, in chunks, what the window allows; returns (produced, stopped on a failure)."""
        if self._solo_inflight is not None or (self._solo and self._inflight):
            return 0, False  # isolating a message: let the window empty first
        window = self._window()
        room = window - len(self._inflight)
        if room <= 0 or (self._inflight and room < max(1, min(1000, window // 4))):
            return 0, False  # lease in chunks, not one by one as reports trickle in
        produced = 0
        while room > 0:
            want = min(room, LEASE_CHUNK)
            records = self.spool.lease(want)
            if self._solo and len(records) < want and not any(r.seq in self._solo for r in records):
                self._solo.clear()  # everything pending was leased: those seqs are gone (acked, evicted, dead)
            n, status = self._produce_all(records)
            produced += n
            room -= len(records)
            if status is not None or len(records) < want:
                break
            self._poll(0)  # keep reports flowing between chunks; applied at the end of the step
            if self._broken is not None:
                break
        self.metrics.inc("sent", produced)
        return produced, status is _Produced.STOP

    def _produce_all(self, records: list[SpoolRecord]) -> tuple[int, _Produced | None]:
        """Produce `records` in order; on a stop or an isolation, release the ones not produced.

        Returns (produced, None) or (produced, STOP: failed, back off | SKIPPED: halted to isolate one)."""
        produce, topics, inflight = self._producer.produce, self._topics, self._inflight
        report, partial, headers, solo = self._report, functools.partial, event_headers, self._solo
        produced = 0
        if self.stages is not None:
            self._time_produced(records)
        for i, rec in enumerate(records):
            seq = rec.seq
            if solo and seq in solo:
                return produced + self._produce_solo(records, i), _Produced.SKIPPED
            inflight[seq] = rec
            try:
                produce(topics[rec.stream], rec.value, rec.key, headers=headers(rec.detection_id, rec.schema_version),
                        on_delivery=partial(report, seq))
                produced += 1
            except (BufferError, KafkaException, TypeError, ValueError) as exc:
                del inflight[seq]
                if self._produce_failed(rec, exc) is _Produced.STOP:
                    self.spool.release([r.seq for r in records[i:]])
                    return produced, _Produced.STOP
        return produced, None

    def _time_produced(self, records: list[SpoolRecord]) -> None:
        """The produce stage (spool append → produce) of a chunk, and its produce time for the ack stage. Taken
        before the chunk is produced: a report served by a produce() that blocks must find it."""
        if not records:
            return
        now = time.time()
        self.stages.record_many("produce", now - np.fromiter((r.enqueued_at for r in records), np.float64, len(records)))
        self._sent_at.update(dict.fromkeys((r.seq for r in records), now))

    def _produce_solo(self, records: list[SpoolRecord], i: int) -> int:
        """records[i] must go alone (a size error hit its batch): produce it only into an empty window,
        then nothing else until its report; release what follows it."""
        rec = records[i]
        produced = 0
        if not self._inflight:
            self._inflight[rec.seq] = rec
            try:
                self._producer.produce(self._topics[rec.stream], rec.value, rec.key,
                                       headers=event_headers(rec.detection_id, rec.schema_version),
                                       on_delivery=functools.partial(self._report, rec.seq))
                produced = 1
                self._solo_inflight = rec.seq
                log.info("resending event seq %d alone to %s after a size error on its batch", rec.seq,
                         self._topics[rec.stream])
            except (BufferError, KafkaException, TypeError, ValueError) as exc:
                del self._inflight[rec.seq]
                if self._produce_failed(rec, exc) is not _Produced.STOP:
                    i += 1  # dead-lettered: only the rest goes back
        else:
            produced = 0
        rest = [r.seq for r in records[i + produced :]]
        if rest:
            self.spool.release(rest)
        return produced

    def _produce_failed(self, rec: SpoolRecord, exc: Exception) -> _Produced:
        """produce() raised for `rec`: dead-letter it (SKIPPED) or stop this round (STOP)."""
        if isinstance(exc, BufferError):  # a full local queue is back-pressure, not a delivery failure
            log.debug("librdkafka queue full (%d in flight): waiting", len(self._inflight))
            return _Produced.STOP
        self.metrics.inc("failed")
        if isinstance(exc, (TypeError, ValueError)):  # a key/value/header the client cannot serialise
            self._dead_letter_now(rec.seq, f"serialization: {exc}")
            return _Produced.SKIPPED
        err = error_of(exc)
        kind = classify(err)
        if kind is Kind.PERMANENT:
            self._dead_letter_now(rec.seq, describe(err))
            return _Produced.SKIPPED
        if kind is Kind.BROKEN:
            self._broken = self._broken or err
        elif kind is Kind.UNREACHABLE:
            self._note_down(describe(err))
        else:
            log.warning("produce of event seq %d failed: %s; retrying later", rec.seq, exc)
        return _Produced.STOP

    # ------------------------------------------------------------------ failure handling

    def _recover(self) -> bool:
        """The producer can no longer deliver (fatal, fenced, or stuck on an unknown producer id): drop it without
        waiting (it cannot deliver anything more), give back what it held, and start a new one with the same
        configuration. True when the new producer may send at once: the first recreation since a delivery; one
        that broke again before delivering anything waits a backoff first (no hot loop)."""
        err, self._broken = self._broken, None
        at_once = not self._fresh
        self.metrics.inc("producer_recreated")
        log.error("kafka producer unusable (%s): recreating it; %d events in flight go back to the spool%s",
                  describe(err), len(self._inflight), "" if at_once else " (after a backoff: it broke again)")
        self._abandon()
        self._fresh = True
        if at_once:
            self._producer = self._new_producer()
        return at_once

    def _abandon(self) -> None:
        """Drop the producer: apply what it reported, give everything else it held back to the spool."""
        producer, self._producer = self._producer, None
        if producer is not None:
            quietly(functools.partial(producer.purge, in_queue=True, in_flight=True, blocking=False))
            # serve the reports already there (successes stay acked) and the purge's; a fatal error is raised by
            # the call that serves it, so a second call serves what came after it
            if not quietly(functools.partial(producer.flush, 0)):
                quietly(functools.partial(producer.flush, 0))
        self._apply()
        self._broken = None
        self._solo_inflight = None
        self._retry.extend(self._inflight)
        self._inflight.clear()
        self._sent_at.clear()
        self._apply()
