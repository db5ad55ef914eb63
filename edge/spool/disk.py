"""Disk space for the spool: recognising "disk full" errors, and a reserve file given up to get out of one.

Why a reserve: in WAL mode every transaction, a delete included, appends to the WAL, and the WAL
only starts over after a checkpoint has copied it into the database file, which may need to grow.
On a full disk neither can happen, so nothing could be evicted or acked. Deleting the reserve
gives SQLite room to checkpoint and delete; after that the spool reuses its own free pages
(evicting first under drop_oldest), and the reserve is made again once the disk has room.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_BYTES = 2 << 20  # > one WAL autocheckpoint's worth of pages (schema.WAL_AUTOCHECKPOINT_PAGES)
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
_MARGIN_BYTES = 1 << 20
_ZEROS = bytes(64 << 10)


def is_disk_full(exc: BaseException, directory: Path) -> bool:
    """SQLITE_FULL, ENOSPC, or an I/O error while the file system has (almost) no space left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
        return True
    if isinstance(exc, sqlite3.Error) and "database or disk is full" in str(exc):
        return True
    if isinstance(code, int) and code & 0xFF == _SQLITE_IOERR:
        free = free_bytes(directory)
        return free is not None and free < (1 << 20)
    return False


def free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DiskReserve:
    """A file of zeros next to the spool, released when the disk is full and made again when there is room."""

    def __init__(self, spool_path: Path, size: int = RESERVE_BYTES):
        self.path = spool_path.with_name(spool_path.name + ".reserve")
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def make(self) -> bool:
        """Write the reserve if missing; False (and nothing left behind) when there is no room."""
        if self.held:
            return True
        free = free_bytes(self.path.parent)
        if free is not None and free < self.size + _MARGIN_BYTES:  # room for the reserve and then some
            return False
        try:
            with open(self.path, "wb") as fh:
                left = self.size
                while left > 0:  # real blocks, not a sparse file: the space must be ours
                    left -= fh.write(_ZEROS[: min(left, len(_ZEROS))])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            log.warning("spool: no room for the %d-byte disk reserve %s: %s", self.size, self.path, exc)
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve; True when there was one to give up."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("spool: cannot delete the disk reserve %s: %s", self.path, exc)
            return False
        log.warning("spool: disk full: released the %d-byte reserve %s", self.size, self.path)
        return True
