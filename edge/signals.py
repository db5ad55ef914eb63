"""Signals of every command: stop (a second aborts replay and ingest-csv) and, for the service, reload."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, signals: Sequence[int], doing: str) -> Iterator[list[int]]:
    """Inside: the first of `signals` sets `stop` and logs that the command is `doing` (what it finishes before
    it ends); a second raises KeyboardInterrupt (abort). Yields the signals received, so that the command's exit
    code can say which (143 for SIGTERM, 130 for SIGINT). Installs nothing outside the main thread; the previous
    handlers come back at the end."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        log.warning("%s: %s (again to abort)", signal.Signals(signum).name, doing)
        stop.set()

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def service_signals(stop: threading.Event, reload: threading.Event) -> Iterator[None]:
    """The service's signals (`edge run`): SIGTERM and SIGINT set `stop` (capture stops, frames in flight are
    finished, the spool is drained for a while), SIGHUP sets `reload`. The previous handlers come back at the
    end; nothing is installed outside the main thread (a test running the service in a thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_stop(signum: int, _frame: object) -> None:
        log.info("received %s: stopping capture, finishing frames in flight, draining the spool",
                 signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
