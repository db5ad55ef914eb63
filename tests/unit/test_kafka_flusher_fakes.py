"""KafkaFlusher against an in-memory spool and a scripted producer: ack only on delivery, retries,
dead letters, the in-flight window, fatal-error recovery, stuck producer ids, truthful state lines, stop and drain."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from edge.config import KafkaConfig
from edge.latency import StageLatencies
from edge.metrics import Metrics
from edge.sinks.kafka import KafkaFlusher, Step
from edge.sinks.protocols import Flusher, FlusherSpool
from edge.spool import Spool, SpoolRecord, SpoolStats, Stream
from tests.support import wait_until


class FakeSpool:
    """FlusherSpool in memory: pending -> leased -> acked | released | dead."""

    def __init__(self, n: int = 0, value: Callable[[int], bytes] = lambda i: b'{"x":1}',
                 stream: Callable[[int], int] = lambda i: 0):
        self.records: dict[int, SpoolRecord] = {}
        self.leased: set[int] = set()
        self.acked: list[int] = []
        self.dead: dict[int, str] = {}
        self.release_count = 0
        self.max_leased = 0
        now = time.time()
        for i in range(n):
            self.records[i] = SpoolRecord(i, f"v{i % 3}", value(i), f"det-{i}", 1, now, now, 0, stream(i))

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

    def stats(self) -> SpoolStats:
        return SpoolStats(
            depth=len(self.records), bytes=0, oldest_age_s=0.0, in_flight=len(self.leased), dead=len(self.dead),
            quarantined=0, evicted_total=0, appended_total=len(self.records) + len(self.acked) + len(self.dead),
            acked_total=len(self.acked), disk_full=False, max_bytes=1 << 30, policy="block",
        )

    def flush(self, timeout: float | None = None) -> bool:
        return True  # every call above takes effect at once

    def wait_appended(self, timeout: float) -> bool:
        time.sleep(min(timeout, 0.005))  # records are only added by the test, before the flusher runs
        return False


class FakeMsg:
    def __init__(self, topic, key, value, headers):
        self._t, self._k, self._v, self._h = topic, key, value, headers

    def value(self):
        return self._v


class FakeProducer:
    """Queues produced messages; `poll` reports them all as one batch through `outcome(batch, i)`, then calls
    `after_poll(producer)`. `break_with(err)` makes it behave as confluent-kafka after a fatal error: the next
    poll raises it once, and every produce is refused."""

    def __init__(self, conf, *, outcome=None, hold=None, buffer_limit=None, raise_for=None, after_poll=None,
                 batch_limit=None):
        self.conf = conf
        self.queue: list[tuple[FakeMsg, Callable]] = []
        self.produced: list[FakeMsg] = []
        self.outcome = outcome or (lambda batch, i: None)
        self.hold = hold or (lambda: False)
        self.buffer_limit = buffer_limit
        self.raise_for = raise_for or (lambda msg: None)
        self.after_poll = after_poll or (lambda producer: None)
        self.batch_limit = batch_limit  # at most this many reports per poll
        self.purged = False
        self.fatal: KafkaError | None = None
        self._raise_fatal = False

    def break_with(self, err: KafkaError) -> None:
        self.fatal, self._raise_fatal = err, True

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        if self.fatal is not None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "Fatal error", fatal=True))
        if self.buffer_limit is not None and len(self.queue) >= self.buffer_limit:
            raise BufferError("Local: Queue full")
        msg = FakeMsg(topic, key, value, headers)
        exc = self.raise_for(msg)
        if exc is not None:
            raise exc
        self.produced.append(msg)
        self.queue.append((msg, on_delivery))

    def poll(self, timeout=0):
        if self._raise_fatal:
            self._raise_fatal = False
            raise KafkaException(self.fatal)
        if self.fatal is not None or self.hold() or not self.queue:
            if timeout:
                time.sleep(min(timeout, 0.005))
            self.after_poll(self)
            return 0
        n = len(self.queue) if self.batch_limit is None else self.batch_limit
        batch, self.queue = self.queue[:n], self.queue[n:]
        msgs = [m for m, _ in batch]
        for i, (m, cb) in enumerate(batch):
            cb(self.outcome(msgs, i), m)
        self.after_poll(self)
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
    flusher = KafkaFlusher(conf or cfg(), spool, metrics, producer_factory=factory, stages=StageLatencies())
    return flusher, producers, metrics


def run_steps(flusher, until: Callable[[], bool], max_steps: int = 500) -> None:
    for _ in range(max_steps):
        flusher.step()
        if until():
            return
    raise AssertionError(f"condition not reached in {max_steps} steps")


def test_fakes_and_real_parts_fit_the_seams(tmp_path):
    # given the fake spool, a real spool and a flusher
    fake = FakeSpool(3)
    with Spool.open(tmp_path / "spool.db") as real:
        flusher, _, _ = make(fake)
        # then each satisfies the Protocol it stands behind
        assert isinstance(fake, FlusherSpool), "FakeSpool must implement FlusherSpool"
        assert isinstance(real, FlusherSpool), "edge.spool.Spool must implement FlusherSpool"
        assert isinstance(flusher, Flusher), "KafkaFlusher must implement Flusher"
        assert isinstance(fake.stats(), SpoolStats), "the fake's stats are a real SpoolStats"
        assert not isinstance(object(), FlusherSpool), "the check is not vacuous"


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
    stages = {k: v["count"] for k, v in f.stages.snapshot().items()}
    assert stages == {"produce": 25, "ack": 25, "total": 25}, f"each event's produce, ack and total timed: {stages}"
    assert not f._sent_at, "no produce time kept after the ack"


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


def test_each_stream_goes_to_its_own_topic_in_spool_order():
    # given detection events (stream 0) and object records (stream 1) interleaved in the spool
    spool = FakeSpool(30, stream=lambda i: Stream.OBJECTS if i % 3 == 0 else Stream.DETECTIONS)
    f, producers, _ = make(spool, cfg(objects_topic="objects.test"))
    # when everything is delivered
    run_steps(f, lambda: not spool.records)
    # then each went to its stream's topic, in spool order within each topic
    by_topic: dict[str, list[str]] = {}
    for m in producers[0].produced:
        by_topic.setdefault(m._t, []).append(dict(m._h)["detection_id"])
    objects = [f"det-{i}" for i in range(30) if i % 3 == 0]
    detections = [f"det-{i}" for i in range(30) if i % 3 != 0]
    assert by_topic == {"objects.test": objects, "events.test": detections}, f"topics and order: {by_topic}"
    assert sorted(spool.acked) == list(range(30)), f"every record acked once: {spool.acked}"


def test_an_object_record_sent_alone_after_a_size_error_goes_to_the_objects_topic():
    # given a broker that rejects any batch holding the big object record, which it accepts alone
    spool = FakeSpool(12, value=lambda i: b"B" * 50 if i == 5 else b"{}", stream=lambda i: int(i == 5))

    def outcome(batch, i):
        return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if len(batch) > 1 and len(batch[i]._v) > 10 else None

    f, producers, _ = make(spool, cfg(objects_topic="objects.test"), outcome=outcome)
    run_steps(f, lambda: not spool.records)
    # then its resend alone (the isolation path) used its own topic too
    sent = [(m._t, dict(m._h)["detection_id"]) for m in producers[0].produced if dict(m._h)["detection_id"] == "det-5"]
    assert sent == [("objects.test", "det-5")] * 2, f"sent in its batch, then alone, both to objects.test: {sent}"
    assert sorted(spool.acked) == list(range(12)) and not spool.dead, f"all delivered: {spool.acked}, {spool.dead}"


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


def seqs_of(producer: FakeProducer) -> list[int]:
    return [int(dict(m._h)["detection_id"].split("-")[1]) for m in producer.produced]


@pytest.mark.parametrize("via", ["error_cb", "poll"])
def test_fatal_error_recreates_producer_and_resends_only_unacknowledged(via, caplog):
    # given 10 events delivered and 10 more in flight, unreported
    spool = FakeSpool(30)
    held = [False]
    f, producers, metrics = make(spool, hold=lambda: held[0])
    f.step()
    held[0] = True
    f.step()
    assert sorted(spool.acked) == list(range(10)) and f.in_flight == 10, f"acked {spool.acked}, in flight {f.in_flight}"
    # when the producer hits a fatal error (confluent-kafka raises it from poll; librdkafka's error_cb may report it)
    err = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "Broker: Unknown Producer Id", fatal=True)
    if via == "error_cb":
        producers[0].conf["error_cb"](err)
    producers[0].break_with(err)
    with caplog.at_level(logging.ERROR, logger="edge.sinks.kafka"):
        f.step()
    # then it is dropped at once, a new one gets the unreported events in the same step (no backoff first)
    assert producers[0].purged and len(producers) == 2, f"{len(producers)} producers, purged {producers[0].purged}"
    assert seqs_of(producers[1]) == list(range(10, 20)), f"the new producer sent {seqs_of(producers[1])}"
    held[0] = False
    run_steps(f, lambda: not spool.records)
    # and only what was not acknowledged was sent again: every event acked once
    assert sorted(spool.acked) == list(range(30)), f"acked {sorted(spool.acked)}"
    assert seqs_of(producers[1]) == list(range(10, 30)), "events acked by the first producer were resent"
    recreated = [m for m in caplog.messages if "recreating" in m]
    assert len(recreated) == 1 and "UNKNOWN_PRODUCER_ID" in recreated[0], f"recreation lines: {recreated}"
    assert metrics.get("producer_recreated") == 1, "recreation counted"


def test_producer_that_breaks_again_before_delivering_backs_off():
    # given a producer recreated after a fatal error
    spool = FakeSpool(10)
    f, producers, metrics = make(spool, hold=lambda: True)
    f.step()
    producers[0].break_with(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "seq gap", fatal=True))
    f.step()
    assert len(producers) == 2 and f.in_flight == 10, "recreated and sending at once"
    # when the new one breaks too before any delivery
    producers[1].break_with(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "seq gap", fatal=True))
    # then the flusher backs off before the next producer: no hot loop of recreations
    assert f.step() is Step.FAILED, "a second recreation without a delivery must back off"
    assert len(producers) == 2 and not spool.leased, f"{len(producers)} producers, {len(spool.leased)} leased"
    assert metrics.get("producer_recreated") == 2, "both recreations counted"


def stats(epochs: int) -> str:
    """librdkafka statistics as a stuck producer shows them: the epoch climbs, epoch_cnt (PID assignments) does not."""
    return json.dumps({"eos": {"idemp_state": "Assigned", "producer_id": 1, "producer_epoch": epochs, "epoch_cnt": 1}})


def test_epoch_bumps_without_reports_recreate_a_stuck_producer(caplog):
    # given events in flight and a producer that reports nothing (a broker that does not know its producer id:
    # librdkafka bumps the epoch and retries, forever)
    spool = FakeSpool(10)
    f, producers, metrics = make(spool, hold=lambda: True)
    f.step()
    stats_cb = producers[0].conf["stats_cb"]
    # when the statistics show the epoch climbing with no report in between
    with caplog.at_level(logging.ERROR, logger="edge.sinks.kafka"):
        for epochs in (1, 3, 5):
            stats_cb(stats(epochs))
            f.step()
        assert len(producers) == 1, "recreated before EPOCH_BUMPS_MAX bumps"
        stats_cb(stats(7))
        f.step()
    # then the producer is recreated and the events go to the new one
    assert len(producers) == 2 and seqs_of(producers[1]) == list(range(10)), f"{len(producers)} producers"
    assert "epoch bumped 6 times" in caplog.text, f"reason not logged: {caplog.text}"
    assert metrics.get("producer_recreated") == 1, "recreation counted"


def test_epoch_bumps_with_reports_in_between_are_no_stuck_producer():
    # given a producer whose epoch is bumped after message timeouts, each time with their reports
    spool = FakeSpool(10)
    timeouts = [True]
    f, producers, _ = make(spool, outcome=lambda b, i: KafkaError(KafkaError._MSG_TIMED_OUT) if timeouts[0] else None)
    for epochs in range(1, 30, 3):
        f.step()
        producers[0].conf["stats_cb"](stats(epochs))
    # then it is kept, and delivers once the broker answers
    timeouts[0] = False
    run_steps(f, lambda: not spool.records)
    assert len(producers) == 1, f"{len(producers)} producers: a producer with reports flowing was recreated"


def test_reports_before_an_outage_do_not_read_as_connected_after_it(caplog):
    # given a connected flusher
    spool = FakeSpool(20)
    down, gone = [False], [False]

    def after_poll(producer):
        if down[0] and not gone[0]:  # the client lost its broker after the reports this poll served were queued
            producer.conf["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            gone[0] = True  # and nothing is delivered any more

    f, _, _ = make(spool, after_poll=after_poll, batch_limit=3, hold=lambda: gone[0])
    with caplog.at_level(logging.INFO, logger="edge.sinks.kafka"):
        f.step()
        assert f.connected and f.in_flight == 7, f"connected {f.connected}, in flight {f.in_flight}"
        # when one poll serves the last acks of a broker, then its loss, with events still in flight
        down[0] = True
        f.step()
    # then the log says connected, then unreachable, and nothing after
    lines = [m for m in caplog.messages if m.startswith(("connected", "broker unreachable"))]
    assert [m.split(",")[0].split(" since")[0] for m in lines] == ["connected", "broker unreachable"], f"{lines}"
    assert not f.connected, "the flusher claims a connection after the outage"


def test_run_survives_a_fatal_error_raised_while_waiting():
    # given run() looping with everything in flight and unreported
    spool = FakeSpool(30)
    held = [True]
    f, producers, metrics = make(spool, hold=lambda: held[0])
    stop = threading.Event()
    t = threading.Thread(target=f.run, args=(stop,))
    t.start()
    try:
        wait_until(lambda: f.in_flight >= 10, "10 records in flight", 5)
        # when poll() raises the fatal error (in run's wait, or its next step)
        producers[0].break_with(KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "Broker: Unknown Producer Id", fatal=True))
        wait_until(lambda: len(producers) >= 2, "a second producer", 5)
        held[0] = False
        wait_until(lambda: not spool.records, lambda: f"the spool to empty ({len(spool.records)} left)", 5)
        # then the thread lives on, with a new producer that delivered everything
        assert t.is_alive(), "run() died on a fatal error"
    finally:
        stop.set()
        t.join(2)
    assert sorted(spool.acked) == list(range(30)), f"acked {len(spool.acked)} of 30"
    assert metrics.get("producer_recreated") == 1, "recreation counted"


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


@pytest.mark.parametrize("connect_fails", [True, False])
def test_broker_lost_while_idle_is_an_outage_only_once_a_connection_fails(connect_fails, caplog):
    # given a connected flusher with nothing in flight when the client loses every broker
    spool = FakeSpool(5)
    answering = [True]
    f, producers, _ = make(spool, hold=lambda: not answering[0])
    run_steps(f, lambda: not spool.records)
    error_cb = producers[0].conf["error_cb"]
    with caplog.at_level(logging.INFO, logger="edge.sinks.kafka"):
        error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        f.step()
        assert f.connected, "an idle producer's closed connections are no outage yet"
        # when events arrive, and the reconnection is refused (or succeeds: an idle close)
        spool.records.update(FakeSpool(8).records)
        answering[0] = not connect_fails
        f.step()
        if connect_fails:
            refused = "b:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
            error_cb(KafkaError(KafkaError._TRANSPORT, refused))
        f.step()
    # then the outage is logged at once when the connection failed, and not at all when it reopened
    down = [m for m in caplog.messages if m.startswith("broker unreachable since")]
    if connect_fails:
        assert len(down) == 1 and "Connection refused" in down[0] and not f.connected, f"outage lines: {down}"
    else:
        assert down == [] and f.connected, f"an idle close was reported as an outage: {down}"
