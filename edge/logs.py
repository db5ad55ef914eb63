"""The one logging set-up of every command: stderr lines, or journald records with structured fields for the service.

Journal fields set on every record (see `LogContext`): EDGE_STAGE (from `extra={"stage": ...}`, else the
logger name's stage part: `edge.detect.yolo` → `detect`), VEHICLE_ID, SESSION_ID, and DETECTION_ID when a
record carries `extra={"detection_id": ...}`. `systemd.journal.JournalHandler` adds CODE_FILE, CODE_LINE,
CODE_FUNC, LOGGER, THREAD_NAME and maps levels to syslog priorities: DEBUG 7, INFO 6, WARNING 4, ERROR 3,
CRITICAL 2.

Under systemd, `edge.native.capture_native_output()` turns what C libraries write to fds 1 and 2 into records
of `edge.native`, so that every journal entry of the service carries those fields.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from edge.service import under_systemd

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
SYSLOG_IDENTIFIER = "edge-detector"
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


def stage_of(logger_name: str) -> str:
    """`edge.detect.yolo` → `detect`, `edge.spool` → `spool`, `edge` → `edge`, `confluent_kafka.x` → `confluent_kafka`."""
    parts = logger_name.split(".")
    if parts[0] == "edge" and len(parts) > 1:
        return parts[1]
    return parts[0]


class LogContext(logging.Filter):
    """Puts the journal fields on each record as attributes (the JournalHandler sends upper-case attributes)."""

    def __init__(self, **fields: object):
        super().__init__()
        self._fields: dict[str, str] = {}
        self.update(**fields)

    def update(self, **fields: object) -> None:
        """E.g. `update(session_id=...)` once the session is known; an empty value removes the field."""
        merged = dict(self._fields)
        for key, value in fields.items():
            if value in (None, ""):
                merged.pop(key.upper(), None)
            else:
                merged[key.upper()] = str(value)
        self._fields = merged  # swapped whole: readers on other threads see the old or the new dict

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        attrs.setdefault("EDGE_STAGE", str(attrs.get("stage") or stage_of(record.name)))
        for key, value in self._fields.items():
            attrs.setdefault(key, value)
        if attrs.get("detection_id") is not None:
            attrs.setdefault("DETECTION_ID", str(attrs["detection_id"]))
        return True


class RateLimitFilter(logging.Filter):
    """Lets the same (logger, message template, level) through at most `burst` times per `window_s`.

    The rest are dropped and counted; when that key's window has passed, one summary record
    "<last message> … repeated N times in the last T s" goes to `emit` (normally the handler's `handle`),
    just before the next record of any kind, or on `flush()`. Records below `min_level` are never limited.
    """

    SUMMARY_ATTR = "edge_rate_summary"

    def __init__(self, burst: int = 10, window_s: float = 60.0, *, min_level: int = logging.WARNING,
                 emit: Callable[[logging.LogRecord], object] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1000):
        super().__init__()
        if burst < 1 or window_s <= 0:
            raise ValueError(f"burst must be ≥ 1 and window_s > 0, got {burst} and {window_s}")
        self.burst, self.window_s, self.min_level = burst, window_s, min_level
        self.emit, self.clock, self.max_keys = emit, clock, max_keys
        self._lock = threading.Lock()
        # key -> [window start, records seen in the window, suppressed, last suppressed record]
        self._windows: dict[tuple[str, str, int], list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, self.SUMMARY_ATTR, False):
            return True
        now = self.clock()
        passed = True
        with self._lock:
            summaries = self._expire(now)
            if record.levelno >= self.min_level:
                key = (record.name, str(record.msg), record.levelno)
                window = self._windows.setdefault(key, [now, 0, 0, None])
                window[1] += 1
                if window[1] > self.burst:
                    window[2] += 1
                    window[3] = record
                    passed = False
        self._send(summaries)
        return passed

    def flush(self, *, force: bool = False) -> int:
        """Emits the summaries that are due (all pending ones with `force`); returns how many."""
        with self._lock:
            summaries = self._expire(self.clock(), force=force)
        self._send(summaries)
        return len(summaries)

    def _expire(self, now: float, *, force: bool = False) -> list[logging.LogRecord]:
        summaries = []
        for key, (start, _seen, suppressed, last) in list(self._windows.items()):
            if now - start < self.window_s and not force:
                continue
            if suppressed:
                summaries.append(self._summary(last, suppressed, now - start))
            del self._windows[key]
        while len(self._windows) >= self.max_keys:  # bounded (room for one more): forget the oldest first
            _key, (start, _seen, suppressed, last) = next(iter(self._windows.items()))
            del self._windows[_key]
            if suppressed:
                summaries.append(self._summary(last, suppressed, now - start))
        return summaries

    def _summary(self, last: logging.LogRecord, count: int, elapsed: float) -> logging.LogRecord:
        attrs = dict(last.__dict__)
        created = time.time()
        attrs.update(msg="%s … repeated %d times in the last %.0f s", args=(last.getMessage(), count, elapsed),
                     exc_info=None, exc_text=None, stack_info=None, created=created,
                     msecs=(created - int(created)) * 1000, **{self.SUMMARY_ATTR: True})
        attrs.pop("message", None)
        return logging.makeLogRecord(attrs)

    def _send(self, summaries: list[logging.LogRecord]) -> None:
        if self.emit is not None:
            for summary in summaries:
                self.emit(summary)


_installed: RateLimitFilter | None = None
_atexit_registered = False


def flush_log_summaries(*, force: bool = False) -> int:
    """Emits due "… repeated N times" summaries of the logging set up by `setup_logging` (call it now and then)."""
    return _installed.flush(force=force) if _installed is not None else 0


def _journal_handler(send: Callable[..., object] | None) -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
        from systemd.journal import send as journal_send
    except ImportError:
        return None
    if send is None and not JOURNAL_SOCKET.exists():
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER, sender_function=journal_send if send is None else send)


def setup_logging(level: str | int = "INFO", *, service: bool = False, vehicle_id: str = "", session_id: str = "",
                  env: Mapping[str, str] | None = None, stream=None,  # noqa: ANN001 - a text stream
                  journal_send: Callable[..., object] | None = None,
                  burst: int = 10, window_s: float = 60.0) -> LogContext:
    """Root logging of every command: one line per record on stderr (`stream`).

    The service (`service=True`) under systemd logs to journald with the structured fields, and identical
    warnings and errors beyond `burst` per `window_s` are summarised (`RateLimitFilter`). Commands keep
    plain stderr even under systemd: their caller reads it (install.sh, a unit's ExecStartPre).
    Replaces the root handlers. Returns the `LogContext`, whose `update(session_id=...)` changes the fields
    later.
    """
    global _installed, _atexit_registered
    handler = _journal_handler(journal_send) if service and under_systemd(env) else None
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
    context = LogContext(vehicle_id=vehicle_id, session_id=session_id)
    handler.addFilter(context)
    limiter = RateLimitFilter(burst, window_s, emit=handler.handle) if service else None
    if limiter is not None:
        handler.addFilter(limiter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _installed = limiter
    if not _atexit_registered:
        atexit.register(flush_log_summaries, force=True)
        _atexit_registered = True
    return context
