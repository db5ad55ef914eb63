"""Bounded hand-off between stages with an explicit full-queue policy (block, or drop the oldest and count)."""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar, get_args

from edge.types import QueuePolicy

T = TypeVar("T")


class Closed(Exception):
    """The queue was closed and is drained: no more items will come."""


class BoundedQueue(Generic[T]):
    """A bounded FIFO. `block` makes producers wait (files, CSV: nothing lost);
    `drop_oldest` evicts the oldest item so a live producer never waits (counted in `dropped`)."""

    def __init__(self, maxsize: int, policy: QueuePolicy):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if policy not in get_args(QueuePolicy):
            raise ValueError(f"policy must be one of {get_args(QueuePolicy)}, got {policy!r}")
        self.maxsize = maxsize
        self.policy: QueuePolicy = policy
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T, stop: threading.Event | None = None, poll_s: float = 0.1) -> T | None:
        """Enqueue; returns the evicted item under `drop_oldest`, else None.

        Under `block`, waits for room, re-checking `stop` every `poll_s`; returns None without
        enqueuing if `stop` is set or the queue is closed."""
        with self._cond:
            evicted = None
            while len(self._items) >= self.maxsize:
                if self.policy == "drop_oldest":
                    evicted = self._items.popleft()
                    self.dropped += 1
                    break
                if self._closed or (stop is not None and stop.is_set()):
                    return None
                self._cond.wait(poll_s)
            if self._closed:
                return None
            self._items.append(item)
            self._cond.notify_all()
            return evicted

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, or None after `timeout`. Raises Closed once closed and empty."""
        with self._cond:
            if not self._items:
                if self._closed:
                    raise Closed
                self._cond.wait(timeout)
                if not self._items:
                    if self._closed:
                        raise Closed
                    return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts; consumers drain what is left, then get Closed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
