"""DirectWriter with a fake producer: what it acknowledges, what it spools (one refused event, a failed report, a
stalled or broken producer) and that after a stall every batch goes through the spool."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException

from edge.config import KafkaConfig
from edge.ingest.convert import Converter
from edge.ingest.direct import DirectWriter
from edge.ingest.rows import FileContext, parse_header
from edge.metrics import Metrics

CTX = FileContext("20261203-abcdef", "vehicle-007", "cam-front", "drive.csv", 1796305500.0)
HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name"


def batch(rows: int, first: int = 0):  # noqa: ANN201 - edge.ingest.convert.Batch
    data = "".join(f"{first + i},{(first + i) / 5:.3f},{100 + i}.5,200.25,0.{8000 + i},stop sign\n" for i in range(rows))
    return Converter(parse_header(HEADER), CTX).convert(data.encode(), 2 + first, "2026-12-03T13:45:00.000Z")


class Msg:
    def __init__(self, value: bytes, key: str, headers: list):
        self._v, self._k, self._h = value, key, headers

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return self._k.encode()

    def headers(self) -> list:
        return [(k, v.encode() if isinstance(v, str) else v) for k, v in self._h]


class Producer:
    """produce() queues; poll() reports everything queued through `outcome(msg)` (None = delivered), unless `silent`.
    `refuse(msg)` makes produce() raise for that message; `fatal` makes every produce() raise a fatal error."""

    def __init__(self, conf: dict, *, outcome=None, refuse=None, silent=False, fatal=False, poll_fatal=False,
                 limit=None):  # noqa: ANN001
        self.conf, self.queue, self.produced, self.limit = conf, [], 0, limit
        self.outcome, self.refuse = outcome or (lambda m: None), refuse or (lambda m: None)
        self.silent, self.fatal, self.purged, self.poll_fatal = silent, fatal, 0, poll_fatal

    def produce(self, topic, value, key, headers=None, on_delivery=None):  # noqa: ANN001
        if self.fatal:
            raise KafkaException(KafkaError(KafkaError._FATAL, "Fatal error: fenced", fatal=True))
        if self.limit is not None and len(self.queue) >= self.limit:
            raise BufferError("Local: Queue full")
        msg = Msg(value, key, headers)
        err = self.refuse(msg)
        if err is not None:
            raise KafkaException(err)
        self.produced += 1
        self.queue.append((msg, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.poll_fatal:  # as confluent-kafka does: the poll that serves a fatal error raises it
            self.poll_fatal, self.fatal = False, True
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "unknown producer id", fatal=True))
        if self.silent:
            time.sleep(min(timeout, 0.001))
            return 0
        queue, self.queue = self.queue, []
        for msg, cb in queue:
            cb(self.outcome(msg), msg)
        return len(queue)

    def purge(self, in_queue=True, in_flight=True, blocking=True):  # noqa: ANN001
        self.purged += len(self.queue)
        self.queue = []

    def flush(self, timeout: float = 0) -> int:
        return 0


class Spooled:
    """Stands in for edge.ingest.sinks.SpoolWriter: keeps what reaches the spool."""

    def __init__(self):
        self.batches, self.items = [], []

    def write(self, b, ctx) -> None:  # noqa: ANN001
        self.batches.append(b)

    def append(self, items) -> None:  # noqa: ANN001
        self.items.extend(items)


def writer(producer: Producer, spooled: Spooled, stall_s: float = 0.05) -> DirectWriter:
    return DirectWriter(KafkaConfig(bootstrap_servers="127.0.0.1:9", topic="t"), spooled, Metrics(), threading.Event(),
                        stall_s=stall_s, producer_factory=lambda conf: producer)


def test_every_event_acknowledged_spools_nothing():
    spooled, producer = Spooled(), Producer({})
    w = writer(producer, spooled)
    w.write(batch(50), CTX)
    assert (producer.produced, w.acked) == (50, 50), f"50 produced and acknowledged, got {producer.produced}, {w.acked}"
    assert not spooled.batches and not spooled.items, "nothing goes to the spool"
    assert w.metrics.get("acked") == 50 and w.metrics.get("sent") == 50, "the run's summary counts them"


def test_an_event_produce_refuses_goes_to_the_spool_alone():
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large")
    spooled = Spooled()
    producer = Producer({}, refuse=lambda m: too_large if b'"frame_number":3,' in m.value() else None)
    w = writer(producer, spooled)
    w.write(batch(10), CTX)
    assert w.acked == 9 and w.direct, f"the other 9 acknowledged and the writer stays direct: {w.acked}, {w.direct}"
    assert len(spooled.items) == 1 and not spooled.batches, f"only the refused event is spooled: {spooled.items}"
    item = spooled.items[0]
    assert item.key == "vehicle-007" and b'"frame_number":3,' in item.value, f"the refused event, with its key: {item}"


def test_a_failed_delivery_report_spools_that_message():
    spooled = Spooled()
    producer = Producer({}, outcome=lambda m: KafkaError(KafkaError.INVALID_MSG) if b'"frame_number":0,' in m.value() else None)
    w = writer(producer, spooled)
    b = batch(4)
    w.write(b, CTX)
    ids = [did for _line, _v, did, _c in b.events()]
    assert [i.detection_id for i in spooled.items] == ids[:1], f"the failed event is spooled by its id: {spooled.items}"
    assert w.acked == 3, f"the rest acknowledged: {w.acked}"


def test_a_silent_broker_sends_this_batch_and_every_later_one_through_the_spool():
    spooled, producer = Spooled(), Producer({}, silent=True)
    w = writer(producer, spooled)
    first, second = batch(5), batch(5, first=5)
    w.write(first, CTX)
    assert spooled.batches == [first] and not w.direct, "a stall spools the whole batch and turns direct off"
    assert producer.purged == 5, f"what librdkafka held was purged: {producer.purged}"
    w.write(second, CTX)
    assert spooled.batches == [first, second] and producer.produced == 5, "later batches go to the spool, unproduced"


def test_a_fatal_producer_error_spools_the_batch():
    spooled, producer = Spooled(), Producer({}, fatal=True)
    w = writer(producer, spooled, stall_s=10)
    b = batch(3)
    w.write(b, CTX)
    assert spooled.batches == [b] and not w.direct, "a producer that can send nothing more: the batch is spooled at once"


def test_a_fatal_error_raised_by_poll_spools_the_batch_and_is_not_raised():
    spooled, producer = Spooled(), Producer({}, poll_fatal=True, silent=True)
    w = writer(producer, spooled, stall_s=10)
    b = batch(3)
    w.write(b, CTX)  # must not raise
    assert spooled.batches == [b] and not w.direct, "the fatal error sends the batch to the spool at once"
    w.close()  # a broken producer's purge must not raise either


def test_a_full_local_queue_waits_for_reports_and_loses_nothing():
    spooled, producer = Spooled(), Producer({}, limit=7)
    w = writer(producer, spooled)
    w.write(batch(50), CTX)
    assert (producer.produced, w.acked) == (50, 50), f"every event produced once room was made: {producer.produced}"
    assert not spooled.batches and not spooled.items, "back-pressure is not a failure: nothing spooled"


def test_a_failed_report_without_headers_still_names_its_detection():
    # a fenced producer's delivery reports carry no headers (seen when the broker was replaced mid-run)
    from edge.ingest.direct import _detection_id

    class Report:
        def __init__(self, headers):  # noqa: ANN001
            self._headers = headers

        def headers(self):  # noqa: ANN202
            return self._headers

        def value(self) -> bytes:
            return b'{"detection_id":"d-1","track_id":null}'

    assert _detection_id(Report(None)) == "d-1", "no headers: the id comes from the event itself"
    assert _detection_id(Report([("detection_id", b"d-2")])) == "d-2", "the header when there is one"
