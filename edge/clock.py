"""The one clock format: Unix seconds ⇄ ISO 8601 UTC with a Z (events, status, logs, file names)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

Precision = Literal["seconds", "milliseconds"]


def iso_utc(epoch: float, timespec: Precision = "milliseconds") -> str:
    """Epoch seconds → `YYYY-MM-DDTHH:MM:SS.mmmZ` (or to the second); microseconds rounded as datetime does."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_or_dash(epoch: float | None, timespec: Precision = "milliseconds") -> str:
    """`iso_utc`, or "-" for a time that is unknown or out of datetime's range (a garbage GPS time)."""
    if epoch is None:
        return "-"
    try:
        return iso_utc(epoch, timespec)
    except (OverflowError, OSError, ValueError):
        return repr(epoch)


def compact_utc(epoch: float) -> str:
    """`YYYYMMDDTHHMMSSZ`: a time in a file name."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def parse_iso_time(text: str) -> float:
    """ISO 8601 → Unix seconds. A trailing Z (or z) or an offset is honoured; a time without one is UTC.
    Raises ValueError when the text is not ISO 8601."""
    t = text.strip()
    if t.endswith("z"):
        t = t[:-1] + "Z"
    parsed = dt.datetime.fromisoformat(t)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()
