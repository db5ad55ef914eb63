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
#  4. Order. seq grows with commit order, one sequence for every stream (records.Stream: the topic a record goes
#     to). lease() hands out the oldest pending record that is not leased; a released record comes before newer ones.
#  5. Bounded. meta.bytes (sum of key + value sizes of pending records) changes in the same
#     transaction as the rows, so it is exact and read in O(1). It stays <= max_bytes except by
#     records in flight (drop_oldest never evicts a leased record) and by requeue_dead(). Every
#     open sets depth, bytes, dead, quarantined and last_seq from the tables (logged when they differ),
#     so no drift outlives a restart.
#  6. Integrity. Every row carries schema_version, stream and a CRC32 that every read checks. The file carries its
#     format in PRAGMA user_version: a newer one is refused with SpoolError, an older one migrated at open. Only a
#     corrupt file (SQLITE_CORRUPT, SQLITE_NOTADB, failed quick_check, missing tables) is moved aside
#     (kept, never deleted) and salvaged row by row into a fresh spool, in the same open, before
#     anything else is written; a marker file makes a crash mid-salvage redo it at the next open
#     (opening.py). A file that cannot be opened now (EMFILE, EACCES, EROFS, ENOENT, ENAMETOOLONG,
#     SQLITE_BUSY, ...) is SpoolUnavailable naming path and errno, and nothing on disk changes.
#     Read-only commands use reader.py (SQLite mode=ro): no lock, no move, no salvage, no writes.
#  7. Disk full (SQLITE_FULL / ENOSPC) is "full", never a crash: the reserve file (disk.py) is given up
#     so SQLite can checkpoint and delete, then drop_oldest evicts and retries, block waits and retries;
#     while the disk stays full new rows only reuse pages that evictions or acks freed. stats().disk_full
#     is set from the first failure until the reserve can be made again; each edge is logged once.
#  8. Threads. One writer thread (writer.py) owns appends, acks and releases (group commit) on the
#     writer connection; dead_letter/requeue_dead/purge_dead/quarantine use that connection under its
#     lock. Readers (lease, peek, stats) use a second connection: WAL lets them read while the writer
#     commits. Lock order: _wlock, then _state, then _rlock; _cv is never held while taking another
#     (except by future callbacks run on the writer thread).
#  9. One owner. A writable spool holds an exclusive flock on `<spool>.lock` (lock.py) from before
#     its file is looked at until close; the file names the owner's pid and command line. A second
#     writer gets SpoolBusy ("state dir X is in use by pid N (command)"), never a second connection
#     writing with stale in-memory counters. The kernel drops the lock of a process killed by SIGKILL.
# 10. No silent loss in the WAL. After a crash the newest commits may exist only in `-wal`; losing or
#     damaging it rolls back rows and meta alike. So `<spool>.mark` (mark.py), outside SQLite, is
#     rewritten after every commit with last_seq, base_seq (every commit up to it is in the database
#     file: the wal-index showed a complete checkpoint) and live_above (pending + dead records with
#     seq > base_seq). SQLite itself keeps every WAL frame up to the last valid commit; an open that
#     finds last_seq below the mark's logs "N events lost" at ERROR, adds N to meta.lost_total and
#     sets `wal_loss`: N = live_above minus the live records above base_seq still present (records
#     acked after the last checkpoint and brought back by the rollback make N smaller, never larger).
#     The mark is written after COMMIT returns, so it never claims more than is durable: a crash
#     between the two misses at most that one commit. It is fsynced at open, close and rebase only:
#     after a power cut it may lag (fewer events reported), which SIGKILL cannot cause.

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import get_args

from edge.spool.dead import DeadLetters
from edge.spool.disk import DiskReserve
from edge.spool.lock import OwnerLock
from edge.spool.mark import MarkKeeper
from edge.spool.opening import close_parts, in_use, open_parts
from edge.spool.records import (
    STREAMS,
    RecoveryReport,
    SpoolClosed,
    SpoolError,
    SpoolItem,
    SpoolRecord,
    SpoolStats,
    WalLoss,
    checksum,
)
from edge.spool.schema import COLUMNS, COUNTERS, row_to_record
from edge.spool.txn import Transactions
from edge.spool.writer import (
    RETRY_MIN_S,
    GroupCommit,
    PendingAppend,
    chunks,
    marks,
)
from edge.types import QueuePolicy

log = logging.getLogger(__name__)


class Spool(GroupCommit, DeadLetters, Transactions):
    """SQLite-backed queue: append (durable, group-committed), lease/ack/release, dead letters, quarantine.

    Its other halves: writer.py (the writer thread), dead.py (dead letters, quarantine, peek), txn.py (reads and
    one transaction with its counters)."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        recovery: RecoveryReport | None,
        *,
        max_bytes: int,
        when_full: QueuePolicy,
        commit_interval_ms: float,
        commit_batch: int,
        owner: OwnerLock,
        mark: MarkKeeper,
        wal_loss: WalLoss | None = None,
    ):
        """Take over the open connections, owner lock and mark (see open()), set up the state in named steps
        and start the writer thread."""
        self.path = path
        self.recovery = recovery  # set when open() found the file corrupt and salvaged it
        self.wal_loss = wal_loss  # set when open() found committed events missing (WAL lost or damaged)
        self._owner, self._mark = owner, mark  # the lock held until close(); the mark kept at every commit
        self.max_bytes = max_bytes
        self.policy: QueuePolicy = when_full
        self._interval = commit_interval_ms / 1000.0
        self._batch = commit_batch
        self._cw, self._cr = writer, reader
        self._wlock = threading.Lock()  # the writer connection and its transactions
        self._rlock = threading.Lock()  # the reader connection
        self._state = threading.Lock()  # leases, cursor, counters
        self._counters = {name: 0 for name in COUNTERS}
        self._counters.update((n.decode(), v) for n, v in writer.execute("SELECT name, value FROM meta"))
        self._commits = 0
        self._page_size = writer.execute("PRAGMA page_size").fetchone()[0]
        self._init_leases()
        self._init_inbox()
        self._init_disk_full()
        self._thread = threading.Thread(target=self._run, name=f"spool-writer:{path.name}", daemon=True)
        self._thread.start()

    def _init_leases(self) -> None:
        """Lease state. Every pending seq <= _cursor is leased, being acked, being evicted or released."""
        self._cursor = 0
        self._leased: dict[int, int] = {}  # seq -> attempts
        self._released: dict[int, int] = {}  # seq -> attempts so far (0: take the stored count)
        self._acking: set[int] = set()
        self._evicting: dict[int, int] = {}  # seq -> attempts, to restore if the eviction rolls back

    def _init_inbox(self) -> None:
        """The writer thread's inbox (appends, acks, barriers), its retry timing and the close flags."""
        self._cv = threading.Condition(threading.RLock())  # re-entrant: future callbacks may append
        self._inbox: collections.deque[PendingAppend] = collections.deque()
        self._inbox_items = 0
        self._barriers = 0
        self._acks: list[int] = []
        self._attempts: dict[int, int] = {}
        self._work_since: float | None = None
        self._space_wait = False  # head append does not fit (policy block): waits for acks
        self._retry_at: float | None = None  # disk full: next try
        self._retry_s = RETRY_MIN_S
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._appended = threading.Event()  # set by a commit that added records: wakes an idle flusher at once

    def _init_disk_full(self) -> None:
        """Disk-full and eviction reporting, and the disk reserve (made now; a warning when there is no room)."""
        self._disk_full_since: float | None = None
        self._disk_evict_bytes = 0
        self._disk_check_at = 0.0
        self._reserve = DiskReserve(self.path)
        self._evict_note: list[tuple[int, int, float]] = []  # this transaction: (count, bytes, oldest enqueued_at)
        self._evict_log = [0, 0, None, 0.0]  # count, bytes, oldest enqueued_at, last log time
        self._over_budget_logged = False
        if not self._reserve.make():
            log.warning("spool %s: no room for a %d-byte disk reserve; a full disk may stall the spool",
                        self.path, self._reserve.size)

    # ----------------------------------------------------------------------------------------- open
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        max_bytes: int = 256 << 20,
        when_full: QueuePolicy = "drop_oldest",
        commit_interval_ms: float = 0.0,
        commit_batch: int = 500,
        owner_name: str | None = None,
    ) -> Spool:
        """Open or create the spool at `path` and own it until close(): SpoolBusy ("<owner_name> is in use by pid N
        (command)") while another process does, SpoolUnavailable when it cannot be opened now (nothing changed).
        A corrupt file is moved aside and salvaged (see `recovery`); committed events found missing are
        reported (see `wal_loss`)."""
        if when_full not in get_args(QueuePolicy):
            raise ValueError(f"when_full must be one of {get_args(QueuePolicy)}, got {when_full!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if commit_interval_ms < 0 or commit_batch < 1:
            raise ValueError(
                f"commit_interval_ms must be >= 0 and commit_batch >= 1, got {commit_interval_ms}, {commit_batch}"
            )
        path = Path(path)
        owner, writer, reader, recovery, mark, loss = open_parts(path, owner_name or f"spool {path}")
        try:
            spool = cls(
                path, writer, reader, recovery, max_bytes=max_bytes, when_full=when_full,  # type: ignore[arg-type]
                commit_interval_ms=commit_interval_ms, commit_batch=commit_batch, owner=owner, mark=mark,
                wal_loss=loss,
            )
        except BaseException:
            close_parts(path, owner, writer, reader, mark)
            raise
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
            if it.stream not in STREAMS:  # a record no flusher could route: refused here, not quarantined later
                raise ValueError(f"SpoolItem.stream must be one of {sorted(STREAMS)}, got {it.stream!r}")
            stream = int(it.stream)  # stored and checksummed as a plain int
            key, did = it.key.encode("utf-8"), it.detection_id.encode("utf-8")
            n = len(key) + len(it.value)
            captured = float(it.captured_at)
            crc = checksum(key, it.value, did, it.schema_version, captured, stream)
            rows.append((it.key, it.value, it.detection_id, it.schema_version, captured, now, 0, n, crc, stream))
            size += n
        if size > self.max_bytes:
            raise ValueError(f"append of {size} bytes can never fit in a spool of max_bytes={self.max_bytes}")
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = PendingAppend(rows, size, deadline)
        if not rows:
            pending.future.set_result(None)
            return pending.future
        self._submit(pending)
        return pending.future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything appended, acked or released so far is committed; False on timeout
        (or when closed). Under policy block it also waits behind appends waiting for room."""
        barrier = PendingAppend([], 0, None)
        try:
            self._submit(barrier)
            barrier.future.result(timeout)
        except TimeoutError:
            return False
        except SpoolError:
            return False
        return True

    def _submit(self, pending: PendingAppend) -> None:
        with self._cv:
            if self._stopping:
                raise SpoolClosed(f"{self.path}: spool is closed")
            self._inbox.append(pending)
            self._inbox_items += len(pending.rows)
            self._barriers += not pending.rows
            if self._work_since is None:
                self._work_since = time.monotonic()
            self._cv.notify()

    def wait_appended(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a commit that added records; True when one came. Cleared on return: what a
        later commit adds sets it again, and what an earlier one added is already visible to `lease`."""
        came = self._appended.wait(timeout)
        self._appended.clear()
        return came

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
                for chunk in chunks(take):
                    sql = f"SELECT {COLUMNS} FROM pending WHERE seq IN ({marks(len(chunk))}) ORDER BY seq"
                    rows += self._read(sql, chunk, bad, seqs=chunk)
                self._accept([(*r[:7], max(r[7], tried[r[0]]), *r[8:]) for r in rows], out, bad)
            while len(out) < max_n:
                sql = f"SELECT {COLUMNS} FROM pending WHERE seq > ? ORDER BY seq LIMIT ?"
                rows = self._read(sql, (self._cursor, max_n - len(out)), bad, after=self._cursor)
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
        leased, evicting, acking, decode, keep = self._leased, self._evicting, self._acking, row_to_record, out.append
        for row in rows:  # per leased record: locals only (the flusher's drain rate depends on this loop)
            seq = row[0]
            if seq in leased or seq in evicting or seq in acking:
                continue
            record, _, why = decode(row, 1)
            if record is None:
                bad.append((seq, why))
                continue
            leased[seq] = record.attempts
            keep(record)

    def ack(self, seqs: Iterable[int]) -> None:
        """Kafka acknowledged these: delete them (in the next group commit)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._state:
            leased, released = self._leased, self._released
            for s in seqs:
                leased.pop(s, None)
                if released:
                    released.pop(s, None)
            self._acking.update(seqs)
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

    # --------------------------------------------------------------------------------------- reads
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
            lost_total=c["lost_total"],
        )

    @property
    def commits(self) -> int:
        """Write transactions committed since open (group commit makes this far smaller than appends)."""
        return self._commits

    def _space_freed(self) -> None:
        with self._cv:
            self._space_wait = False
            self._cv.notify()

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosed(f"{self.path}: spool is closed")

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
                self._mark.finish(self._cw)
                self._cw.close()
            with self._rlock:
                self._cr.close()  # the last connection: SQLite checkpoints and removes the WAL
            in_use(self.path, -1)
            self._mark.close()
            self._owner.release()
            log.info("spool %s closed", self.path)

