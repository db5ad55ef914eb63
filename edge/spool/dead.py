"""The `edge queue` half of Spool: dead letters (move, list, requeue, purge), quarantine, and peek."""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.spool.mark import MarkKeeper
from edge.spool.records import SpoolRecord
from edge.spool.schema import COLUMNS, WIDTH, row_to_record

log = logging.getLogger("edge.spool.store")  # Spool's logger: these lines keep the name they always had


class DeadLetters:
    """Mixed into Spool, sharing its state (see the lock order in store.py). Dead letters and quarantine are
    written on the writer connection under its lock (`_write`); records that fail their checksum on any read
    are moved to `quarantine` with the reason (invariants 2 and 6)."""

    # Set up by Spool.__init__ and its other halves; declared here for readers and type checkers.
    _state: threading.Lock
    _cursor: int
    _leased: dict[int, int]
    _released: dict[int, int]
    _mark: MarkKeeper
    _check_open: Callable[[], None]
    _space_freed: Callable[[], None]
    _write: Callable[[Callable[[sqlite3.Cursor, collections.Counter], Any]], Any]
    _read: Callable[..., list[tuple]]
    _error: Callable[[str, sqlite3.Error], Exception]

    def dead_letter(self, seq: int, error: str) -> None:
        """Move a record to `dead` with the error; it stays there until requeue_dead() or purge_dead()."""
        with self._state:
            self._check_open()
            attempts = self._leased.pop(seq, None)
            attempts = self._released.pop(seq, attempts)

        def body(c: sqlite3.Cursor, d: collections.Counter) -> int:
            c.execute(
                f"INSERT INTO dead ({COLUMNS}, error, dead_at) SELECT {COLUMNS}, ?, ? FROM pending WHERE seq = ?",
                (error, time.time(), seq),
            )
            if attempts is not None:
                c.execute("UPDATE dead SET attempts = ? WHERE seq = ?", (attempts, seq))
            sizes = c.execute("DELETE FROM pending WHERE seq = ? RETURNING size", (seq,)).fetchall()
            d["depth"] -= len(sizes)
            d["bytes"] -= sum(s for (s,) in sizes)
            d["dead"] += len(sizes)
            return len(sizes)

        try:
            moved = self._write(body)
        except sqlite3.Error as exc:
            with self._state:
                if attempts is not None:
                    self._released[seq] = attempts
            raise self._error(f"dead_letter({seq})", exc) from exc
        if moved:
            log.warning("spool: record seq=%d dead-lettered after %s attempts: %s", seq, attempts, error)
            self._space_freed()
        else:
            log.warning("spool: dead_letter(%d): no such pending record (already acked or evicted)", seq)

    def dead_letters(self, limit: int = 100) -> list[tuple[SpoolRecord, str, float]]:
        """Oldest dead letters: (record, error, when dead-lettered)."""
        bad: list[tuple[int, str]] = []
        with self._state:
            self._check_open()
        rows = self._read(f"SELECT {COLUMNS}, error, dead_at FROM dead ORDER BY seq LIMIT ?", (limit,), bad)
        out = []
        for row in rows:
            record, _, why = row_to_record(row[:WIDTH])
            if record is None:
                bad.append((row[0], why))
                continue
            err, when = row[WIDTH:]
            text = err.decode("utf-8", errors="replace") if isinstance(err, bytes) else str(err)
            out.append((record, text, float(when)))
        if bad:
            self._quarantine("dead", bad)
        return out

    def requeue_dead(self) -> int:
        """Move every dead letter back to pending (keeping its seq); returns how many."""
        with self._state:
            self._check_open()

        def body(c: sqlite3.Cursor, d: collections.Counter) -> list[int]:
            rows = c.execute("SELECT seq, size FROM dead").fetchall()
            c.execute(f"INSERT INTO pending ({COLUMNS}) SELECT {COLUMNS} FROM dead")
            c.execute("DELETE FROM dead")
            d["dead"] -= len(rows)
            d["depth"] += len(rows)
            d["bytes"] += sum(s for _, s in rows)
            return [s for s, _ in rows]

        try:
            seqs = self._write(body)
        except sqlite3.Error as exc:
            raise self._error("requeue_dead", exc) from exc
        with self._state:
            self._released.update((s, 0) for s in seqs if s <= self._cursor)
        if seqs:
            log.info("spool: %d dead letters requeued", len(seqs))
        return len(seqs)

    def purge_dead(self) -> int:
        """Delete every dead letter; returns how many."""
        with self._state:
            self._check_open()

        def body(c: sqlite3.Cursor, d: collections.Counter) -> int:
            seqs = [s for (s,) in c.execute("DELETE FROM dead RETURNING seq").fetchall()]
            d["dead"] -= len(seqs)
            d["removed_above"] += self._mark.count_above(seqs)
            return len(seqs)

        try:
            n = self._write(body)
        except sqlite3.Error as exc:
            raise self._error("purge_dead", exc) from exc
        if n:
            log.warning("spool: %d dead letters purged", n)
        return n

    def quarantined(self, limit: int = 100) -> list[tuple[int, str, float]]:
        """Oldest quarantined records: (seq, reason, when)."""
        with self._state:
            self._check_open()
        rows = self._read("SELECT seq, reason, quarantined_at FROM quarantine ORDER BY qid LIMIT ?", (limit,), [])
        return [
            (seq, r.decode("utf-8", errors="replace") if isinstance(r, bytes) else str(r), float(when))
            for seq, r, when in rows
        ]

    def _quarantine(self, table: str, bad: list[tuple[int, str]]) -> None:
        """Move records that failed their checksum (or cannot be read) to `quarantine` with the reason."""
        now = time.time()

        def body(c: sqlite3.Cursor, d: collections.Counter) -> None:
            for seq, reason in bad:
                try:
                    c.execute(
                        f"INSERT INTO quarantine ({COLUMNS}, reason, quarantined_at) "
                        f"SELECT {COLUMNS}, ?, ? FROM {table} WHERE seq = ?",
                        (reason, now, seq),
                    )
                except sqlite3.DatabaseError as exc:  # the row itself is unreadable: keep what we know
                    c.execute(
                        "INSERT INTO quarantine (seq, reason, quarantined_at) VALUES (?, ?, ?)",
                        (seq, f"{reason}; row unreadable: {exc}", now),
                    )
                sizes = c.execute(f"DELETE FROM {table} WHERE seq = ? RETURNING size", (seq,)).fetchall()
                d["quarantined"] += 1
                d["removed_above"] += self._mark.count_above([seq] if sizes else [])
                if table == "pending":
                    d["depth"] -= len(sizes)
                    d["bytes"] -= sum(s for (s,) in sizes if isinstance(s, int))
                else:
                    d["dead"] -= len(sizes)

        try:
            self._write(body)
        except sqlite3.Error:
            log.exception("spool: could not quarantine %d records of %s: %s", len(bad), table, bad[:5])
            return
        for seq, reason in bad:
            log.error("spool: record seq=%d of %s quarantined: %s", seq, table, reason)

    def peek(self, n: int = 10) -> list[SpoolRecord]:
        """The oldest pending records (leased or not), without leasing them."""
        bad: list[tuple[int, str]] = []
        with self._state:
            self._check_open()
            leased = dict(self._leased)
        rows = self._read(f"SELECT {COLUMNS} FROM pending ORDER BY seq LIMIT ?", (n,), bad)
        out = []
        for row in rows:
            record, _, why = row_to_record(row)
            if record is None:
                bad.append((row[0], why))
            elif record.seq in leased:
                out.append(record._replace(attempts=leased[record.seq]))
            else:
                out.append(record)
        if bad:
            with self._state:  # leased ones will not come back: they are gone from pending
                for seq, _ in bad:
                    self._leased.pop(seq, None)
                    self._released.pop(seq, None)
            self._quarantine("pending", bad)
        return out
