"""The spool's mark file: how far it had committed, kept outside SQLite so that a lost or damaged WAL shows."""

# Why a file of its own: the counters in `meta` live in the same database as the rows, so losing the WAL rolls
# them back together with the rows and nothing inside the database can tell. The mark is rewritten in place
# (one pwrite of a fixed-size, checksummed record) after every commit, and fsynced when it is rebased onto a
# complete checkpoint and at open and close; see invariant 10 in store.py for what is compared at open.

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.spool.records import WalLoss

log = logging.getLogger(__name__)

_MAGIC = b"EDGEMRK1"
_RECORD = struct.Struct("<8sqqqq")  # magic, last_seq, base_seq, live_above, live
_CRC = struct.Struct("<I")
SIZE = _RECORD.size + _CRC.size
# wal-index header (https://www.sqlite.org/walformat.html, section 2.1): two copies of a 48-byte header with
# mxFrame at offset 16, then the checkpoint info with nBackfill at offset 96; native byte order.
_SHM_HEAD = 136
_MX_FRAME, _N_BACKFILL = struct.Struct("=I"), struct.Struct("=I")


@dataclass(frozen=True, slots=True)
class Mark:
    last_seq: int  # the highest seq committed
    base_seq: int  # every commit up to this seq is in the database file itself (a complete checkpoint)
    live_above: int  # pending + dead records with seq > base_seq: what only the WAL holds
    live: int  # pending + dead records in all


def mark_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + ".mark")


class MarkFile:
    """The open mark file. Writes never allocate (the record is rewritten in place), so a full disk does not
    stop them; a failed write is logged once and the spool goes on (the mark is a witness, not the data)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._failed = False

    def read(self) -> Mark | None:
        """The stored mark; None when there is none yet or it is unreadable (logged)."""
        data = os.pread(self._fd, SIZE, 0)
        if not data:
            return None
        if len(data) != SIZE or _CRC.unpack_from(data, _RECORD.size)[0] != zlib.crc32(data[: _RECORD.size]):
            log.warning("spool mark %s is damaged (%d bytes): a lost WAL cannot be detected this time",
                        self.path, len(data))
            return None
        magic, *values = _RECORD.unpack_from(data)
        if magic != _MAGIC:
            log.warning("spool mark %s has an unknown format: a lost WAL cannot be detected this time", self.path)
            return None
        return Mark(*values)

    def write(self, mark: Mark, *, sync: bool = False) -> None:
        body = _RECORD.pack(_MAGIC, mark.last_seq, mark.base_seq, mark.live_above, mark.live)
        try:
            os.pwrite(self._fd, body + _CRC.pack(zlib.crc32(body)), 0)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            if not self._failed:
                log.warning("spool mark %s: write failed (%s): a lost WAL may go unnoticed", self.path, exc)
            self._failed = True
            return
        self._failed = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class WalIndex:
    """Reads the wal-index header in `-shm` to tell whether the WAL has been checkpointed completely.

    The descriptor stays open until every SQLite connection of the spool is closed: closing any descriptor of a
    file drops all POSIX locks this process holds on it, SQLite's own locks on -shm included."""

    def __init__(self, spool_path: Path):
        self.path = Path(f"{spool_path}-shm")
        self._fd: int | None = None

    def backfilled(self) -> bool:
        """True when every WAL frame has been copied into the database file; False whenever unsure. Called by
        the one writer right after its commit, so no other commit can change the header meanwhile."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        try:
            head = os.pread(self._fd, _SHM_HEAD, 0)
        except OSError:
            return False
        if len(head) < _SHM_HEAD or head[:48] != head[48:96] or not head[12]:  # copies differ, or not initialised
            return False
        return _MX_FRAME.unpack_from(head, 16)[0] == _N_BACKFILL.unpack_from(head, 96)[0]

    def close(self) -> None:
        """Only once the spool's SQLite connections are closed (see the class)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class MarkKeeper:
    """Keeps the mark in step with the spool. `base_seq` moves up to last_seq whenever a commit leaves the WAL
    completely checkpointed; `live_above` then starts again from 0 and follows appends and removals exactly.
    Every method runs on the writer connection's side (Spool._wlock held, or at open/close)."""

    def __init__(self, spool_path: Path):
        self.spool_path = spool_path
        self.base_seq = 0
        self.live_above = 0
        self._file = MarkFile(mark_path(spool_path))
        self._wal_index = WalIndex(spool_path)

    def loss(self, conn: sqlite3.Connection) -> WalLoss | None:
        """What the database misses of what the stored mark saw committed (None: nothing, or no mark yet)."""
        old = self._file.read()
        return measure_loss(conn, old) if old is not None else None

    def start(self, conn: sqlite3.Connection) -> None:
        """Begin a new mark from what the database holds now (after `loss()` was looked at and recorded)."""
        last_seq, live = _last_and_live(conn)
        self.base_seq, self.live_above = 0, live
        if _checkpointed(conn):
            self.base_seq, self.live_above = last_seq, 0
        self._file.write(Mark(last_seq, self.base_seq, self.live_above, live), sync=True)

    def count_above(self, seqs: Iterable[int]) -> int:
        """How many of these seqs (records leaving pending/dead) are above the base: what live_above loses."""
        return sum(1 for s in seqs if s > self.base_seq)

    def committed(self, last_seq: int, live: int, appended: int, removed_above: int) -> None:
        """After a commit: count it, and rebase when the WAL turns out fully checkpointed."""
        self.live_above += appended - removed_above
        rebased = self._wal_index.backfilled()
        if rebased:
            self.base_seq, self.live_above = last_seq, 0
        self._file.write(Mark(last_seq, self.base_seq, self.live_above, live), sync=rebased)

    def finish(self, conn: sqlite3.Connection) -> None:
        """At close, before the connections close: rebase onto a final checkpoint and sync."""
        try:
            last_seq, live = _last_and_live(conn)
            if _checkpointed(conn):
                self.base_seq, self.live_above = last_seq, 0
            self._file.write(Mark(last_seq, self.base_seq, self.live_above, live), sync=True)
        except sqlite3.Error as exc:
            log.warning("spool mark %s: not updated at close (%s)", self._file.path, exc)

    def close(self) -> None:
        """After the spool's SQLite connections are closed (see WalIndex). A failed open calls only this: the
        stored mark stays as it was, for the next open to compare."""
        self._wal_index.close()
        self._file.close()


def measure_loss(conn: sqlite3.Connection, old: Mark) -> WalLoss | None:
    """What the database misses of what the mark saw committed; None when it holds all of it."""
    last_seq, live = _last_and_live(conn)
    if last_seq >= old.last_seq:
        return None
    if last_seq >= old.base_seq:  # the database file is intact up to the base: only WAL frames are gone
        above = conn.execute(
            "SELECT (SELECT count(*) FROM pending WHERE seq > ?1) + (SELECT count(*) FROM dead WHERE seq > ?1)",
            (old.base_seq,),
        ).fetchone()[0]
        lost = old.live_above - above
    else:  # the database file itself is older than the last checkpoint (replaced, restored, rolled back)
        lost = old.live - live
    return WalLoss(old.last_seq, last_seq, max(0, lost))


def _last_and_live(conn: sqlite3.Connection) -> tuple[int, int]:
    meta = {n.decode() if isinstance(n, bytes) else n: v for n, v in conn.execute("SELECT name, value FROM meta")}
    return meta.get("last_seq", 0), meta.get("depth", 0) + meta.get("dead", 0)


def _checkpointed(conn: sqlite3.Connection) -> bool:
    """Run a checkpoint that waits for nobody; True when it copied the whole WAL into the database file."""
    busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy == 0 and frames == done
