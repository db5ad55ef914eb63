"""The typed seams around a flusher: the spool it drains (FlusherSpool) and what its owner drives (Flusher)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from edge.spool import SpoolRecord, SpoolStats


@runtime_checkable
class FlusherSpool(Protocol):
    """What a flusher asks of the spool (edge.spool.Spool; an in-memory fake in unit tests)."""

    def lease(self, max_n: int) -> list[SpoolRecord]:
        """Up to `max_n` oldest pending records not already leased, oldest first."""
        ...

    def ack(self, seqs: Iterable[int]) -> None:
        """The broker acknowledged these: they leave the spool."""
        ...

    def release(self, seqs: Iterable[int]) -> None:
        """Delivery failed: back to pending, leased again before newer records."""
        ...

    def dead_letter(self, seq: int, error: str) -> None:
        """The broker refuses this record for good: keep it aside with the error."""
        ...

    def stats(self) -> SpoolStats:
        """Counters; the flusher reads `depth`."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the acks and releases handed over so far are committed; False on timeout."""
        ...

    def wait_appended(self, timeout: float) -> bool:
        """Wait up to `timeout` s for newly committed records (an idle flusher's wait); True when some came."""
        ...


@runtime_checkable
class Flusher(Protocol):
    """What its owner (edge.delivery.Delivery, the daemon's watchdog) uses of a flusher."""

    loops: int  # grows while the loop turns, backing off included: the service watchdog's progress counter
    outage: str | None  # why the broker is unreachable (the error that said so); None once a delivery succeeds

    @property
    def connected(self) -> bool:
        """A delivery succeeded and no outage was noted since."""
        ...

    @property
    def in_flight(self) -> int:
        """Events produced and not yet reported."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set (in a thread); errors are logged and backed off, never raised."""
        ...

    def drain(self, timeout_s: float) -> bool:
        """At shutdown: deliver what the spool holds for at most `timeout_s`; True when it was emptied."""
        ...

    def close(self) -> None:
        """Drop the producer; what is in flight goes back to the spool."""
        ...
