"""The writer-thread half of Spool: group commit, room under max_bytes and on a full disk, eviction."""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from edge.spool.disk import DiskReserve
from edge.spool.mark import MarkKeeper
from edge.spool.records import SpoolClosed, SpoolError, SpoolFull
from edge.spool.schema import COLUMNS, WIDTH

log = logging.getLogger(__name__)

_CHUNK = 500  # host parameters per IN (...) list
_EVICT_LOG_EVERY_S = 10.0
RETRY_MIN_S, RETRY_MAX_S = 0.05, 1.0  # disk-full retry backoff
ACK_INTERVAL_S, ACK_BATCH = 0.1, 10_000  # a commit holding only acks/releases: at most this late, or this many
DISK_RECHECK_S = 1.0  # disk full: how often to look whether there is room again
_DISK_FULL_EVICT_FACTOR = 1.5  # disk full: pages an append needs per payload byte (row overhead included)
# Acks arrive as runs of consecutive seqs (the flusher leases in order): one range per run is one b-tree descent
# instead of one per record, about 40 % less writer CPU per ack than an IN (...) list.
_DELETE_RANGE = "DELETE FROM pending WHERE seq BETWEEN ? AND ? RETURNING seq, size"


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct seqs as inclusive (first, last) runs of consecutive numbers."""
    out: list[tuple[int, int]] = []
    first = last = None
    for s in sorted(set(seqs)):
        if last is not None and s == last + 1:
            last = s
            continue
        if first is not None:
            out.append((first, last))
        first = last = s
    if first is not None:
        out.append((first, last))
    return out


def chunks(seq: Sequence[int], n: int = _CHUNK) -> Iterable[Sequence[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def marks(n: int) -> str:
    return ",".join("?" * n)


class PendingAppend:
    """One append call waiting for the writer thread; `rows` empty means a flush barrier."""

    __slots__ = ("rows", "size", "future", "deadline")

    def __init__(self, rows: list[tuple], size: int, deadline: float | None):
        self.rows = rows
        self.size = size
        self.future: Future[None] = Future()
        self.deadline = deadline


class Work:
    __slots__ = ("appends", "acks", "attempts")

    def __init__(self, appends: list[PendingAppend], acks: list[int], attempts: dict[int, int]):
        self.appends, self.acks, self.attempts = appends, acks, attempts


class GroupCommit:
    """Mixed into Spool, sharing its state (see the lock order in store.py). One thread takes what
    appends, acks and releases have queued and writes it in one transaction per commit_interval_ms
    or commit_batch items; only this thread writes appends, so seq follows commit order.
    Future callbacks run on this thread (under _cv for expired appends): keep them short."""

    # Set up by Spool.__init__; declared here for readers and type checkers.
    path: Path
    policy: str
    max_bytes: int
    _interval: float
    _batch: int
    _page_size: int
    _wlock: threading.Lock
    _state: threading.Lock
    _cv: threading.Condition
    _counters: dict[str, int]
    _cursor: int
    _leased: dict[int, int]
    _released: dict[int, int]
    _acking: set[int]
    _evicting: dict[int, int]
    _inbox: collections.deque[PendingAppend]
    _inbox_items: int
    _barriers: int
    _acks: list[int]
    _attempts: dict[int, int]
    _work_since: float | None
    _space_wait: bool
    _retry_at: float | None
    _retry_s: float
    _stopping: bool
    _disk_full_since: float | None
    _disk_evict_bytes: int
    _disk_check_at: float
    _reserve: DiskReserve
    _evict_note: list[tuple[int, int, float]]
    _evict_log: list[Any]
    _over_budget_logged: bool
    _tx: Callable[..., Any]
    _checkpoint: Callable[[], None]
    _is_disk_full: Callable[[BaseException], bool]
    _set_disk_full: Callable[[BaseException], None]
    _mark: MarkKeeper
    _appended: threading.Event

    def _run(self) -> None:
        while True:
            with self._cv:
                work = self._next_work()
            if work is None:
                return
            try:
                self._commit(work)
            except Exception as exc:  # keep the writer alive whatever happens; callers get the error
                log.exception(
                    "spool %s: writer failed on %d appends, %d acks", self.path, len(work.appends), len(work.acks)
                )
                self._finish(work.appends, SpoolError(f"{self.path}: write failed: {exc}"))

    def _next_work(self) -> Work | None:
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
                self._disk_check_at = now + DISK_RECHECK_S  # an empty commit re-checks for room
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
            # acks and releases alone wait longer: losing them in a crash is a redelivery, not a loss, and at drain
            # rates one commit (an fsync, a mark write, a range delete) per ACK_BATCH acks instead of per 500
            interval, batch = (self._interval, self._batch) if items else (max(self._interval, ACK_INTERVAL_S), ACK_BATCH)
            due = self._work_since is not None and now - self._work_since >= interval
            if items >= self._batch or updates >= batch or due or barriers or (self._space_wait and self._acks):
                return self._take()
            self._cv.wait(self._wait_s(now, (self._work_since or now) + interval))

    def _wait_s(self, now: float, until: float | None) -> float | None:
        stalled = self._space_wait or self._retry_at is not None
        ends = [a.deadline for a in self._inbox if a.deadline is not None] if stalled else []
        if until is not None:
            ends.append(until)
        if self._disk_full_since is not None:
            ends.append(self._disk_check_at)
        return max(0.0, min(ends) - now) if ends else None

    def _take(self) -> Work:
        appends: list[PendingAppend] = []
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
        return Work(appends, acks, attempts)

    def _expire(self, now: float) -> None:
        expired = [a for a in self._inbox if a.deadline is not None and a.deadline <= now]
        if not expired:
            return
        reason = "disk full" if self._disk_full_since is not None else f"spool full (max_bytes={self.max_bytes})"
        keep = [a for a in self._inbox if not (a.deadline is not None and a.deadline <= now)]
        self._inbox = collections.deque(keep)
        for a in expired:
            self._inbox_items -= len(a.rows)
            a.future.set_exception(
                SpoolFull(f"{self.path}: {reason}: no room for {len(a.rows)} records within the timeout")
            )
        if not self._inbox:
            self._space_wait = False

    def _fail_inbox(self, exc: Exception) -> None:
        for a in self._inbox:
            a.future.set_exception(exc)
        self._inbox.clear()
        self._inbox_items = self._barriers = 0

    def _commit(self, work: Work) -> None:
        """One transaction: deletes for acks, attempt updates, then the appends that fit."""
        unfit: list[PendingAppend] = []
        was_full = self._disk_full_since is not None

        def body(c: sqlite3.Cursor, d: collections.Counter) -> None:
            for run in runs(work.acks):  # every seq of a run was acked: the range deletes nothing else
                gone = c.execute(_DELETE_RANGE, run).fetchall()
                d["depth"] -= len(gone)
                d["bytes"] -= sum(s for _, s in gone)
                d["acked_total"] += len(gone)
                d["removed_above"] += self._mark.count_above(q for q, _ in gone)
            if work.attempts:
                updates = [(a, s) for s, a in work.attempts.items()]
                c.executemany("UPDATE pending SET attempts = ? WHERE seq = ?", updates)
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
                c.executemany(f"INSERT INTO pending ({COLUMNS}) VALUES ({marks(WIDTH)})", rows)
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
        self._retry_s = RETRY_MIN_S
        with self._state:
            self._acking.difference_update(work.acks)
        self._finish(work.appends, None)
        if any(a.rows for a in work.appends):
            self._appended.set()
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
        self, c: sqlite3.Cursor, d: collections.Counter, appends: list[PendingAppend]
    ) -> tuple[list[PendingAppend], list[PendingAppend]]:
        """Split appends (in order) into those written now and those that wait (policy block), evicting
        for them under drop_oldest. While the disk is full the file cannot grow, so new rows must fit
        in the free pages that acks (block) or evictions (drop_oldest) leave behind."""
        room = self.max_bytes - (self._counters["bytes"] + d["bytes"])
        disk_room: int | None = None
        if self._disk_full_since is not None and appends:
            disk_room = (c.execute("PRAGMA freelist_count").fetchone()[0] - 1) * self._page_size
        if self.policy == "block":
            fit: list[PendingAppend] = []
            late: list[PendingAppend] = []
            for a in appends:
                cost = int(a.size * _DISK_FULL_EVICT_FACTOR)
                if late or (a.rows and (a.size > room or (disk_room is not None and cost > disk_room))):
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
        if need > 0 and size > 0:  # a flush barrier alone evicts nothing
            self._evict(c, d, need)
            if self._counters["bytes"] + d["bytes"] + size > self.max_bytes and not self._over_budget_logged:
                self._over_budget_logged = True
                log.warning("spool %s: over max_bytes: the rest is in flight and cannot be evicted", self.path)
        return appends, []

    def _on_write_error(self, work: Work, unfit: list[PendingAppend], exc: sqlite3.Error) -> None:
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
                self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)

    def _evict_for_disk(self, appends: list[PendingAppend]) -> int:
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

    def _finish(self, appends: list[PendingAppend], exc: Exception | None) -> None:
        for a in appends:
            if a.future.done():
                continue
            if exc is None:
                a.future.set_result(None)
            else:
                a.future.set_exception(exc)

    def _evict(self, c: sqlite3.Cursor, d: collections.Counter, need: int) -> int:
        """Delete the oldest pending records nobody holds until `need` bytes are freed; returns bytes freed."""
        chosen: list[int] = []
        freed = 0
        oldest: float | None = None
        with self._state:
            candidates = sorted(self._released)
            for chunk in chunks(candidates):
                q = f"SELECT seq, size, enqueued_at FROM pending WHERE seq IN ({marks(len(chunk))}) ORDER BY seq"
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
        for run in runs(chosen):
            gone = c.execute(_DELETE_RANGE, run).fetchall()
            freed += sum(s for _, s in gone)
            d["depth"] -= len(gone)
            d["evicted_total"] += len(gone)
            d["removed_above"] += self._mark.count_above(q for q, _ in gone)
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
