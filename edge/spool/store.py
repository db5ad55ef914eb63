"""The spool: a durable, bounded on-disk queue of serialised events between the pipeline and Kafka."""

# Invariants
#  1. Safe once committed. An appended record is durable when the SQLite transaction holding it has
#     committed (WAL with synchronous=FULL: the WAL is fsynced before COMMIT returns). append()
#     returns only after that commit; the future of append_nowait() resolves at that moment.
#  2. Deleted only after ack. A record leaves `pending` only when Kafka acknowledged it (ack), when
#     it is dead-lettered (moved to `dead` with the error), when drop_oldest evicts it (counted in
#     evicted_total and logged with the age of the oldest evicted), or when it fails its checksum
#     (moved to `quarantine` with the reason). Nothing is dropped silently.
#  3. At-least-once. Leases live in memory only. After a restart or a crash every committed, un-acked
#     record is pending again and is delivered again; acks are group-committed as well, so an ack
#     lost in a crash is one more redelivery. Consumers dedupe on detection_id.
#  4. Order. seq grows with commit order. lease() hands out the oldest pending record that is not
#     leased; a released record comes before newer ones again.
#  5. Bounded. meta.bytes (sum of key + value sizes of pending records) changes in the same
#     transaction as the rows, so it is exact and read in O(1). It stays <= max_bytes except by
#     records in flight (drop_oldest never evicts a leased record) and by requeue_dead().
#  6. Integrity. Every row carries schema_version and a CRC32 that every read checks. The file
#     carries its format in PRAGMA user_version: a newer one is refused with SpoolError, a corrupt
#     file is moved aside (kept, never deleted) and salvaged row by row into a fresh spool.
#  7. Threads. One writer thread owns appends, acks and releases (group commit) on the writer
#     connection; dead_letter/requeue_dead/purge_dead/quarantine use that connection under its lock.
#     Readers (lease, peek, stats) use a second connection: WAL lets them read while the writer commits.
#     Lock order: _wlock, then _state, then _rlock; _cv is never held while taking another lock.

from __future__ import annotations

import collections
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from edge.spool.records import (
    RecoveryReport,
    SpoolClosed,
    SpoolError,
    SpoolFull,
    SpoolItem,
    SpoolRecord,
    SpoolStats,
    checksum,
)
from edge.spool.disk import DiskReserve, free_bytes, is_disk_full
from edge.spool.salvage import salvage
from edge.spool.schema import COLUMNS, COUNTERS, connect, open_checked, row_to_record

log = logging.getLogger(__name__)

WhenFull = Literal["drop_oldest", "block"]
_CHUNK = 500  # host parameters per IN (...) list
_EVICT_LOG_EVERY_S = 10.0
_RETRY_MIN_S, _RETRY_MAX_S = 0.05, 1.0  # disk-full retry backoff
_DISK_RECHECK_S = 1.0  # disk full: how often to look whether there is room again
_DISK_FULL_EVICT_FACTOR = 1.5  # disk full, drop_oldest: evict this much more than an append adds (row overhead)


def _chunks(seq: Sequence[int], n: int = _CHUNK) -> Iterable[Sequence[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class _Append:
    """One append call waiting for the writer thread; `rows` empty means a flush barrier."""

    __slots__ = ("rows", "size", "future", "deadline")

    def __init__(self, rows: list[tuple], size: int, deadline: float | None):
        self.rows = rows
        self.size = size
        self.future: Future[None] = Future()
        self.deadline = deadline


class _Work:
    __slots__ = ("appends", "acks", "attempts")

    def __init__(self, appends: list[_Append], acks: list[int], attempts: dict[int, int]):
        self.appends, self.acks, self.attempts = appends, acks, attempts


class Spool:
    """SQLite-backed queue: append (durable, group-committed), lease/ack/release, dead letters, quarantine."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        recovery: RecoveryReport | None,
        *,
        max_bytes: int,
        when_full: WhenFull,
        commit_interval_ms: float,
        commit_batch: int,
    ):
        self.path = path
        self.recovery = recovery  # set when open() found the file corrupt and salvaged it
        self.max_bytes = max_bytes
        self.policy: WhenFull = when_full
        self._interval = commit_interval_ms / 1000.0
        self._batch = commit_batch
        self._cw, self._cr = writer, reader
        self._wlock = threading.Lock()  # the writer connection and its transactions
        self._rlock = threading.Lock()  # the reader connection
        self._state = threading.Lock()  # leases, cursor, counters
        self._counters = dict(writer.execute("SELECT name, value FROM meta").fetchall())
        self._counters = {n.decode(): v for n, v in self._counters.items()}
        for name in COUNTERS:
            self._counters.setdefault(name, 0)
        self._commits = 0
        self._page_size = writer.execute("PRAGMA page_size").fetchone()[0]
        # Lease state. Every pending seq <= _cursor is leased, being acked, being evicted or released.
        self._cursor = 0
        self._leased: dict[int, int] = {}  # seq -> attempts
        self._released: dict[int, int] = {}  # seq -> attempts so far (0: take the stored count)
        self._acking: set[int] = set()
        self._evicting: dict[int, int] = {}  # seq -> attempts, to restore if the eviction rolls back
        # Writer thread inbox.
        self._cv = threading.Condition(threading.RLock())  # re-entrant: future callbacks may append
        self._inbox: collections.deque[_Append] = collections.deque()
        self._inbox_items = 0
        self._barriers = 0
        self._acks: list[int] = []
        self._attempts: dict[int, int] = {}
        self._work_since: float | None = None
        self._space_wait = False  # head append does not fit (policy block): waits for acks
        self._retry_at: float | None = None  # disk full: next try
        self._retry_s = _RETRY_MIN_S
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        # Disk full and eviction reporting.
        self._disk_full_since: float | None = None
        self._disk_evict_bytes = 0
        self._disk_check_at = 0.0
        self._reserve = DiskReserve(path)
        self._evict_note: list[tuple[int, int, float]] = []  # this transaction: (count, bytes, oldest enqueued_at)
        self._evict_log = [0, 0, None, 0.0]  # count, bytes, oldest enqueued_at, last log time
        self._over_budget_logged = False
        if not self._reserve.make():
            log.warning("spool %s: no room for a %d-byte disk reserve; a full disk may stall the spool",
                        path, self._reserve.size)
        self._thread = threading.Thread(target=self._run, name=f"spool-writer:{path.name}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------------- open
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        max_bytes: int = 256 << 20,
        when_full: str = "drop_oldest",
        commit_interval_ms: float = 5.0,
        commit_batch: int = 500,
    ) -> Spool:
        """Open or create the spool at `path`; a corrupt file is moved aside and salvaged (see `recovery`)."""
        if when_full not in ("drop_oldest", "block"):
            raise ValueError(f"when_full must be 'drop_oldest' or 'block', got {when_full!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if commit_interval_ms <= 0 or commit_batch < 1:
            raise ValueError(f"commit_interval_ms must be > 0 and commit_batch >= 1, got {commit_interval_ms}, {commit_batch}")
        path = Path(path)
        try:
            writer, moved, reason = open_checked(path)
        except OSError as exc:
            raise SpoolError(f"{path}: cannot open spool: {exc}") from exc
        except sqlite3.Error as exc:
            raise SpoolError(f"{path}: cannot open spool: {exc}") from exc
        recovery = salvage(moved, writer, reason) if moved is not None else None
        reader = connect(path)
        spool = cls(
            path, writer, reader, recovery, max_bytes=max_bytes, when_full=when_full,  # type: ignore[arg-type]
            commit_interval_ms=commit_interval_ms, commit_batch=commit_batch,
        )
        s = spool._counters
        log.info(
            "spool %s opened: %d pending (%d bytes of %d), %d dead, %d quarantined, policy %s",
            path, s["depth"], s["bytes"], max_bytes, s["dead"], s["quarantined"], when_full,
        )
        return spool

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- append
    def append(self, items: Sequence[SpoolItem], timeout: float | None = None) -> None:
        """Write `items`; returns once they are committed. Raises SpoolFull (policy block: no room
        within `timeout`; disk full with nothing to evict) or SpoolClosed."""
        self.append_nowait(items, timeout).result()

    def append_nowait(self, items: Sequence[SpoolItem], timeout: float | None = None) -> Future[None]:
        """Queue `items` for the next group commit; the future resolves when they are durable
        (or fails with SpoolFull / SpoolClosed / SpoolError)."""
        now = time.time()
        rows, size = [], 0
        for it in items:
            if not isinstance(it.value, bytes):
                raise TypeError(f"SpoolItem.value must be bytes, got {type(it.value).__name__}")
            key, did = it.key.encode("utf-8"), it.detection_id.encode("utf-8")
            n = len(key) + len(it.value)
            captured = float(it.captured_at)
            crc = checksum(key, it.value, did, it.schema_version, captured)
            rows.append((it.key, it.value, it.detection_id, it.schema_version, captured, now, 0, n, crc))
            size += n
        if size > self.max_bytes:
            raise ValueError(f"append of {size} bytes can never fit in a spool of max_bytes={self.max_bytes}")
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = _Append(rows, size, deadline)
        if not rows:
            pending.future.set_result(None)
            return pending.future
        self._submit(pending)
        return pending.future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything appended, acked or released so far is committed; False on timeout."""
        barrier = _Append([], 0, None)
        try:
            self._submit(barrier)
            barrier.future.result(timeout)
        except TimeoutError:
            return False
        except SpoolError:
            return False
        return True

    def _submit(self, pending: _Append) -> None:
        with self._cv:
            if self._stopping:
                raise SpoolClosed(f"{self.path}: spool is closed")
            self._inbox.append(pending)
            self._inbox_items += len(pending.rows)
            self._barriers += not pending.rows
            if self._work_since is None:
                self._work_since = time.monotonic()
            self._cv.notify()

    # ------------------------------------------------------------------------------- lease and ack
    def lease(self, max_n: int) -> list[SpoolRecord]:
        """Up to `max_n` oldest pending records not already leased, oldest first; attempts counts this lease."""
        if max_n <= 0:
            return []
        out: list[SpoolRecord] = []
        bad: list[tuple[int, str]] = []
        with self._state:
            self._check_open()
            if self._released:
                take = sorted(self._released)[:max_n]
                tried = {s: self._released.pop(s) for s in take}
                rows = []
                for chunk in _chunks(take):
                    rows += self._read(
                        f"SELECT {COLUMNS} FROM pending WHERE seq IN ({_marks(len(chunk))}) ORDER BY seq", chunk, bad
                    )
                self._accept([(*r[:7], max(r[7], tried[r[0]]), *r[8:]) for r in rows], out, bad)
            while len(out) < max_n:
                rows = self._read(
                    f"SELECT {COLUMNS} FROM pending WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self._cursor, max_n - len(out)), bad, after=self._cursor,
                )
                if not rows:
                    break
                self._cursor = max(self._cursor, rows[-1][0])
                self._accept(rows, out, bad)
            if bad:
                self._cursor = max(self._cursor, max(s for s, _ in bad))
        if bad:
            self._quarantine("pending", bad)
        return out

    def _accept(self, rows: list[tuple], out: list[SpoolRecord], bad: list[tuple[int, str]]) -> None:
        for row in rows:
            seq = row[0]
            if seq in self._leased or seq in self._evicting or seq in self._acking:
                continue
            record, _, why = row_to_record(row, attempts_bump=1)
            if record is None:
                bad.append((seq, why))
                continue
            self._leased[seq] = record.attempts
            out.append(record)

    def ack(self, seqs: Iterable[int]) -> None:
        """Kafka acknowledged these: delete them (in the next group commit)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._state:
            for s in seqs:
                self._leased.pop(s, None)
                self._released.pop(s, None)
                self._acking.add(s)
        with self._cv:
            self._acks.extend(seqs)
            if self._work_since is None:
                self._work_since = time.monotonic()
            self._cv.notify()

    def release(self, seqs: Iterable[int]) -> None:
        """Delivery failed: back to pending, leased again before newer records; attempts are kept."""
        updates = {}
        with self._state:
            for s in seqs:
                attempts = self._leased.pop(s, None)
                if attempts is not None:
                    self._released[s] = attempts
                    updates[s] = attempts
        if updates:
            with self._cv:
                self._attempts.update(updates)
                if self._work_since is None:
                    self._work_since = time.monotonic()
                self._cv.notify()

    # -------------------------------------------------------------------- dead letters, quarantine
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
            record, _, why = row_to_record(row[:10])
            if record is None:
                bad.append((row[0], why))
                continue
            err = row[10].decode("utf-8", errors="replace") if isinstance(row[10], bytes) else str(row[10])
            out.append((record, err, float(row[11])))
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
            n = c.execute("DELETE FROM dead").rowcount
            d["dead"] -= n
            return n

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

    # --------------------------------------------------------------------------------------- reads
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
                out.append(dataclasses.replace(record, attempts=leased[record.seq]))
            else:
                out.append(record)
        if bad:
            with self._state:  # leased ones will not come back: they are gone from pending
                for seq, _ in bad:
                    self._leased.pop(seq, None)
                    self._released.pop(seq, None)
            self._quarantine("pending", bad)
        return out

    def stats(self) -> SpoolStats:
        with self._state:
            self._check_open()
            c = dict(self._counters)
            in_flight = len(self._leased)
            disk_full = self._disk_full_since is not None
        oldest = self._read("SELECT enqueued_at FROM pending ORDER BY seq LIMIT 1", (), [])
        age = max(0.0, time.time() - oldest[0][0]) if oldest and isinstance(oldest[0][0], float) else None
        return SpoolStats(
            depth=c["depth"], bytes=c["bytes"], oldest_age_s=age, in_flight=in_flight, dead=c["dead"],
            quarantined=c["quarantined"], evicted_total=c["evicted_total"], appended_total=c["appended_total"],
            acked_total=c["acked_total"], disk_full=disk_full, max_bytes=self.max_bytes, policy=self.policy,
        )

    @property
    def commits(self) -> int:
        """Write transactions committed since open (group commit makes this far smaller than appends)."""
        return self._commits

    def _read(self, sql: str, params: Sequence[Any], bad: list[tuple[int, str]], after: int | None = None) -> list[tuple]:
        """Run a read on the reader connection. When a damaged page makes the query fail and `after` is
        given, fall back to reading pending rows after that seq one by one; unreadable ones go to `bad`."""
        with self._rlock:
            try:
                return self._cr.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if after is None:
                    log.error("spool read failed (%s): %s", sql.split(" FROM ")[-1][:40], exc)
                    return []
                log.error("spool read failed after seq %d (%s); reading row by row", after, exc)
                try:
                    seqs = [s for (s,) in self._cr.execute(
                        "SELECT seq FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (after, params[-1])
                    ).fetchall()]
                except sqlite3.DatabaseError as exc2:
                    log.error("spool: pending table unreadable after seq %d: %s", after, exc2)
                    return []
                rows = []
                for seq in seqs:
                    try:
                        rows += self._cr.execute(f"SELECT {COLUMNS} FROM pending WHERE seq = ?", (seq,)).fetchall()
                    except sqlite3.DatabaseError as exc3:
                        bad.append((seq, f"unreadable: {exc3}"))
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
            changed = [(self._counters[k] + v, k) for k, v in d.items() if v]
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
            raise
        finally:
            c.close()
        with self._state:
            for value, name in changed:
                self._counters[name] = value
            self._evicting.clear()
        self._commits += 1
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

    def _evict(self, c: sqlite3.Cursor, d: collections.Counter, need: int) -> int:
        """Delete the oldest pending records nobody holds until `need` bytes are freed; returns bytes freed."""
        chosen: list[int] = []
        freed = 0
        oldest: float | None = None
        with self._state:
            candidates = sorted(self._released)
            for chunk in _chunks(candidates):
                q = f"SELECT seq, size, enqueued_at FROM pending WHERE seq IN ({_marks(len(chunk))}) ORDER BY seq"
                for seq, size, enq in c.execute(q, chunk).fetchall():
                    if freed >= need:
                        break
                    chosen.append(seq)
                    freed += size
                    oldest = enq if oldest is None else min(oldest, enq)
                if freed >= need:
                    break
            pos = self._cursor
            while freed < need:
                rows = c.execute(
                    "SELECT seq, size, enqueued_at FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (pos, _CHUNK)
                ).fetchall()
                if not rows:
                    break
                for seq, size, enq in rows:
                    pos = seq
                    if seq in self._leased or seq in self._acking:
                        continue
                    chosen.append(seq)
                    freed += size
                    oldest = enq if oldest is None else min(oldest, enq)
                    if freed >= need:
                        break
            for seq in chosen:
                self._evicting[seq] = self._released.pop(seq, 0)
        freed = 0
        for chunk in _chunks(chosen):
            sizes = c.execute(f"DELETE FROM pending WHERE seq IN ({_marks(len(chunk))}) RETURNING size", chunk).fetchall()
            freed += sum(s for (s,) in sizes)
            d["depth"] -= len(sizes)
            d["evicted_total"] += len(sizes)
        d["bytes"] -= freed
        if chosen:
            self._evict_note.append((len(chosen), freed, oldest if oldest is not None else time.time()))
        return freed

    def _log_evictions(self) -> None:
        count, size, oldest, last = self._evict_log
        for n, b, enq in self._evict_note:
            count, size = count + n, size + b
            oldest = enq if oldest is None else min(oldest, enq)
        self._evict_note = []
        now = time.monotonic()
        if last == 0.0 or now - last >= _EVICT_LOG_EVERY_S:
            log.warning(
                "spool %s full (%s): evicted %d oldest records (%d bytes), the oldest enqueued %.1f s ago; "
                "evicted_total=%d",
                self.path, "disk full" if self._disk_full_since is not None else f"max_bytes={self.max_bytes}",
                count, size, time.time() - oldest, self._counters["evicted_total"],
            )
            self._evict_log = [0, 0, None, now]
        else:
            self._evict_log = [count, size, oldest, last]

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
            self._disk_check_at = self._disk_full_since + _DISK_RECHECK_S
            log.warning("spool %s: disk full (%s); policy %s applies until writes succeed", self.path, exc, self.policy)

    def _checkpoint(self) -> None:
        """Let the WAL start over from its beginning so its space can be reused (disk full)."""
        try:
            self._cw.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.debug("spool: checkpoint failed: %s", exc)

    def _space_freed(self) -> None:
        with self._cv:
            self._space_wait = False
            self._cv.notify()

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosed(f"{self.path}: spool is closed")

    # ------------------------------------------------------------------------------- writer thread
    def _run(self) -> None:
        while True:
            with self._cv:
                work = self._next_work()
            if work is None:
                return
            try:
                self._commit(work)
            except Exception as exc:  # keep the writer alive whatever happens; callers get the error
                log.exception("spool %s: writer failed on %d appends, %d acks", self.path, len(work.appends), len(work.acks))
                self._finish(work.appends, SpoolError(f"{self.path}: write failed: {exc}"))

    def _next_work(self) -> _Work | None:
        """Wait (holding _cv) until there is something to commit; None when closed and drained."""
        while True:
            now = time.monotonic()
            stalled = self._space_wait or self._retry_at is not None
            if stalled:
                self._expire(now)
            if self._stopping:
                if stalled and self._inbox:
                    self._fail_inbox(SpoolClosed(f"{self.path}: closed while the append waited for room"))
                if not self._inbox and not self._acks and not self._attempts:
                    return None
                return self._take()
            if self._disk_full_since is not None and now >= self._disk_check_at:
                self._disk_check_at = now + _DISK_RECHECK_S  # an empty commit re-checks for room
                return self._take()
            if self._retry_at is not None and now < self._retry_at:
                self._cv.wait(self._wait_s(now, self._retry_at))
                continue
            self._retry_at = None
            items = 0 if self._space_wait else self._inbox_items
            barriers = 0 if self._space_wait else self._barriers
            updates = len(self._acks) + len(self._attempts)
            if not items and not updates and not barriers:
                self._cv.wait(self._wait_s(now, None))
                continue
            due = self._work_since is not None and now - self._work_since >= self._interval
            if items >= self._batch or updates >= self._batch or due or barriers or (self._space_wait and self._acks):
                return self._take()
            self._cv.wait(self._wait_s(now, (self._work_since or now) + self._interval))

    def _wait_s(self, now: float, until: float | None) -> float | None:
        ends = [a.deadline for a in self._inbox if a.deadline is not None] if (self._space_wait or self._retry_at) else []
        if until is not None:
            ends.append(until)
        if self._disk_full_since is not None:
            ends.append(self._disk_check_at)
        return max(0.0, min(ends) - now) if ends else None

    def _take(self) -> _Work:
        appends: list[_Append] = []
        n = 0
        if not self._space_wait or self._stopping:
            while self._inbox and (not appends or n + len(self._inbox[0].rows) <= self._batch):
                a = self._inbox.popleft()
                appends.append(a)
                n += len(a.rows)
                self._barriers -= not a.rows
            self._inbox_items -= n
        acks, self._acks = self._acks, []
        attempts, self._attempts = self._attempts, {}
        more = self._inbox or self._acks
        self._work_since = time.monotonic() if more else None
        return _Work(appends, acks, attempts)

    def _expire(self, now: float) -> None:
        expired = [a for a in self._inbox if a.deadline is not None and a.deadline <= now]
        if not expired:
            return
        reason = "disk full" if self._disk_full_since is not None else f"spool full (max_bytes={self.max_bytes})"
        keep = [a for a in self._inbox if not (a.deadline is not None and a.deadline <= now)]
        self._inbox = collections.deque(keep)
        for a in expired:
            self._inbox_items -= len(a.rows)
            a.future.set_exception(SpoolFull(f"{self.path}: {reason}: no room for {len(a.rows)} records within the timeout"))
        if not self._inbox:
            self._space_wait = False

    def _fail_inbox(self, exc: Exception) -> None:
        for a in self._inbox:
            a.future.set_exception(exc)
        self._inbox.clear()
        self._inbox_items = self._barriers = 0

    def _commit(self, work: _Work) -> None:
        """One transaction: deletes for acks, attempt updates, then the appends that fit."""
        unfit: list[_Append] = []
        was_full = self._disk_full_since is not None

        def body(c: sqlite3.Cursor, d: collections.Counter) -> None:
            for chunk in _chunks(work.acks):
                sizes = c.execute(f"DELETE FROM pending WHERE seq IN ({_marks(len(chunk))}) RETURNING size", chunk).fetchall()
                d["depth"] -= len(sizes)
                d["bytes"] -= sum(s for (s,) in sizes)
                d["acked_total"] += len(sizes)
            if work.attempts:
                c.executemany("UPDATE pending SET attempts = ? WHERE seq = ?", [(a, s) for s, a in work.attempts.items()])
            fit, late = self._make_room(c, d, work.appends)
            unfit.extend(late)
            work.appends = fit
            seq = self._counters["last_seq"] + d["last_seq"]
            rows = []
            for a in fit:
                for r in a.rows:
                    seq += 1
                    rows.append((seq, *r))
            if rows:
                c.executemany(f"INSERT INTO pending ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                n, size = len(rows), sum(a.size for a in fit)
                d["last_seq"] += n
                d["depth"] += n
                d["bytes"] += size
                d["appended_total"] += n

        try:
            with self._wlock:
                self._tx(body)
        except sqlite3.Error as exc:
            self._on_write_error(work, unfit, exc)
            return
        self._retry_s = _RETRY_MIN_S
        with self._state:
            self._acking.difference_update(work.acks)
        self._finish(work.appends, None)
        with self._cv:
            if unfit and not self._stopping:
                self._inbox.extendleft(reversed(unfit))
                self._inbox_items += sum(len(a.rows) for a in unfit)
                self._barriers += sum(not a.rows for a in unfit)
                self._space_wait = True
            elif work.acks or (was_full and self._disk_full_since is None):
                self._space_wait = False
        if unfit and self._stopping:
            self._finish(unfit, SpoolClosed(f"{self.path}: closed while the append waited for room"))

    def _make_room(
        self, c: sqlite3.Cursor, d: collections.Counter, appends: list[_Append]
    ) -> tuple[list[_Append], list[_Append]]:
        """Split appends (in order) into those written now and those that wait (policy block), evicting
        for them under drop_oldest. While the disk is full the file cannot grow, so new rows must fit
        in the free pages that acks (block) or evictions (drop_oldest) leave behind."""
        room = self.max_bytes - (self._counters["bytes"] + d["bytes"])
        disk_room: int | None = None
        if self._disk_full_since is not None and appends:
            disk_room = (c.execute("PRAGMA freelist_count").fetchone()[0] - 1) * self._page_size
        if self.policy == "block":
            fit: list[_Append] = []
            late: list[_Append] = []
            for a in appends:
                cost = int(a.size * _DISK_FULL_EVICT_FACTOR)
                if late or a.size > room or (disk_room is not None and cost > disk_room):
                    late.append(a)
                    continue
                fit.append(a)
                room -= a.size
                if disk_room is not None:
                    disk_room -= cost
            return fit, late
        size = sum(a.size for a in appends)
        need = size - room
        if disk_room is not None:
            need = max(need, int(size * _DISK_FULL_EVICT_FACTOR) - disk_room)
        if need > 0:
            self._evict(c, d, need)
            if self._counters["bytes"] + d["bytes"] + size > self.max_bytes and not self._over_budget_logged:
                self._over_budget_logged = True
                log.warning("spool %s: over max_bytes: the rest is in flight and cannot be evicted", self.path)
        return appends, []

    def _on_write_error(self, work: _Work, unfit: list[_Append], exc: sqlite3.Error) -> None:
        """Disk full: apply the policy (drop_oldest evicts and retries, block retries later). Anything
        else, or disk full while closing: fail the appends and forget the acks (redelivered later)."""
        appends = work.appends + unfit
        full = self._is_disk_full(exc)
        if full:
            self._set_disk_full(exc)
        if not full or self._stopping:
            log.error("spool %s: write failed (%d appends failed, %d acks dropped: they will be redelivered): %s",
                      self.path, len(appends), len(work.acks), exc)
            with self._state:
                self._acking.difference_update(work.acks)
            closed = SpoolClosed(f"{self.path}: closed while the disk was full ({exc})")
            self._finish(appends, closed if full else SpoolError(f"{self.path}: write failed: {exc}"))
            return
        with self._wlock:
            released = self._reserve.release()
            self._checkpoint()
            freed = self._evict_for_disk(appends) if self.policy == "drop_oldest" else 0
        freed = freed or released  # with the reserve given up, the same work may now fit: retry at once
        if self.policy == "drop_oldest" and not freed:
            self._finish(appends, SpoolFull(f"{self.path}: disk full and nothing left to evict ({exc})"))
            appends = []
        if appends and not freed:
            log.debug("spool: disk full, %d appends wait for room", len(appends))
        with self._cv:
            self._inbox.extendleft(reversed(appends))
            self._inbox_items += sum(len(a.rows) for a in appends)
            self._barriers += sum(not a.rows for a in appends)
            self._acks[:0] = work.acks
            for s, a in work.attempts.items():
                self._attempts.setdefault(s, a)
            if self._work_since is None:
                self._work_since = time.monotonic()
            if not freed:
                self._retry_at = time.monotonic() + self._retry_s
                self._retry_s = min(_RETRY_MAX_S, self._retry_s * 2)

    def _evict_for_disk(self, appends: list[_Append]) -> int:
        """Disk full under drop_oldest: evict a growing amount of the oldest records. Caller holds _wlock."""
        want = sum(a.size for a in appends) * 2
        self._disk_evict_bytes = max(64 << 10, want, self._disk_evict_bytes * 2)
        try:
            freed = self._tx(lambda c, d: self._evict(c, d, self._disk_evict_bytes), clears_full=False)
        except sqlite3.Error as exc:
            log.debug("spool: eviction for disk space failed: %s", exc)
            return 0
        self._checkpoint()
        return freed

    def _finish(self, appends: list[_Append], exc: Exception | None) -> None:
        for a in appends:
            if a.future.done():
                continue
            if exc is None:
                a.future.set_result(None)
            else:
                a.future.set_exception(exc)

    # ------------------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close the files. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join()
            with self._state:
                self._closed = True
            with self._wlock:
                self._cw.close()
            with self._rlock:
                self._cr.close()
            log.info("spool %s closed", self.path)
