"""CSV batches straight to Kafka: the file is the durable copy, so a batch is produced rather than spooled.

Durability, the same promise as through the spool, kept another way:
- `write()` returns only when every event of its batch is acknowledged by Kafka or committed to the spool;
  the checkpoint that follows it (edge.ingest.run) is never ahead of what is safe.
- A crash or kill inside `write()` leaves that batch behind the last checkpoint: the rerun produces it again,
  with the same detection ids (consumers dedupe on detection_id), as a redelivery from the spool would.
- Whatever the broker does not acknowledge goes to the spool, where the flusher retries it or dead-letters it
  with the broker's error: a rejected message (too large, …) only its own events; a broker that acknowledges
  nothing for `stall_s` (down, unreachable, a fatal producer error) the whole batch, and every later batch goes
  through the spool as well (one log line), so an outage costs one stall, not one per batch.
Why: spooling each row first wrote every event to disk twice (the CSV is already on disk), fsynced, and read and
deleted it again: 19k rows/s through the spool against 48-68k straight, with 3.5x less CPU, on two cores shared
with the broker (bench/csv_bench.py --only e2e, README).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from edge.config import KafkaConfig
from edge.ingest.convert import Batch
from edge.ingest.rows import FileContext
from edge.metrics import Metrics
from edge.sinks.kafka.config import event_headers, producer_config
from edge.sinks.kafka.errors import error_of
from edge.spool import SpoolItem
from edge.types import SCHEMA_VERSION

log = logging.getLogger(__name__)

STALL_S = 10.0  # no acknowledgement for this long: the broker is taken as down, the rest goes to the spool
POLL_S = 0.05


# delivery errors after which this producer gets nothing more through (a broker replaced under it, say)
_FENCED = frozenset({KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError._FENCED,
                     KafkaError.UNKNOWN_PRODUCER_ID, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
                     KafkaError.INVALID_PRODUCER_ID_MAPPING})


class _Reports:
    """The delivery reports of one batch: a count of successes, the events that failed (to be spooled)."""

    __slots__ = ("acked", "failed", "refused", "errors", "fenced")

    def __init__(self) -> None:
        self.fenced = False  # a report said this producer is fenced or unknown to the broker (a replaced broker)
        self.acked = 0
        self.failed: list[Any] = []  # confluent_kafka.Message: key, value and headers to spool it from
        self.refused: list[tuple[bytes, str]] = []  # (value, detection id) that produce() itself refused
        self.errors: dict[str, int] = {}

    def report(self, err: Any, msg: Any) -> None:  # on_delivery, served by poll() on this thread
        if err is None:
            self.acked += 1
        else:
            self.failed.append(msg)
            self.note(err.str())
            self.fenced = self.fenced or err.code() in _FENCED

    def note(self, error: str) -> None:
        self.errors[error] = self.errors.get(error, 0) + 1


class DirectWriter:
    """Sink of `edge ingest-csv` with a broker: produce each batch, wait for its reports, spool what failed.

    `spooled` is the fallback (edge.ingest.sinks.SpoolWriter): the same spool the flusher drains."""

    def __init__(
        self,
        cfg: KafkaConfig,
        spooled: Any,
        metrics: Metrics,
        stop: threading.Event,
        *,
        stall_s: float = STALL_S,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ):
        self.cfg = cfg
        self.spooled = spooled
        self.metrics = metrics
        self.stop = stop
        self.stall_s = stall_s
        conf = producer_config(cfg)
        conf["statistics.interval.ms"] = 0  # no stats_cb here: the flusher watches the epoch, this waits per batch
        conf["error_cb"] = self._on_error
        self._producer = producer_factory(conf)
        self.direct = True  # False once the broker stalled: everything after goes through the spool
        self.acked = 0  # events of this run Kafka acknowledged straight from the file
        self._fatal: str | None = None

    def write(self, batch: Batch, ctx: FileContext) -> None:
        if not self.direct or self.stop.is_set():
            self.spooled.write(batch, ctx)
            return
        reports = _Reports()
        t0 = time.time()
        produced, stalled = self._produce(batch, ctx.vehicle_id, reports)
        if not stalled:
            stalled = not self._wait(reports, produced)
        if stalled:
            self._give_up(batch, ctx, reports)
            return
        self.acked += reports.acked
        self.metrics.inc("sent", produced)
        if reports.acked:
            self.metrics.record_acked([time.time() - t0] * reports.acked)
        if reports.failed or reports.refused:
            self._spool_failed(reports, ctx.vehicle_id)
        if reports.fenced:  # every later batch would be refused the same way: the flusher's producer recovers
            log.warning("kafka %s: this producer is fenced or unknown to the broker (%s); the rest go through the "
                        "spool (the flusher sends them when it can)", self.cfg.bootstrap_servers, ", ".join(reports.errors))
            self.direct = False

    def close(self) -> None:
        """Nothing is in flight between batches; the purge only drops what an interrupted batch left."""
        self._drop_queued()

    def _poll(self, timeout: float) -> None:
        """Serve reports. confluent-kafka raises a fatal error from the poll that serves it: noted, and the batch
        waiting on it goes to the spool."""
        try:
            self._producer.poll(timeout)
        except KafkaException as exc:
            err = error_of(exc)
            if err is not None and err.fatal():
                self._fatal = self._fatal or err.str()
            else:
                log.warning("kafka client error: %s", exc)

    def _drop_queued(self) -> None:
        """Purge what librdkafka still holds (its reports say purged); a producer that failed fatally may raise."""
        try:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(0)
        except KafkaException as exc:
            log.debug("kafka: purge after %s", exc)

    # ------------------------------------------------------------------ one batch

    def _produce(self, batch: Batch, key: str, reports: _Reports) -> tuple[int, bool]:
        """Produce every event of the batch: (produced, stalled). An event produce() refuses is kept for the spool."""
        produce, topic, on_delivery = self._producer.produce, self.cfg.topic, reports.report
        produced = 0
        for _line, value, did, _captured in batch.events():
            headers = event_headers(did, SCHEMA_VERSION)
            try:
                produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            except BufferError:  # librdkafka's queue is full: serve reports until there is room
                if not self._room(reports, lambda: produce(topic, value, key, headers=headers, on_delivery=on_delivery)):
                    return produced, True
            except (KafkaException, TypeError, ValueError) as exc:
                if self._refused(exc, value, did, reports):
                    continue
                return produced, True
            produced += 1
        self._poll(0)
        return produced, False

    def _room(self, reports: _Reports, again: Callable[[], None]) -> bool:
        """Serve reports until `again()` (the produce that found the queue full) finds room; False on a stall."""

        def produced() -> bool:
            try:
                again()
            except BufferError:
                return False
            return True

        return self._serve_until(produced, reports)

    def _refused(self, exc: Exception, value: bytes, did: str, reports: _Reports) -> bool:
        """produce() raised for one event: True when it is that event's fault (too large, …: spooled, the flusher
        decides), False for a fatal producer error (nothing more can be sent)."""
        err = error_of(exc)
        if err is not None and err.fatal():
            self._fatal = self._fatal or err.str()
            return False
        reports.refused.append((value, did))
        reports.note(err.str() if err is not None else str(exc))
        return True

    def _wait(self, reports: _Reports, produced: int) -> bool:
        """Serve reports until every produced event has one; False on a stall."""
        return self._serve_until(lambda: reports.acked + len(reports.failed) >= produced, reports)

    def _serve_until(self, done: Callable[[], bool], reports: _Reports) -> bool:
        """Poll until `done()`. False when no report came for `stall_s`, on a fatal error, or after a short lull
        once a stop is asked (the chunk goes to the spool now instead of waiting out a slow broker)."""
        last, seen = time.monotonic(), reports.acked + len(reports.failed)
        while not done():
            self._poll(POLL_S)
            now, count = time.monotonic(), reports.acked + len(reports.failed)
            if count > seen:
                last, seen = now, count
            elif now - last > self.stall_s or self._fatal:
                return False
            if self.stop.is_set() and now - last > POLL_S * 4:
                return False
        return True

    def _give_up(self, batch: Batch, ctx: FileContext, reports: _Reports) -> None:
        """The broker stalled: drop what librdkafka holds and spool the whole batch (what it did acknowledge comes
        twice: same ids). From now on every batch goes through the spool and the flusher."""
        self._drop_queued()
        if self._fatal:
            why = self._fatal
        elif self.stop.is_set():
            why = "stopping before this chunk was acknowledged"
        else:
            why = f"no acknowledgement for {self.stall_s:g} s" + (
                f" ({', '.join(reports.errors)})" if reports.errors else "")
        log.warning("kafka %s: %s; this batch and the rest go through the spool (the flusher sends them when it can)",
                    self.cfg.bootstrap_servers, why)
        self.direct = False
        self.spooled.write(batch, ctx)

    def _spool_failed(self, reports: _Reports, key: str) -> None:
        """Events the broker or the client refused: into the spool with the errors logged, where the flusher
        retries or dead-letters each one."""
        log.warning("kafka refused %d events of a batch (%s): spooled for the flusher",
                    len(reports.failed) + len(reports.refused), "; ".join(f"{e} ×{n}" for e, n in reports.errors.items()))
        now = time.time()
        items = [SpoolItem(msg.key().decode(), msg.value(), _detection_id(msg), now) for msg in reports.failed]
        items += [SpoolItem(key, value, did, now) for value, did in reports.refused]
        self.spooled.append(items)

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = self._fatal or err.str()


def _detection_id(msg: Any) -> str:
    """The detection id of a message a delivery report failed: its header, or (a fenced producer's report carries
    no headers) the event's own field."""
    headers = msg.headers()
    if headers:
        did = dict(headers).get("detection_id")
        if did is not None:
            return did.decode() if isinstance(did, bytes) else str(did)
    return json.loads(msg.value())["detection_id"]
