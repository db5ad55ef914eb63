"""Live position from gpsd: a reader thread keeps a short history of TPV reports; frames pick theirs.

Times: every report is stamped with the host clock when it arrives, the same clock frames'
`captured_at` comes from. The receiver's own time is kept (`Sample.gps_time`) but not used to
match: receivers with a week-rollover bug (gpsd 3.22 moves pre-2019 dates 1024 weeks ahead) or a
host clock that is not yet set would otherwise make every fix look years old or in the future.

`fix_for(frame)`: the latest report at or before `captured_at`. None yet or mode < 2 → no_fix;
older than `max_age_s` → stale with null position; else ok. age_ms = captured_at − arrival.
The thread reconnects with capped exponential backoff (logs once per outage and on recovery),
treats `idle_timeout_s` without a line as an outage, and counts garbage lines without raising.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.backoff import Backoff
from edge.gps.base import RateLimitedLog, age_ms
from edge.gps.gpsd_client import (
    GpsdConnection,
    ReportError,
    Tpv,
    parse_report,
    parse_tpv,
)
from edge.types import Frame, GpsFix

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One TPV report as received: host arrival time plus what gpsd said."""

    received: float  # host epoch seconds when the line arrived
    mode: int
    lat: float | None
    lon: float | None
    heading: float | None
    speed_mps: float | None
    gps_time: float | None  # the receiver's time, epoch seconds (may be off, see module docstring)

    @property
    def has_fix(self) -> bool:
        return self.mode >= 2 and self.lat is not None and self.lon is not None


@dataclass(slots=True)
class GpsdStats:
    lines: int = 0
    reports: int = 0  # TPV reports kept
    fixes: int = 0  # of which with mode >= 2
    garbage: int = 0  # lines that were not valid reports
    outages: int = 0
    reconnects: int = 0  # recoveries after an outage
    connected: bool = False


class GpsdProvider:
    """GpsProvider reading gpsd at host:port in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2947,
        *,
        max_age_s: float = 2.0,
        history: int = 1024,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 0.25,
        idle_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        on_sample: Callable[[Sample], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.host, self.port, self.max_age_s = host, port, max_age_s
        self._conn = GpsdConnection(host, port, connect_timeout=connect_timeout_s, read_timeout=read_timeout_s)
        self._idle_timeout_s = idle_timeout_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._on_sample, self._clock = on_sample, clock
        self._history: collections.deque[Sample] = collections.deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats = GpsdStats()
        self._outage_since: float | None = None
        self._garbage_log = RateLimitedLog(log, logging.WARNING, 60.0)

    # --- GpsProvider -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="gpsd-reader", daemon=True)
        self._thread.start()

    def fix_for(self, frame: Frame) -> GpsFix:
        t = frame.captured_at
        with self._lock:
            sample = next((s for s in reversed(self._history) if s.received <= t), None)
        if sample is None or not sample.has_fix:
            return GpsFix(source="gpsd", status="no_fix")
        age = t - sample.received
        if age > self.max_age_s:
            return GpsFix(None, None, None, None, "gpsd", "stale", age_ms(age), sample.received)
        return GpsFix(sample.lat, sample.lon, sample.heading, sample.speed_mps, "gpsd", "ok", age_ms(age), sample.received)

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self._conn.connect_timeout + self._conn.read_timeout + 2.0)
            if thread.is_alive():
                log.warning("gpsd reader thread did not stop in time")
        self._conn.close()

    # --- introspection -----------------------------------------------------------------------
    def history(self) -> list[Sample]:
        """A copy of the recent reports, oldest first."""
        with self._lock:
            return list(self._history)

    def stats(self) -> GpsdStats:
        """A copy of the counters."""
        with self._lock:
            s = self._stats
            return GpsdStats(s.lines, s.reports, s.fixes, s.garbage, s.outages, s.reconnects, s.connected)

    # --- the reader --------------------------------------------------------------------------
    def handle_line(self, line: bytes, received: float) -> Sample | None:
        """Digest one line from gpsd (the thread's step; public for tests). Never raises."""
        with self._lock:
            self._stats.lines += 1
        try:
            obj = parse_report(line)
            if obj["class"] != "TPV":
                if obj["class"] == "ERROR":
                    log.warning("gpsd at %s:%d reports an error: %s", self.host, self.port, str(obj.get("message"))[:200])
                return None
            tpv: Tpv = parse_tpv(obj)
        except ReportError as exc:
            with self._lock:
                self._stats.garbage += 1
            self._garbage_log.log("garbage from gpsd at %s:%d: %s (line %.80r)", self.host, self.port, exc, line)
            return None
        sample = Sample(received, tpv.mode, tpv.lat, tpv.lon, tpv.track, tpv.speed, tpv.time)
        with self._lock:
            self._history.append(sample)
            self._stats.reports += 1
            self._stats.fixes += sample.has_fix
        if self._on_sample is not None:
            try:
                self._on_sample(sample)
            except Exception:
                log.exception("on_sample callback failed")
        return sample

    def run(self, stop: threading.Event) -> None:
        """Connect, read, reconnect with backoff until `stop` is set."""
        while not stop.is_set():
            try:
                self._conn.open()
            except OSError as exc:
                self._outage(f"cannot connect: {exc}")
                stop.wait(self._backoff.next())
                continue
            try:
                self._read_until_broken(stop)
            except OSError as exc:  # ConnectionError and the idle TimeoutError included
                self._outage(str(exc) or type(exc).__name__)
            except Exception:  # a bug must not kill the reader: log, count, reconnect
                log.exception("gpsd reader failed unexpectedly; reconnecting")
                self._outage("reader error")
            finally:
                self._conn.close()
                with self._lock:
                    self._stats.connected = False
            if not stop.is_set():
                stop.wait(self._backoff.next())

    def _read_until_broken(self, stop: threading.Event) -> None:
        last_line = time.monotonic()
        got_line = got_report = False
        while not stop.is_set():
            line = self._conn.read_line()
            now = time.monotonic()
            if line is None:
                if now - last_line > self._idle_timeout_s:
                    raise TimeoutError(f"no data for {self._idle_timeout_s:g} s")
                continue
            last_line = now
            if not got_line:  # connected means gpsd talks (it greets with VERSION), not just a TCP accept
                got_line = True
                self._recovered()
            if self.handle_line(line, self._clock()) is not None and not got_report:
                got_report = True
                self._backoff.reset()  # reset only once gpsd really delivers

    def _outage(self, why: str) -> None:
        with self._lock:
            self._stats.connected = False
            first = self._outage_since is None
            if first:
                self._outage_since = time.monotonic()
                self._stats.outages += 1
        if first:
            log.warning("gpsd at %s:%d unavailable (%s); retrying with backoff", self.host, self.port, why)
        else:
            log.debug("gpsd at %s:%d still unavailable (%s)", self.host, self.port, why)

    def _recovered(self) -> None:
        with self._lock:
            self._stats.connected = True
            since, self._outage_since = self._outage_since, None
            if since is not None:
                self._stats.reconnects += 1
        if since is not None:
            log.info(
                "gpsd at %s:%d connected after %.1f s unavailable (outage %d)",
                self.host, self.port, time.monotonic() - since, self._stats.outages,
            )
        else:
            log.info("gpsd at %s:%d connected", self.host, self.port)
