"""The GpsProvider interface, the fixed and none providers, and small shared helpers."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol, runtime_checkable

from edge.config import ConfigError
from edge.types import Frame, GpsFix


@runtime_checkable
class GpsProvider(Protocol):
    """Where the vehicle was when a frame was captured."""

    def start(self) -> None:
        """Open connections and start threads; returns at once."""

    def fix_for(self, frame: Frame) -> GpsFix:
        """The fix for the frame's capture time; never raises, nulls when unknown."""

    def close(self) -> None:
        """Stop threads and release connections; idempotent."""


class GpsConfigError(ConfigError, ValueError):
    """A GPS configuration that cannot run; `problems` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("config", problems)
        self.key = problems[0][0]


class NoneProvider:
    """No GPS at all: every frame gets source none, status no_fix."""

    def start(self) -> None:
        pass

    def fix_for(self, frame: Frame) -> GpsFix:
        return GpsFix.none()

    def close(self) -> None:
        pass


class FixedProvider:
    """A stationary camera: the configured position, valid at every capture time (age 0)."""

    def __init__(self, lat: float, lon: float, heading: float | None = None):
        if not (is_finite(lat) and -90.0 <= lat <= 90.0 and is_finite(lon) and -180.0 <= lon <= 180.0):
            raise GpsConfigError([("gps.fixed_lat", f"position out of range: {lat!r}, {lon!r}")])
        self._lat, self._lon = float(lat), float(lon)
        self._heading = None if heading is None else norm_heading(heading)

    def start(self) -> None:
        pass

    def fix_for(self, frame: Frame) -> GpsFix:
        return GpsFix(self._lat, self._lon, self._heading, None, "fixed", "ok", 0, frame.captured_at)

    def close(self) -> None:
        pass


def is_finite(x: object) -> bool:
    """A real number (not bool), finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def norm_heading(deg: float) -> float:
    """Degrees into [0, 360); float modulo can return 360.0 for tiny negatives, which is folded to 0."""
    h = float(deg) % 360.0
    return 0.0 if h >= 360.0 else h


def age_ms(seconds: float) -> int:
    """Seconds → whole milliseconds, clamped at 0."""
    return max(0, int(round(seconds * 1000.0)))


class RateLimitedLog:
    """Logs the first event at once, then at most one line per `interval_s`, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval_s: float = 60.0):
        self._logger, self._level, self._interval = logger, level, interval_s
        self._last = -math.inf
        self._suppressed = 0
        self._lock = threading.Lock()

    def log(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            self._logger.log(self._level, msg + " (%d similar suppressed)", *args, suppressed)
        else:
            self._logger.log(self._level, msg, *args)
