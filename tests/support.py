"""What the tests share: one deadline wait (`wait_until`), a real spool with test defaults, a thread-safe collector."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """`wait_until` gave up: the condition was not true within its timeout."""


def wait_until(cond: Callable[[], T], what: str | Callable[[], str], timeout: float = 10.0, every: float = 0.02) -> T:
    """Calls `cond` every `every` s until it returns something truthy, and returns that; raises WaitTimeout (an
    AssertionError) naming `what` (a string, or a callable asked at the time: the state when it failed) after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {described} (last value {value!r})")
        time.sleep(every)
    return value


def open_spool(path: Path, **options: Any):  # noqa: ANN201 - an edge.spool.Spool
    """A real spool at `path`, committing every millisecond unless `options` say otherwise (tests wait less).
    edge is imported here, not at the top, so that tests which need none of it import this module cheaply."""
    from edge.spool import Spool

    return Spool.open(path, **{"commit_interval_ms": 1.0, **options})


class Collector:
    """A thread-safe sink: `collector(items)` keeps what a pipeline or replay hands it (DetectionEvents), and
    `drain(queue)` takes items off a stage's queue in a thread until it is closed, as the next stage would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list = []
        self.thread: threading.Thread | None = None

    def __call__(self, items: Iterable) -> None:
        with self._lock:
            self._items.extend(items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def items(self) -> list:
        """A copy of what was collected so far, in arrival order."""
        with self._lock:
            return list(self._items)

    def drain(self, queue: Any, name: str = "test-collector") -> threading.Thread:
        """Starts a daemon thread that collects what `queue` (an edge.buffers.BoundedQueue) yields until Closed."""
        from edge.buffers import Closed

        def run() -> None:
            while True:
                try:
                    item = queue.get(timeout=0.1)
                except Closed:
                    return
                if item is not None:
                    self([item])

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        return self.thread

    def wait_for(self, n: int, timeout: float = 30.0) -> list:
        """The items once at least `n` arrived; WaitTimeout after `timeout` s."""
        wait_until(lambda: len(self) >= n, lambda: f"{n} items collected (have {len(self)})", timeout)
        return self.items


class StageThread(threading.Thread):
    """A stage's `run(stop)` on a daemon thread; what it raised is kept in `error` (None: it ended cleanly)."""

    def __init__(self, run: Callable[[threading.Event], None], stop: threading.Event, name: str = "test-stage"):
        super().__init__(name=name, daemon=True)
        self._run, self._stop_event = run, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run(self._stop_event)
        except BaseException as exc:  # noqa: BLE001 - kept for the test's assertion
            self.error = exc
