"""A read-only look at a spool (`edge queue stats|peek|dead`): no lock, no salvage, no quarantine, no writes."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from edge.spool.opening import in_use, open_for_reading
from edge.spool.records import SpoolClosed, SpoolError, SpoolRecord, SpoolStats
from edge.spool.schema import WIDTH, column_names, row_to_record, select_columns

log = logging.getLogger(__name__)


class SpoolReader:
    """Reads a spool another process may be writing (WAL lets it). Counts come from the tables themselves, not from
    meta; a record failing its checksum is reported and skipped, and left for the owner to quarantine. A file of an
    older format is read as it is (only a writer migrates it)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, max_bytes: int, policy: str):
        self.path = path
        self.max_bytes = max_bytes
        self.policy = policy
        self._conn: sqlite3.Connection | None = conn
        self._columns = {t: select_columns("stream" in column_names(conn, t)) for t in ("pending", "dead")}

    @classmethod
    def open(cls, path: str | Path, *, max_bytes: int, when_full: str) -> SpoolReader:
        """Raises SpoolUnavailable (cannot open it now) or SpoolError (corrupt, newer format, not a spool)."""
        path = Path(path)
        conn = open_for_reading(path)
        try:
            reader = cls(path, conn, max_bytes=max_bytes, policy=when_full)
        except sqlite3.Error as exc:  # its table layout unreadable: what open_for_reading reports for corruption
            conn.close()
            raise SpoolError(f"{path}: the spool's tables cannot be read ({exc}); a read-only command leaves it as "
                             "it is") from exc
        in_use(path, +1)
        return reader

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            in_use(self.path, -1)

    def stats(self) -> SpoolStats:
        c = self._live()
        c.execute("BEGIN")  # one snapshot for every figure
        try:
            meta = {n.decode(): v for n, v in c.execute("SELECT name, value FROM meta")}
            depth, size = c.execute("SELECT count(*), coalesce(sum(size), 0) FROM pending").fetchone()
            dead = c.execute("SELECT count(*) FROM dead").fetchone()[0]
            quarantined = c.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            oldest = c.execute("SELECT enqueued_at FROM pending ORDER BY seq LIMIT 1").fetchone()
        finally:
            c.execute("COMMIT")
        age = max(0.0, time.time() - oldest[0]) if oldest and isinstance(oldest[0], float) else None
        return SpoolStats(
            depth=depth, bytes=size, oldest_age_s=age, in_flight=0, dead=dead, quarantined=quarantined,
            evicted_total=meta.get("evicted_total", 0), appended_total=meta.get("appended_total", 0),
            acked_total=meta.get("acked_total", 0), disk_full=False, max_bytes=self.max_bytes, policy=self.policy,
            lost_total=meta.get("lost_total", 0),
        )

    def peek(self, n: int = 10) -> list[SpoolRecord]:
        """The oldest pending records."""
        rows = self._live().execute(f"SELECT {self._columns['pending']} FROM pending ORDER BY seq LIMIT ?",
                                    (n,)).fetchall()
        return [record for record in (self._check(row, "pending") for row in rows) if record is not None]

    def dead_letters(self, limit: int = 100) -> list[tuple[SpoolRecord, str, float]]:
        """Oldest dead letters: (record, error, when dead-lettered)."""
        rows = self._live().execute(
            f"SELECT {self._columns['dead']}, error, dead_at FROM dead ORDER BY seq LIMIT ?", (limit,)).fetchall()
        out = []
        for row in rows:
            record = self._check(row[:WIDTH], "dead")
            if record is not None:
                err, when = row[WIDTH:]
                out.append((record, err.decode("utf-8", errors="replace") if isinstance(err, bytes) else str(err),
                            float(when)))
        return out

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolClosed(f"{self.path}: spool reader is closed")
        return self._conn

    def _check(self, row: tuple, table: str) -> SpoolRecord | None:
        record, _, why = row_to_record(row)
        if record is None:
            log.warning("spool %s: record seq=%s of %s is damaged (%s); skipped here, the service quarantines it",
                        self.path, row[0], table, why)
        return record
