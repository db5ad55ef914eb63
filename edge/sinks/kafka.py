"""The Kafka flusher: leases events from the spool, produces them idempotently, acks them only on delivery.

Invariants:
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
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Producer

from edge.backoff import Backoff
from edge.clock import iso_utc
from edge.config import KafkaConfig
from edge.metrics import Metrics

__all__ = ["KafkaFlusher", "Step", "producer_config", "redact"]

log = logging.getLogger(__name__)

K = KafkaError
# The broker refuses this message for what it is: retrying cannot help.
PERMANENT_MESSAGE_ERRORS = frozenset(
    {K.MSG_SIZE_TOO_LARGE, K.RECORD_LIST_TOO_LARGE, K.INVALID_RECORD, K.INVALID_MSG_SIZE, K._BAD_MSG,
     K._INVALID_ARG, K._VALUE_SERIALIZATION, K._KEY_SERIALIZATION}
)
# Size errors from the broker may be about the whole batch: the message is resent alone before it is condemned.
SIZE_ERRORS = frozenset({K.MSG_SIZE_TOO_LARGE, K.RECORD_LIST_TOO_LARGE})
# The idempotent producer can no longer guarantee order/no-duplicates: destroy it and start a new one.
PRODUCER_BROKEN_ERRORS = frozenset(
    {K._FATAL, K._FENCED, K.PRODUCER_FENCED, K.OUT_OF_ORDER_SEQUENCE_NUMBER, K.INVALID_PRODUCER_EPOCH,
     K.UNKNOWN_PRODUCER_ID, K.INVALID_PRODUCER_ID_MAPPING}
)
# Nothing gets through: no broker, no name resolution, refused credentials, or the topic is not writable.
# Topic errors hold the events (an operator fixes ACLs or creates the topic) rather than dead-lettering
# the whole backlog.
UNREACHABLE_ERRORS = frozenset(
    {K._ALL_BROKERS_DOWN, K._RESOLVE, K._AUTHENTICATION, K.SASL_AUTHENTICATION_FAILED, K._SSL,
     K._MSG_TIMED_OUT, K._TIMED_OUT, K._TRANSPORT, K.REQUEST_TIMED_OUT, K.TOPIC_AUTHORIZATION_FAILED,
     K.CLUSTER_AUTHORIZATION_FAILED, K.UNKNOWN_TOPIC_OR_PART, K._UNKNOWN_TOPIC, K._UNKNOWN_PARTITION,
     K.TOPIC_EXCEPTION}
)
CLIENT_DOWN_ERRORS = UNREACHABLE_ERRORS - {K._TRANSPORT}  # error_cb: one broker's disconnect is not an outage
SECRET_WORDS = ("password", "secret", "token", "key.pem", "private")

DEFAULT_MESSAGE_TIMEOUT_MS = 30_000
PROBE_WINDOW = 100  # events in flight while the broker is unreachable
LEASE_CHUNK = 2000  # leased and produced at a time: the broker gets work while the next chunk is read
IDLE_WAIT_S = 0.1  # longest wait between looks at the spool; a delivery report ends it early
STATS_EVERY_S = 1.0
STATS_INTERVAL_MS = 1000  # librdkafka statistics: the idempotent producer's epoch is watched through them
# On "unknown producer id" librdkafka bumps the producer epoch and retries without telling the client; a broker
# that lost every producer id (replaced, or restarted without its data) answers the same again, about twenty
# times a second, and no delivery report comes until message.timeout.ms. This many bumps without a single report
# means that producer is stuck. A bump after message timeouts comes with their reports, which reset the count.
EPOCH_BUMPS_MAX = 5
DOWN = -1  # stands for a seq in the report list: "the client lost every broker", kept in order with the reports


def producer_config(cfg: KafkaConfig) -> dict[str, Any]:
    """librdkafka settings for `cfg`: idempotent, acks=all, bounded retries, SASL/SSL; `properties` last."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": "edge-detector",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": cfg.compression_type,
        "linger.ms": cfg.linger_ms,
        "batch.num.messages": cfg.batch_size,
        "queue.buffering.max.messages": max(100_000, cfg.max_in_flight + cfg.batch_size),
        "message.timeout.ms": DEFAULT_MESSAGE_TIMEOUT_MS,  # undelivered events come back to the spool
        "request.timeout.ms": 15_000,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 1_000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": max(100, int(min(10.0, cfg.backoff_max_s) * 1000)),
        "socket.connection.setup.timeout.ms": 10_000,
        "socket.keepalive.enable": True,
        "partitioner": "murmur2_random",  # same partition for a key as the Java client
        "log.connection.close": False,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "security.protocol": cfg.security_protocol,
    }
    if cfg.security_protocol.startswith("SASL_"):  # KafkaConfig refuses SASL without credentials
        conf["sasl.mechanisms"] = cfg.sasl_mechanism
        conf["sasl.username"] = cfg.sasl_username
        conf["sasl.password"] = cfg.sasl_password.get_secret_value()
    conf.update(cfg.properties)
    return conf


def redact(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for logs: secrets replaced, callables named."""
    out: dict[str, Any] = {}
    for k, v in conf.items():
        if any(w in k.lower() for w in SECRET_WORDS):
            out[k] = "***"
        elif callable(v) or hasattr(v, "log"):
            out[k] = f"<{type(v).__name__}>"
        else:
            out[k] = v
    return out


def _iso(epoch: float) -> str:
    return iso_utc(epoch, "seconds")


class _ClientLog:
    """librdkafka's log lines into Python logging; connection failures go to DEBUG because the
    flusher reports an outage once ("broker unreachable since ...") instead of once per reconnect,
    and so does a fatal error: the flusher reports it once, with what it does about it."""

    QUIET = frozenset({"FAIL", "BROKERFAIL", "CONNECT", "ERROR", "FATAL"})

    def __init__(self, logger: logging.Logger):
        self._log = logger

    def log(self, level: int, msg: str, *args: Any) -> None:
        if args and args[0] in self.QUIET:
            level = min(level, logging.DEBUG)
        self._log.log(level, msg, *args)


def _quietly(call: Callable[[], Any]) -> bool:
    """Run `call` on a producer being discarded; False if it raised (logged): the release that follows must happen."""
    try:
        call()
    except KafkaException as exc:  # what a producer with a fatal error answers
        log.debug("discarded kafka producer: %s", exc)
    except Exception:  # a broken client must not stop the release either
        log.exception("error while discarding the kafka producer")
    else:
        return True
    return False


class Step(enum.Enum):
    """What one `step()` did: produced something, found nothing to do, or failed (back off)."""

    OK = "ok"
    IDLE = "idle"
    FAILED = "failed"


class _State(enum.Enum):
    STARTING = "starting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"


class _Produced(enum.Enum):
    SKIPPED = 1  # dead-lettered at produce time, or the round halted to isolate a message
    STOP = 2  # not produced; end this round and back off


class KafkaFlusher:
    """Moves events from the spool to Kafka. `run(stop)` in a thread; `drain()` then `close()` at shutdown."""

    def __init__(
        self,
        cfg: KafkaConfig,
        spool: Any,
        metrics: Metrics | None = None,
        *,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        rng: Callable[[], float] = random.random,
    ):
        self.cfg = cfg
        self.spool = spool
        self.metrics = metrics if metrics is not None else Metrics()
        self.loops = 0  # run/wait iterations: the service watchdog checks that this keeps moving
        self._factory = producer_factory
        self._conf = producer_config(cfg) if cfg.bootstrap_servers else None
        self._producer: Any = None
        self._backoff = Backoff(cfg.backoff_initial_ms / 1000.0, cfg.backoff_max_s, rng)
        self._inflight: dict[int, Any] = {}  # seq -> SpoolRecord, produced and not yet reported
        self._reports: list[tuple[int, KafkaError | None]] = []  # from poll(), not yet applied
        self._retry: list[int] = []
        self._dead: list[tuple[int, str]] = []
        self._solo: set[int] = set()  # seqs that must be produced alone (a size error on a batch)
        self._solo_inflight: int | None = None
        self._broken: KafkaError | None = None
        self._fresh = False  # the producer was recreated and has delivered nothing yet
        self._idle_down = False  # the client lost every broker while idle: not yet known to be an outage
        self._epoch_mark: tuple[int, int] | None = None  # (producer id, epoch) at the last look with reports since
        self._state = _State.STARTING
        self._progress = False  # a delivery succeeded since the flag was cleared
        self._next_stats = 0.0
        self._headers_ct = ("content-type", b"application/json")
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
        return self._state is _State.CONNECTED

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
                self._wait(IDLE_WAIT_S, stop, until_progress=False, once=True)

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
        self._refresh_stats()
        if self._broken is not None and not self._recover():
            return Step.FAILED
        produced, stopped = self._fill()
        self._apply()
        if self._broken is not None:
            return Step.OK if self._recover() else Step.FAILED  # OK: the new producer gets the events at once
        if stopped or self._state is _State.UNREACHABLE:
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
            try:
                self._refresh_stats(force=True)
            except Exception:  # the spool may be closed already
                log.debug("no final spool stats", exc_info=True)

    # ------------------------------------------------------------------ producing

    def _new_producer(self) -> Any:
        conf = dict(self._conf or {})
        conf["error_cb"] = self._on_error
        conf["logger"] = _ClientLog(logging.getLogger(__name__ + ".librdkafka"))
        if int(conf.get("statistics.interval.ms") or 0) > 0:
            conf["stats_cb"] = self._on_stats
        self._epoch_mark = None
        return self._factory(conf)

    def _window(self) -> int:
        if self._state is _State.UNREACHABLE:
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

    def _produce_all(self, records: list[Any]) -> tuple[int, _Produced | None]:
        """Produce `records` in order; on a stop or an isolation, release the ones not produced.

        Returns (produced, None) or (produced, STOP: failed, back off | SKIPPED: halted to isolate one)."""
        produce, topic, inflight = self._producer.produce, self.cfg.topic, self._inflight
        report, partial, ct, solo = self._report, functools.partial, self._headers_ct, self._solo
        produced = 0
        for i, rec in enumerate(records):
            seq = rec.seq
            if solo and seq in solo:
                return produced + self._produce_solo(records, i), _Produced.SKIPPED
            inflight[seq] = rec
            try:
                produce(topic, rec.value, rec.key, headers=[("detection_id", rec.detection_id),
                        ("schema_version", str(rec.schema_version)), ct], on_delivery=partial(report, seq))
                produced += 1
            except (BufferError, KafkaException, TypeError, ValueError) as exc:
                del inflight[seq]
                if self._produce_failed(rec, exc) is _Produced.STOP:
                    self.spool.release([r.seq for r in records[i:]])
                    return produced, _Produced.STOP
        return produced, None

    def _produce_solo(self, records: list[Any], i: int) -> int:
        """records[i] must go alone (a size error hit its batch): produce it only into an empty window,
        then nothing else until its report; release what follows it."""
        rec = records[i]
        produced = 0
        if not self._inflight:
            self._inflight[rec.seq] = rec
            try:
                self._producer.produce(self.cfg.topic, rec.value, rec.key, headers=[("detection_id", rec.detection_id),
                                       ("schema_version", str(rec.schema_version)), self._headers_ct],
                                       on_delivery=functools.partial(self._report, rec.seq))
                produced = 1
                self._solo_inflight = rec.seq
                log.info("resending event seq %d alone after a size error on its batch", rec.seq)
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

    def _produce_failed(self, rec: Any, exc: Exception) -> _Produced:
        """produce() raised for `rec`: dead-letter it (SKIPPED) or stop this round (STOP)."""
        if isinstance(exc, BufferError):  # a full local queue is back-pressure, not a delivery failure
            log.debug("librdkafka queue full (%d in flight): waiting", len(self._inflight))
            return _Produced.STOP
        self.metrics.inc("failed")
        if isinstance(exc, (TypeError, ValueError)):  # a key/value/header the client cannot serialise
            self._dead_letter_now(rec.seq, f"serialization: {exc}")
            return _Produced.SKIPPED
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        code = err.code() if err is not None else None
        if code in PERMANENT_MESSAGE_ERRORS:
            self._dead_letter_now(rec.seq, self._describe(err))
            return _Produced.SKIPPED
        if err is not None and (err.fatal() or code in PRODUCER_BROKEN_ERRORS):
            self._broken = self._broken or err
        elif code in UNREACHABLE_ERRORS:
            self._note_down(self._describe(err))
        else:
            log.warning("produce of event seq %d failed: %s; retrying later", rec.seq, exc)
        return _Produced.STOP

    def _dead_letter_now(self, seq: int, error: str) -> None:
        log.error("dead letter: event seq %d: %s", seq, error)
        self.spool.dead_letter(seq, error)
        self.metrics.inc("dead_lettered")

    @staticmethod
    def _describe(err: KafkaError | None) -> str:
        return "unknown error" if err is None else f"{err.name()}: {err.str()}"

    # ------------------------------------------------------------------ reports (served by poll/flush, this thread)

    def _report(self, seq: int, err: KafkaError | None, _msg: Any) -> None:
        self._reports.append((seq, err))  # the minimum here: _apply() handles them in bulk

    def _handle_failure(self, seq: int, err: KafkaError, was_solo: bool) -> None:
        code = err.code()
        if code in SIZE_ERRORS and not was_solo:
            self._solo.add(seq)
            self._retry.append(seq)
        elif code in PERMANENT_MESSAGE_ERRORS:
            self._solo.discard(seq)
            self._dead.append((seq, self._describe(err)))
        else:
            self._retry.append(seq)
            if err.fatal() or code in PRODUCER_BROKEN_ERRORS:
                self._broken = self._broken or err
            elif code in UNREACHABLE_ERRORS:
                self._note_down(self._describe(err))

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
            log.warning("kafka client error: %s", self._describe(err))

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
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and (err.fatal() or err.code() in PRODUCER_BROKEN_ERRORS):
            self._broken = self._broken or err
        else:
            log.warning("kafka client error: %s", exc)

    def _note_down(self, reason: str) -> None:
        if self._state is _State.UNREACHABLE:
            return
        self._state = _State.UNREACHABLE
        log.warning("broker unreachable since %s: %s", _iso(time.time()), reason)

    def _note_up(self) -> None:
        self._progress = True
        self._idle_down = False
        if self._state is _State.CONNECTED:
            return
        self._state = _State.CONNECTED
        log.info("connected, draining %d events", self._spool_depth())

    def _poll(self, timeout_s: float) -> None:
        try:
            self._producer.poll(timeout_s)
        except KafkaException as exc:
            self._raised(exc)

    def _serve(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._poll(timeout_s)
        self._apply()

    def _apply(self) -> None:
        """Turn the delivery reports collected by poll() into spool acks, releases and dead letters."""
        acked: list[int] = []
        captured: list[float] = []
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
            self.metrics.record_acked(time.time() - np.asarray(captured))
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
                  self._describe(err), len(self._inflight), "" if at_once else " (after a backoff: it broke again)")
        self._abandon()
        self._fresh = True
        if at_once:
            self._producer = self._new_producer()
        return at_once

    def _client_down(self, err: KafkaError) -> None:
        """The client lost every broker (or, after that, failed to connect). With events in flight that is an
        outage. An idle producer's connections also close (idle timeout) and reopen on demand: then it is only
        remembered, and becomes an outage when a connection attempt fails while events wait."""
        if self._inflight or self._state is _State.STARTING:
            self._note_down(self._describe(err))
        elif err.code() != K._TRANSPORT:
            self._idle_down = True

    def _abandon(self) -> None:
        """Drop the producer: apply what it reported, give everything else it held back to the spool."""
        producer, self._producer = self._producer, None
        if producer is not None:
            _quietly(functools.partial(producer.purge, in_queue=True, in_flight=True, blocking=False))
            # serve the reports already there (successes stay acked) and the purge's; a fatal error is raised by
            # the call that serves it, so a second call serves what came after it
            if not _quietly(functools.partial(producer.flush, 0)):
                _quietly(functools.partial(producer.flush, 0))
        self._apply()
        self._broken = None
        self._solo_inflight = None
        self._retry.extend(self._inflight)
        self._inflight.clear()
        self._apply()

    # ------------------------------------------------------------------ spool stats

    def _settled_empty(self, deadline: float) -> bool:
        """Nothing pending once the spool has committed the acks handed to it (its flush() barrier, if any)."""
        flush = getattr(self.spool, "flush", None)
        if flush is not None:
            flush(max(0.0, deadline - time.monotonic()))
        return self._spool_depth() == 0

    def _spool_depth(self) -> int:
        return int(self.spool.stats().depth)

    def _refresh_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_stats:
            return
        self._next_stats = now + STATS_EVERY_S
        self.metrics.update_spool(self.spool.stats())
