"""The connection half of Spool: reads that step around damaged pages, one write transaction with its counters."""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge.spool.disk import DiskReserve, free_bytes, is_disk_full
from edge.spool.mark import MarkKeeper
from edge.spool.records import SpoolError, SpoolFull
from edge.spool.schema import COLUMNS
from edge.spool.writer import DISK_RECHECK_S

log = logging.getLogger("edge.spool.store")  # Spool's logger: these lines keep the name they always had


class Transactions:
    """Mixed into Spool, sharing its state (see the lock order in store.py). `_read` uses the reader connection
    under _rlock; `_tx` runs one transaction on the writer connection (caller holds _wlock), updates meta's
    counters in it, then the in-memory counters and the mark (invariants 1, 5, 7, 10)."""

    # Set up by Spool.__init__ and its other halves; declared here for readers and type checkers.
    path: Path
    policy: str
    _cw: sqlite3.Connection
    _cr: sqlite3.Connection
    _wlock: threading.Lock
    _rlock: threading.Lock
    _state: threading.Lock
    _counters: dict[str, int]
    _commits: int
    _cursor: int
    _released: dict[int, int]
    _evicting: dict[int, int]
    _evict_note: list[tuple[int, int, float]]
    _disk_full_since: float | None
    _disk_evict_bytes: int
    _disk_check_at: float
    _reserve: DiskReserve
    _mark: MarkKeeper
    _log_evictions: Callable[[], None]

    def _read(
        self,
        sql: str,
        params: Sequence[Any],
        bad: list[tuple[int, str]],
        *,
        seqs: Sequence[int] | None = None,
        after: int | None = None,
    ) -> list[tuple]:
        """Run a read on the reader connection. When a damaged page makes it fail, read the pending rows
        `seqs` (or the next ones after seq `after`) one by one instead; unreadable ones go to `bad`."""
        with self._rlock:
            try:
                return self._cr.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                log.error("spool read failed (%s): %s", sql.split(" FROM ")[-1][:60], exc)
                if seqs is None and after is None:
                    return []
            if seqs is None:
                try:
                    seqs = [s for (s,) in self._cr.execute(
                        "SELECT seq FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (after, params[-1])
                    ).fetchall()]
                except sqlite3.DatabaseError as exc:
                    log.error("spool: pending table unreadable after seq %s: %s", after, exc)
                    return []
            rows = []
            for seq in seqs:
                try:
                    rows += self._cr.execute(f"SELECT {COLUMNS} FROM pending WHERE seq = ?", (seq,)).fetchall()
                except sqlite3.DatabaseError as exc:
                    bad.append((seq, f"unreadable: {exc}"))
            return rows

    # -------------------------------------------------------------------------------------- writes
    def _write(self, body: Callable[[sqlite3.Cursor, collections.Counter], Any]) -> Any:
        with self._wlock:
            return self._tx(body)

    def _tx(self, body: Callable[[sqlite3.Cursor, collections.Counter], Any], *, clears_full: bool = True) -> Any:
        """Run `body` in one transaction and update the counters in meta with it. Caller holds _wlock.
        `clears_full`: a success means the disk has room again (not so for an eviction made for room)."""
        c = self._cw.cursor()
        d: collections.Counter = collections.Counter()
        self._evict_note = []
        c.execute("BEGIN IMMEDIATE")
        try:
            result = body(c, d)
            changed = [(self._counters[k] + v, k) for k, v in d.items() if v and k in self._counters]
            if changed:
                c.executemany("UPDATE meta SET value = ? WHERE name = ?", changed)
            c.execute("COMMIT")
        except BaseException:
            if self._cw.in_transaction:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    log.debug("spool: rollback failed", exc_info=True)
            with self._state:  # evictions did not happen: those records can be leased again
                self._released.update((s, a) for s, a in self._evicting.items() if s <= self._cursor)
                self._evicting.clear()
            self._evict_note = []
            self._reload_counters()
            raise
        finally:
            c.close()
        with self._state:
            for value, name in changed:
                self._counters[name] = value
            self._evicting.clear()
            last_seq, live = self._counters["last_seq"], self._counters["depth"] + self._counters["dead"]
        self._commits += 1
        self._mark.committed(last_seq, live, d["appended_total"], d["removed_above"])
        if self._disk_full_since is not None and clears_full:
            self._disk_evict_bytes = 0
            if self._reserve.make():  # the disk has room again, not just our own freed pages
                log.warning(
                    "spool %s: disk no longer full after %.1f s (%s bytes free)",
                    self.path, time.monotonic() - self._disk_full_since, free_bytes(self.path.parent),
                )
                self._disk_full_since = None
        if self._evict_note:
            self._log_evictions()
        return result

    def _reload_counters(self) -> None:
        """After a failed transaction: meta is the truth (a COMMIT that reported an I/O error may have landed)."""
        try:
            rows = self._cw.execute("SELECT name, value FROM meta").fetchall()
        except sqlite3.Error:
            return
        with self._state:
            self._counters.update((n.decode(), v) for n, v in rows)

    def _error(self, what: str, exc: sqlite3.Error) -> Exception:
        if self._is_disk_full(exc):
            self._set_disk_full(exc)
            return SpoolFull(f"{self.path}: {what}: disk full ({exc})")
        return SpoolError(f"{self.path}: {what} failed: {exc}")

    def _is_disk_full(self, exc: BaseException) -> bool:
        return is_disk_full(exc, self.path.parent)

    def _set_disk_full(self, exc: BaseException) -> None:
        if self._disk_full_since is None:
            self._disk_full_since = time.monotonic()
            self._disk_check_at = self._disk_full_since + DISK_RECHECK_S
            log.warning("spool %s: disk full (%s); policy %s applies until writes succeed", self.path, exc, self.policy)

    def _checkpoint(self) -> None:
        """Let the WAL start over from its beginning so its space can be reused (disk full)."""
        try:
            self._cw.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.debug("spool: checkpoint failed: %s", exc)
