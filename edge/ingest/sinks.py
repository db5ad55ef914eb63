"""Where converted CSV events go: the durable spool, or nowhere (dry run: count, sample, optionally print); straight
to Kafka is edge.ingest.direct."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import BinaryIO

from edge.ingest.convert import Batch
from edge.ingest.rows import FileContext
from edge.ingest.run import Stopped

log = logging.getLogger(__name__)


class SpoolWriter:
    """Appends events to the spool; `write` returns once they are durable (block policy: waits for room).

    A spool item's captured_at is the time the row is spooled, not the recording time (that one is in the
    event's JSON): the flusher's captured→acked latency then reads as delivery latency, and days-old
    recordings do not skew the daemon's latency histogram."""

    def __init__(self, spool, stop: threading.Event | None = None, poll_s: float = 1.0):  # noqa: ANN001 - edge.spool.Spool
        self.spool = spool
        self.stop = stop or threading.Event()
        self.poll_s = poll_s
        self.appended = 0

    def write(self, batch: Batch, ctx: FileContext) -> None:
        from edge.spool import SpoolItem

        now = time.time()
        self.append([SpoolItem(ctx.vehicle_id, value, det_id, now) for _line, value, det_id, _captured in batch.events()])

    def append(self, items: list) -> None:
        """Append `items`, waiting for room as write() does (Stopped when a stop comes while waiting)."""
        from edge.spool import SpoolFull

        waited = False
        while items:
            try:
                self.spool.append(items, timeout=self.poll_s)
                break
            except SpoolFull:
                if self.stop.is_set():
                    raise Stopped from None
                if not waited:
                    log.warning("spool full: waiting for the flusher to make room (a stop here loses nothing)")
                    waited = True
        self.appended += len(items)


class DryRunSink:
    """Serialises everything, sends nothing: keeps the first `samples` events, writes all of them with `out`."""

    def __init__(self, samples: int = 5, out: BinaryIO | None = None):
        self.samples_wanted = samples
        self.samples: list[dict] = []
        self.out = out
        self.events = 0
        self.bytes = 0

    def write(self, batch: Batch, ctx: FileContext) -> None:
        self.events += batch.accepted
        if len(self.samples) < self.samples_wanted:
            for _line, value, _id, _cap in batch.events():
                self.samples.append(json.loads(value))
                if len(self.samples) >= self.samples_wanted:
                    break
        for part in batch.json_lines():
            self.bytes += len(part)
            if self.out is not None:
                self.out.write(part)
