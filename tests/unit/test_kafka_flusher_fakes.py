"""KafkaFlusher against an in-memory spool and a scripted producer: ack only on delivery, retries,
dead letters, the in-flight window, fatal-error recovery, stop and drain."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from edge.config import KafkaConfig
from edge.metrics import Metrics
from edge.sinks.kafka import KafkaFlusher, Step
from edge.spool import SpoolRecord


class FakeSpool:
    """The Spool interface in memory: pending -> leased -> acked | released | dead."""

    def __init__(self, n: int = 0, value: Callable[[int], bytes] = lambda i: b'{"x":1}'):
        self.records: dict[int, SpoolRecord] = {}
        self.leased: set[int] = set()
        self.acked: list[int] = []
        self.dead: dict[int, str] = {}
        self.release_count = 0
        self.max_leased = 0
        now = time.time()
        for i in range(n):
            self.records[i] = SpoolRecord(i, f"v{i % 3}", value(i), f"det-{i}", 1, now, now, 0)

    def lease(self, max_n: int) -> list[SpoolRecord]:
        out = [r for s, r in sorted(self.records.items()) if s not in self.leased][:max_n]
        self.leased.update(r.seq for r in out)
        self.max_leased = max(self.max_leased, len(self.leased))
        return out

    def ack(self, seqs):
        for s in seqs:
            assert s in self.leased, f"ack of seq {s} that is not leased"
            self.leased.discard(s)
            del self.records[s]
            self.acked.append(s)

    def release(self, seqs):
        for s in seqs:
            assert s in self.leased, f"release of seq {s} that is not leased"
            self.leased.discard(s)
            self.release_count += 1

    def dead_letter(self, seq, error):
        self.leased.discard(seq)
        self.records.pop(seq)
        self.dead[seq] = error

    def stats(self):
        return SimpleNamespace(depth=len(self.records), bytes=0, oldest_age_s=0.0, in_flight=len(self.leased), evicted_total=0)


class FakeMsg:
    def __init__(self, topic, key, value, headers):
        self._t, self._k, self._v, self._h = topic, key, value, headers

    def value(self):
        return self._v


class FakeProducer:
    """Queues produced messages; `poll` reports them all as one batch through `outcome(batch, i)`."""

    def __init__(self, conf, *, outcome=None, hold=None, buffer_limit=None, raise_for=None):
        self.conf = conf
        self.queue: list[tuple[FakeMsg, Callable]] = []
        self.produced: list[FakeMsg] = []
        self.outcome = outcome or (lambda batch, i: None)
        self.hold = hold or (lambda: False)
        self.buffer_limit = buffer_limit
        self.raise_for = raise_for or (lambda msg: None)
        self.purged = False

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        if self.buffer_limit is not None and len(self.queue) >= self.buffer_limit:
            raise BufferError("Local: Queue full")
        msg = FakeMsg(topic, key, value, headers)
        exc = self.raise_for(msg)
        if exc is not None:
            raise exc
        self.produced.append(msg)
        self.queue.append((msg, on_delivery))

    def poll(self, timeout=0):
        if self.hold() or not self.queue:
            if timeout:
                time.sleep(min(timeout, 0.005))
            return 0
        batch, self.queue = self.queue, []
        msgs = [m for m, _ in batch]
        for i, (m, cb) in enumerate(batch):
            cb(self.outcome(msgs, i), m)
        return len(batch)

    def flush(self, timeout=None):
        self.poll(0)
        return len(self.queue)

    def purge(self, in_queue=True, in_flight=True, blocking=True):
        batch, self.queue = self.queue, []
        self.purged = True
        for m, cb in batch:
            cb(KafkaError(KafkaError._PURGE_QUEUE), m)


def cfg(**kw) -> KafkaConfig:
    base = dict(bootstrap_servers="fake:9092", topic="events.test", max_in_flight=10, batch_size=10,
                backoff_initial_ms=1, backoff_max_s=0.02)
    base.update(kw)
    return KafkaConfig(**base)


def make(spool, conf=None, **producer_kw):
    producers: list[FakeProducer] = []

    def factory(c):
        p = FakeProducer(c, **producer_kw)
        producers.append(p)
        return p

    metrics = Metrics()
    return KafkaFlusher(conf or cfg(), spool, metrics, producer_factory=factory), producers, metrics


def run_steps(flusher, until: Callable[[], bool], max_steps: int = 500) -> None:
    for _ in range(max_steps):
        flusher.step()
        if until():
            return
    raise AssertionError(f"condition not reached in {max_steps} steps")


def test_all_delivered_with_key_headers_and_topic():
    spool = FakeSpool(25)
    f, producers, metrics = make(spool)
    run_steps(f, lambda: not spool.records)
    assert sorted(spool.acked) == list(range(25)), f"acked {spool.acked}"
    m = producers[0].produced[0]
    assert (m._t, m._k, m._v) == ("events.test", "v0", b'{"x":1}'), "topic, key=vehicle id, value"
    assert dict(m._h) == {"detection_id": "det-0", "schema_version": "1", "content-type": b"application/json"}, f"{m._h}"
    snap = metrics.snapshot()
    assert (snap["sent"], snap["acked"], snap["failed"], snap["pending"]) == (25, 25, 0, 0), f"{snap}"
    assert snap["latency_p50_ms"] is not None, "latency recorded on ack"


def test_ack_only_on_delivery_report_and_window_bounded():
    # given a producer that never reports
    spool = FakeSpool(50)
    held = [True]
    f, producers, _ = make(spool, cfg(max_in_flight=7), hold=lambda: held[0])
    for _ in range(20):
        f.step()
    # then nothing is acked and no more than max_in_flight are leased
    assert spool.acked == [], "acked without a delivery report"
    assert spool.max_leased == 7 and f.in_flight == 7, f"window: leased {spool.max_leased}, in flight {f.in_flight}"
    held[0] = False
    run_steps(f, lambda: not spool.records)
    assert spool.max_leased <= 7, "window exceeded"


def test_retriable_failure_is_released_and_resent(caplog):
    # given the first delivery of every event times out
    spool = FakeSpool(10)
    seen: set[int] = set()

    def outcome(batch, i):
        det = batch[i]._h[0][1]
        if det in seen:
            return None
        seen.add(det)
        return KafkaError(KafkaError._MSG_TIMED_OUT)

    f, producers, metrics = make(spool, outcome=outcome)
    with caplog.at_level(logging.INFO, logger="edge.sinks.kafka"):
        run_steps(f, lambda: not spool.records)
    assert sorted(spool.acked) == list(range(10)), "every event delivered on retry"
    assert spool.release_count == 10, f"each timed-out event released once, got {spool.release_count}"
    assert len(producers[0].produced) == 20, "each event sent twice: timed out, then delivered"
    assert metrics.get("failed") == 10, f"failed {metrics.get('failed')}"
    down = [r for r in caplog.messages if r.startswith("broker unreachable since ")]
    up = [r for r in caplog.messages if r.startswith("connected, draining")]
    assert len(down) == 1 and "_MSG_TIMED_OUT" in down[0], f"one unreachable line: {down}"
    assert len(up) == 1, f"one connected line: {up}"


def test_size_error_at_produce_dead_letters_only_that_event():
    spool = FakeSpool(6, value=lambda i: b"B" * 50 if i == 3 else b"{}")
    too_big = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large"))
    f, _, metrics = make(spool, raise_for=lambda m: too_big if len(m._v) > 10 else None)
    run_steps(f, lambda: not spool.records)
    assert list(spool.dead) == [3] and "MSG_SIZE_TOO_LARGE" in spool.dead[3], f"dead letters {spool.dead}"
    assert sorted(spool.acked) == [0, 1, 2, 4, 5], "the others flow"
    assert metrics.get("dead_lettered") == 1, "dead letter counted"


def test_broker_size_error_on_batch_isolates_the_culprit():
    # given a broker that rejects any batch holding the big event (as Kafka does per batch)
    spool = FakeSpool(30, value=lambda i: b"B" * 50 if i == 12 else b"{}")

    def outcome(batch, i):
        return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if any(len(m._v) > 10 for m in batch) else None

    f, _, _ = make(spool, outcome=outcome)
    run_steps(f, lambda: not spool.records)
    # then only the big one is dead-lettered, after being sent alone
    assert list(spool.dead) == [12], f"innocent batch members dead-lettered: {spool.dead}"
    assert sorted(spool.acked) == [i for i in range(30) if i != 12], "all others delivered"


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.NOT_ENOUGH_REPLICAS]
)
def test_topic_and_retriable_errors_hold_events(code):
    spool = FakeSpool(5)
    fail = [True]
    f, _, _ = make(spool, outcome=lambda b, i: KafkaError(code) if fail[0] else None)
    for _ in range(5):
        f.step()
    assert spool.dead == {} and spool.acked == [], f"{KafkaError(code).name()} must not dead-letter"
    fail[0] = False
    run_steps(f, lambda: not spool.records)
    assert sorted(spool.acked) == list(range(5)), "delivered once the error cleared"


def test_serialization_error_dead_letters():
    spool = FakeSpool(3)
    f, _, _ = make(spool, raise_for=lambda m: TypeError("bad key type") if m._k == "v1" else None)
    run_steps(f, lambda: not spool.records)
    assert list(spool.dead) == [1] and "serialization" in spool.dead[1], f"{spool.dead}"


def test_buffer_full_stops_the_round_and_nothing_is_lost():
    spool = FakeSpool(40)
    f, _, _ = make(spool, cfg(max_in_flight=40), buffer_limit=5)
    results = []
    for _ in range(200):
        results.append(f.step())
        if not spool.records:
            break
    assert not spool.records and sorted(spool.acked) == list(range(40)), "all delivered despite BufferError"
    assert Step.FAILED in results, "a full queue backs off"


def test_fatal_error_recreates_producer_and_releases_in_flight(caplog):
    spool = FakeSpool(20)
    held = [True]
    f, producers, metrics = make(spool, hold=lambda: held[0])
    f.step()
    assert f.in_flight == 10, "window filled"
    # when librdkafka raises a fatal error (idempotence broken)
    producers[0].conf["error_cb"](KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "seq gap", fatal=True))
    with caplog.at_level(logging.ERROR, logger="edge.sinks.kafka"):
        assert f.step() is Step.FAILED, "a fatal error fails the step"
    # then the producer is dropped, its events go back to the spool, a new producer sends them
    assert producers[0].purged and f.in_flight == 0 and not spool.leased, "in-flight released"
    assert "recreating" in caplog.text, "fatal error logged"
    held[0] = False
    run_steps(f, lambda: not spool.records)
    assert len(producers) == 2 and sorted(spool.acked) == list(range(20)), f"{len(producers)} producers"
    assert metrics.get("producer_restarts") == 1, "restart counted"


def test_fenced_delivery_report_recreates_producer():
    spool = FakeSpool(5)
    calls = [0]

    def outcome(b, i):
        calls[0] += 1
        return KafkaError(KafkaError.PRODUCER_FENCED) if calls[0] <= 5 else None

    f, producers, _ = make(spool, outcome=outcome)
    run_steps(f, lambda: not spool.records)
    assert len(producers) == 2, "a fenced producer is replaced"
    assert sorted(spool.acked) == list(range(5)) and not spool.dead, "nothing lost or dead-lettered"


def test_run_sees_stop_at_once_even_in_long_backoff():
    spool = FakeSpool(5)
    f, _, _ = make(spool, cfg(backoff_max_s=30, backoff_initial_ms=30_000),
                   outcome=lambda b, i: KafkaError(KafkaError._MSG_TIMED_OUT))
    stop = threading.Event()
    t = threading.Thread(target=f.run, args=(stop,))
    t.start()
    time.sleep(0.2)  # let it enter its 15-30 s backoff
    t0 = time.monotonic()
    stop.set()
    t.join(2)
    assert not t.is_alive(), "run() ignored stop"
    assert time.monotonic() - t0 < 0.5, f"stop took {time.monotonic() - t0:.2f} s"


def test_drain_delivers_everything():
    spool = FakeSpool(35)
    f, _, _ = make(spool)
    assert f.drain(5.0) is True, "drain reports success"
    assert not spool.records and not spool.leased, "spool empty after drain"


def test_drain_is_bounded_and_returns_events_to_spool():
    spool = FakeSpool(35)
    f, _, _ = make(spool, hold=lambda: True)
    t0 = time.monotonic()
    assert f.drain(0.3) is False, "drain cannot succeed without reports"
    assert time.monotonic() - t0 < 1.0, "drain exceeded its bound"
    assert not spool.leased and len(spool.records) == 35, "undelivered events are back in the spool"


def test_offline_config_never_produces():
    spool = FakeSpool(3)
    f, producers, _ = make(spool, cfg(bootstrap_servers=""))
    assert f.step() is Step.IDLE and producers == [], "no producer without bootstrap servers"
    assert f.drain(0.1) is False and len(spool.records) == 3, "events stay spooled"


def test_drain_from_another_thread_while_run_is_active():
    # given run() busy in its thread (as edge.delivery does it: drain first, then stop)
    spool = FakeSpool(300)
    t_end = time.monotonic() + 0.2
    f, _, _ = make(spool, cfg(max_in_flight=50), hold=lambda: time.monotonic() < t_end)
    stop = threading.Event()
    t = threading.Thread(target=f.run, args=(stop,))
    t.start()
    try:
        # when the main thread drains
        assert f.drain(5.0) is True, "drain alongside run() failed"
    finally:
        stop.set()
        t.join(2)
    # then everything was delivered exactly once through one consistent bookkeeping
    assert not spool.records and sorted(spool.acked) == list(range(300)), "lost or doubly acked events"
    assert not t.is_alive(), "run() did not stop"


def test_failed_shutdown_drain_stops_a_running_loop_from_producing_again():
    # given run() looping while a shutdown drain gives up (no reports ever come)
    spool = FakeSpool(20)
    f, producers, _ = make(spool, hold=lambda: True)
    stop = threading.Event()
    t = threading.Thread(target=f.run, args=(stop,))
    t.start()
    try:
        assert f.drain(0.3) is False, "drain cannot succeed without reports"
        # then run() ends by itself and no new producer leases the events again
        t.join(2)
        assert not t.is_alive(), "run() kept going after a failed shutdown drain"
    finally:
        stop.set()
        t.join(2)
    assert len(producers) == 1 and not spool.leased, f"{len(producers)} producers, {len(spool.leased)} leased"
