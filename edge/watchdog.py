"""Progress-based systemd watchdog: WATCHDOG=1 only while every stage shows progress, never from a bare timer.

Each stage owns a `Heartbeat` and calls `beat()` once per loop iteration (a frame read, a flush loop
tick, an idle wait that ended normally). `ProgressWatchdog` asks its checks every interval/2 and pings
systemd only when all of them say "progressing"; a hung stage therefore stops the pings and systemd
(WatchdogSec=) kills the service with SIGABRT and restarts it (Restart=on-failure).

systemd arms the watchdog only once READY=1 has been sent (seen with systemd 252), so a long start such
as a TensorRT engine build needs EXTEND_TIMEOUT_USEC= (`Notifier.extending_timeout`), not pings.

A check is any `Callable[[], bool]`; `Heartbeat.check(max_age)` builds the usual one. A check that must
accept legitimate idleness (a camera in an outage that is reconnecting) says so itself, e.g.
`lambda: source.reconnecting or frames.alive(30)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

Check = Callable[[], bool]


class _Pinger(Protocol):
    def watchdog(self) -> bool: ...


class Heartbeat:
    """The last time a stage's loop went round. Starts alive (the stage gets `max_age` to beat first)."""

    def __init__(self, name: str = "heartbeat", clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._clock = clock
        self._last = clock()
        self.beats = 0

    def beat(self) -> None:
        self._last = self._clock()  # a float store: safe from any thread without a lock
        self.beats += 1

    def age(self) -> float:
        return self._clock() - self._last

    def alive(self, max_age: float) -> bool:
        return self.age() <= max_age

    def check(self, max_age: float) -> Check:
        """A named check for `ProgressWatchdog`: alive within `max_age` seconds."""

        def check() -> bool:
            return self.alive(max_age)

        check.__name__ = f"{self.name} (beat within {max_age:g} s)"
        return check


def _name(check: Check) -> str:
    return getattr(check, "__name__", None) or repr(check)


class ProgressWatchdog:
    """Pings `notifier.watchdog()` every `interval`/2 seconds while all `checks` pass.

    `interval` is WatchdogSec= in seconds (`edge.service.watchdog_interval()`); None or 0: `run` returns at once.
    """

    def __init__(self, notifier: _Pinger, interval: float | None, checks: Sequence[Check]):
        self.notifier = notifier
        self.interval = interval
        self.checks = list(checks)
        self.pings = 0
        self.withheld = 0
        self._failing: tuple[str, ...] = ()

    @property
    def period(self) -> float | None:
        return self.interval / 2 if self.interval else None

    def failing(self) -> list[str]:
        """Names of the checks that do not show progress now (a check that raises counts as failing)."""
        names = []
        for check in self.checks:
            try:
                ok = bool(check())
            except Exception:  # noqa: BLE001 - a broken check must withhold the ping, not kill the watchdog
                log.exception("watchdog check %s raised", _name(check))
                ok = False
            if not ok:
                names.append(_name(check))
        return names

    def tick(self) -> bool:
        """One round: ping when every check passes. Returns whether it pinged."""
        failing = tuple(self.failing())
        if failing != self._failing:
            if failing:
                log.warning("watchdog: withholding WATCHDOG=1, no progress in: %s (systemd restarts the service "
                            "after WatchdogSec=%gs without a ping)", ", ".join(failing), self.interval or 0)
            else:
                log.info("watchdog: all stages progress again, pinging")
            self._failing = failing
        if failing:
            self.withheld += 1
            return False
        self.notifier.watchdog()
        self.pings += 1
        return True

    def run(self, stop: threading.Event) -> None:
        period = self.period
        if not period:
            log.debug("watchdog: WatchdogSec= not set for this process, not pinging")
            return
        log.debug("watchdog: checking %d stages every %.1f s", len(self.checks), period)
        while not stop.is_set():
            self.tick()
            if stop.wait(period):
                return
