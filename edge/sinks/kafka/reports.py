"""Delivery reports: what poll() hands back becomes spool acks, releases and dead letters, and the broker's state."""

from __future__ import annotations

import enum
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException

from edge.backoff import Backoff
from edge.clock import iso_utc
from edge.metrics import Metrics
from edge.sinks.kafka.config import EPOCH_BUMPS_MAX, LOGGER
from edge.sinks.kafka.errors import (
    CLIENT_DOWN_ERRORS,
    SIZE_ERRORS,
    K,
    Kind,
    breaks_producer,
    classify,
    describe,
    error_of,
)

if TYPE_CHECKING:
    from edge.latency import StageLatencies
    from edge.sinks.protocols import FlusherSpool
    from edge.spool import SpoolRecord

log = logging.getLogger(LOGGER)

DOWN = -1  # stands for a seq in the report list: "the client lost every broker", kept in order with the reports


class State(enum.Enum):
    STARTING = "starting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"


class DeliveryReports:
    """Mixed into KafkaFlusher, sharing its state (used under its lock). The callbacks that poll()/flush() serve
    (on_delivery, error_cb, stats_cb) only note what happened; `_apply` turns it into spool calls in bulk."""

    # Set up by KafkaFlusher.__init__; declared here for readers and type checkers.
    spool: FlusherSpool
    metrics: Metrics
    _producer: Any
    _backoff: Backoff
    _inflight: dict[int, SpoolRecord]  # seq -> record, produced and not yet reported
    _sent_at: dict[int, float]  # seq -> when it was produced, for the ack stage's latency
    stages: StageLatencies | None
    _reports: list[tuple[int, KafkaError | None]]  # from poll(), not yet applied
    _retry: list[int]
    _dead: list[tuple[int, str]]
    _solo: set[int]  # seqs that must be produced alone (a size error on a batch)
    _solo_inflight: int | None
    _broken: KafkaError | None
    _fresh: bool  # the producer was recreated and has delivered nothing yet
    _idle_down: bool  # the client lost every broker while idle: not yet known to be an outage
    _epoch_mark: tuple[int, int] | None  # (producer id, epoch) at the last look with reports since
    _state: State
    _progress: bool  # a delivery succeeded since the flag was cleared
    outage: str | None  # why the broker is unreachable (the error that said so); None once a delivery succeeds

    # ------------------------------------------------------------------ callbacks (served by poll/flush, this thread)

    def _report(self, seq: int, err: KafkaError | None, _msg: Any) -> None:
        self._reports.append((seq, err))  # the minimum here: _apply() handles them in bulk

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._broken = self._broken or err
            return
        code = err.code()
        if code in CLIENT_DOWN_ERRORS or (code == K._TRANSPORT and self._idle_down):
            # queued behind the reports this poll served first: a success the broker sent before it went away
            # must not read as "connected" after the outage was noted
            self._reports.append((DOWN, err))
        elif code != K._TRANSPORT:  # one connection dropping is routine; the rest is worth a line
            log.warning("kafka client error: %s", describe(err))

    def _on_stats(self, raw: str) -> None:
        """Statistics (every STATS_INTERVAL_MS, served by poll): a producer whose epoch keeps being bumped with no
        delivery report in between is stuck on a producer id the broker does not know (see EPOCH_BUMPS_MAX)."""
        try:
            eos = json.loads(raw)["eos"]
            now = (int(eos["producer_id"]), int(eos["producer_epoch"]))  # a local bump moves the epoch, not epoch_cnt
        except (ValueError, KeyError, TypeError):
            return
        mark = self._epoch_mark
        if mark is None or mark[0] != now[0] or any(seq != DOWN for seq, _ in self._reports):
            self._epoch_mark = now  # the first look, a new producer id, or reports waiting to be applied: not stuck
        elif now[1] - mark[1] >= EPOCH_BUMPS_MAX and self._broken is None:
            self._broken = KafkaError(K.UNKNOWN_PRODUCER_ID, f"producer epoch bumped {now[1] - mark[1]} times "
                                      "without a delivery report: the broker does not know this producer")

    def _raised(self, exc: KafkaException) -> None:
        """confluent-kafka raises a fatal error from the poll/flush that serves it (error_cb never sees one)."""
        err = error_of(exc)
        if err is not None and breaks_producer(err):
            self._broken = self._broken or err
        else:
            log.warning("kafka client error: %s", exc)

    def _poll(self, timeout_s: float) -> None:
        try:
            self._producer.poll(timeout_s)
        except KafkaException as exc:
            self._raised(exc)

    def _serve(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._poll(timeout_s)
        self._apply()

    # ------------------------------------------------------------------ applying them

    def _apply(self) -> None:
        """Turn the delivery reports collected by poll() into spool acks, releases and dead letters."""
        acked: list[int] = []
        captured: list[float] = []  # of acked detection events: delivery latency and the "acked" count
        objects = 0  # acked object records: counted apart, so that "acked" stays the events' count
        if self._reports:
            reports, self._reports = self._reports, []
            pop, up, downs = self._inflight.pop, False, 0
            for seq, err in reports:
                if seq == DOWN:
                    if up:  # keep transitions in report order
                        self._note_up()
                        up = False
                    self._client_down(err)
                    downs += 1
                    continue
                rec = pop(seq, None)
                if rec is None:
                    continue  # already released (producer discarded)
                was_solo = seq == self._solo_inflight
                if was_solo:
                    self._solo_inflight = None
                if err is None:
                    acked.append(seq)
                    if rec.stream:
                        objects += 1
                    else:
                        captured.append(rec.captured_at)
                    up = True
                    continue
                if up:  # keep transitions in report order
                    self._note_up()
                    up = False
                self._handle_failure(seq, err, was_solo)
            if up:
                self._note_up()
            if downs < len(reports):
                self._epoch_mark = None  # delivery reports came: the producer is not stuck
        if acked:
            self._fresh = False
            if self._solo:
                self._solo.difference_update(acked)
            self.spool.ack(acked)
            now = time.time()
            total = now - np.asarray(captured)
            self.metrics.record_acked(total)
            if objects:
                self.metrics.inc("objects_acked", objects)
            if self.stages is not None:
                self._time_acked(acked, total, now)
            self._backoff.reset()
        if self._retry:
            retry, self._retry = self._retry, []
            self.spool.release(retry)
            self.metrics.inc("failed", len(retry))
        if self._dead:
            dead, self._dead = self._dead, []
            for seq, error in dead:
                self.metrics.inc("failed")
                self._dead_letter_now(seq, error)
        self.metrics.set_gauge("pending", len(self._inflight))

    def _time_acked(self, acked: list[int], total: np.ndarray, now: float) -> None:
        """The ack stage (produce → ack) and the total (capture → ack) of the events just acknowledged."""
        sent = self._sent_at
        if len(sent) > 2 * len(self._inflight) + len(acked):  # released or failed since: forget their times
            for seq in [s for s in sent if s not in self._inflight]:
                del sent[seq]
        produced = np.fromiter((sent.pop(seq, now) for seq in acked), np.float64, len(acked))
        self.stages.record_many("ack", now - produced)
        self.stages.record_many("total", total)

    def _handle_failure(self, seq: int, err: KafkaError, was_solo: bool) -> None:
        if err.code() in SIZE_ERRORS and not was_solo:
            self._solo.add(seq)
            self._retry.append(seq)
            return
        kind = classify(err)
        if kind is Kind.PERMANENT:
            self._solo.discard(seq)
            self._dead.append((seq, describe(err)))
            return
        self._retry.append(seq)
        if kind is Kind.BROKEN:
            self._broken = self._broken or err
        elif kind is Kind.UNREACHABLE:
            self._note_down(describe(err))

    def _dead_letter_now(self, seq: int, error: str) -> None:
        log.error("dead letter: event seq %d: %s", seq, error)
        self.spool.dead_letter(seq, error)
        self.metrics.inc("dead_lettered")

    # ------------------------------------------------------------------ the broker's state

    def _client_down(self, err: KafkaError) -> None:
        """The client lost every broker (or, after that, failed to connect). With events in flight that is an
        outage. An idle producer's connections also close (idle timeout) and reopen on demand: then it is only
        remembered, and becomes an outage when a connection attempt fails while events wait."""
        if self._inflight or self._state is State.STARTING:
            self._note_down(describe(err))
        elif err.code() != K._TRANSPORT:
            self._idle_down = True

    def _note_down(self, reason: str) -> None:
        if self._state is State.UNREACHABLE:
            return
        self._state = State.UNREACHABLE
        self.outage = reason
        log.warning("broker unreachable since %s: %s", iso_utc(time.time(), "seconds"), reason)

    def _note_up(self) -> None:
        self._progress = True
        self._idle_down = False
        if self._state is State.CONNECTED:
            return
        self._state = State.CONNECTED
        self.outage = None
        log.info("connected, draining %d events", self._spool_depth())

    def _spool_depth(self) -> int:
        return int(self.spool.stats().depth)
