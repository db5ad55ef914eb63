"""Opening a spool file: "cannot open it now" told apart from "corrupt", and the crash-safe move aside and salvage."""

# Only corruption (SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check, missing tables) moves a file aside.
# Anything else (EMFILE, EACCES, EROFS, ENOENT, ENAMETOOLONG, SQLITE_BUSY, SQLITE_READONLY, ...) is the
# SpoolUnavailable error naming the path and errno, and nothing on disk is changed. A move aside is followed
# by the salvage in the same call, before the spool is handed out; a marker file makes a salvage that a crash
# interrupted run again at the next open, so a moved-aside file is never left unsalvaged.

from __future__ import annotations

import collections
import errno
import logging
import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from edge.spool import schema
from edge.spool.lock import OwnerLock, lock_path
from edge.spool.mark import MarkKeeper, mark_path
from edge.spool.records import RecoveryReport, SpoolError, SpoolUnavailable, WalLoss
from edge.spool.salvage import salvage
from edge.spool.schema import (
    COUNTERS,
    FORMAT_VERSION,
    TABLES,
    connect,
    corrupt_name,
    initialise,
    migrate,
    move_aside,
    problem,
)

log = logging.getLogger(__name__)

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
SQLITE_MAX_PATH = 504  # bytes of the full path SQLite accepts: its 512 less room for the "-journal" suffix
_PENDING, _TEMP = ".salvage-pending", ".salvage-new"  # marker (holds the moved file's name), salvage target
# Descriptors an open writable spool holds: two connections (file and -wal each), -shm, the wal-index reader,
# the lock and mark files, and a few moments' worth (directory fsync, reserve file).
_WRITER_FDS = 10
# Spool files this process has SQLite connections to: probe() must not open and close them (see there).
_in_use: collections.Counter[str] = collections.Counter()
_in_use_lock = threading.Lock()


def is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, f"errno {exc.errno}") if exc.errno else "error"
    return f"{name} ({exc.strerror or exc})"


def _unavailable(path: Path, detail: str) -> SpoolUnavailable:
    return SpoolUnavailable(f"{path}: cannot open the spool now: {detail}; nothing was changed")


def in_use(path: Path, delta: int) -> None:
    """Count SQLite connections of this process to the spool at `path` (+1 when opened, -1 when closed)."""
    with _in_use_lock:
        _in_use[os.path.realpath(path)] += delta


def probe(path: Path, *, write: bool) -> None:
    """What the OS says about opening the spool's files, all at once as SQLite holds them (so that EMFILE
    shows): raises SpoolUnavailable naming the file and errno. Creates and changes nothing."""
    real = os.fsencode(os.path.realpath(path))  # SQLite resolves symbolic links too
    if len(real) > SQLITE_MAX_PATH:
        raise _unavailable(path, f"ENAMETOOLONG (its full path has {len(real)} bytes, SQLite takes {SQLITE_MAX_PATH})")
    with _in_use_lock:
        if _in_use[os.path.realpath(path)] > 0:  # closing our descriptor would drop SQLite's locks on the files
            return
    held: list[int] = []
    try:
        _hold_files(path, write, held)
    finally:
        for fd in held:
            os.close(fd)
    if write and not os.access(path.parent, os.W_OK | os.X_OK):  # SQLite creates -wal, -shm there
        read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise _unavailable(path, f"{path.parent}: {errno.errorcode[code]} ({os.strerror(code)})")


def _hold_files(path: Path, write: bool, held: list[int]) -> None:
    """Open the spool's files (those that exist), its directory, and for a writer spare descriptors up to what an
    open spool holds, appending each to `held`; SpoolUnavailable names the first that fails."""
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
    for name in (str(path), f"{path}-wal", f"{path}-shm", *([str(mark_path(path))] if write else [])):
        try:
            held.append(os.open(name, flags))
        except FileNotFoundError as exc:
            if name == str(path) and not write:
                raise _unavailable(path, f"{name}: {errno_text(exc)}") from exc
        except OSError as exc:
            raise _unavailable(path, f"{name}: {errno_text(exc)}") from exc
    try:
        held.append(os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        raise _unavailable(path, f"{path.parent}: {errno_text(exc)}") from exc
    try:
        while write and len(held) < _WRITER_FDS:  # before SQLite creates a -wal it could not then use
            held.append(os.dup(held[-1]))
    except OSError as exc:
        raise _unavailable(path, f"the {_WRITER_FDS} file descriptors an open spool holds: {errno_text(exc)}") from exc


def unavailable(path: Path, exc: sqlite3.Error, *, write: bool) -> SpoolUnavailable:
    """The error for a failure that is not corruption: the OS's errno when a probe finds one, else SQLite's code."""
    try:
        probe(path, write=write)
    except SpoolUnavailable as found:
        return found
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return _unavailable(path, f"{name} ({exc})")


def open_for_writing(path: Path) -> tuple[sqlite3.Connection, RecoveryReport | None]:
    """The writer connection of a checked spool, created when missing. A corrupt file is moved aside and salvaged
    into a fresh spool (the report says what came back). The caller holds the owner lock and has probed."""
    resumed = _resume_salvage(path)
    if resumed is not None:
        return resumed
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        reason = problem(conn, path)
        if reason is None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                initialise(conn)
            elif version < FORMAT_VERSION:  # an older format that passed its checks: brought up to date in place
                migrate(conn, path)
            verify_counters(conn, path)
    except SpoolError:
        if conn is not None:
            conn.close()
        raise
    except sqlite3.Error as exc:  # OperationalError is a DatabaseError too: only the codes say which
        if conn is not None:
            conn.close()
        if not is_corruption(exc):
            raise unavailable(path, exc, write=True) from exc
        reason = f"{exc.sqlite_errorname}: {exc}"
    if reason is None:
        assert conn is not None, "a connection that passed its checks"
        return conn, None
    if conn is not None:
        conn.close()
    target = corrupt_name(path)
    _write_marker(path, target)  # before the move: a crash after it must still lead to the salvage
    move_aside(path, target)
    _sync_dir(path.parent)
    log.error("spool %s is corrupt (%s); moved it to %s, salvaging it into a fresh spool", path, reason, target)
    return _salvage_into_place(path, target, reason)


def _resume_salvage(path: Path) -> tuple[sqlite3.Connection, RecoveryReport] | None:
    """Finish what a crash interrupted between moving a corrupt file aside and putting its salvage in place."""
    marker = path.with_name(path.name + _PENDING)
    try:
        target = path.with_name(marker.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpoolError(f"{marker}: unreadable salvage marker ({exc}); move it away to go on") from exc
    if not target.exists() or path.exists():  # crashed before the move, or after the salvage was in place
        marker.unlink()
        _sync_dir(path.parent)
        return None
    move_aside(path, target)  # a -wal or -shm the crash left behind belongs with it
    log.warning("spool %s: the salvage of %s was interrupted; salvaging it again", path, target)
    return _salvage_into_place(path, target, "salvage interrupted by a crash, done again")


def _salvage_into_place(path: Path, target: Path, reason: str) -> tuple[sqlite3.Connection, RecoveryReport]:
    """Salvage `target` into a fresh file next to the spool, then rename that into place and drop the marker."""
    temp = path.with_name(path.name + _TEMP)
    for suffix in ("", "-wal", "-shm", "-journal"):  # a salvage a crash cut short: only copies, ours
        Path(f"{temp}{suffix}").unlink(missing_ok=True)
    conn = connect(temp)
    try:
        initialise(conn)
        report = salvage(target, conn, reason)
        conn.execute("PRAGMA journal_mode = DELETE")  # everything into the one file, so that it can be renamed
    finally:
        conn.close()
    os.replace(temp, path)
    _sync_dir(path.parent)
    path.with_name(path.name + _PENDING).unlink(missing_ok=True)
    _sync_dir(path.parent)
    return connect(path), report


def _write_marker(path: Path, target: Path) -> None:
    marker = path.with_name(path.name + _PENDING)
    with open(marker, "w", encoding="utf-8") as fh:
        fh.write(target.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make renames and unlinks in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A read-only connection: no lock, no checks that write, no move, no salvage, and no file created.

    SQLite's mode=ro still creates -wal and -shm when they are missing, owned by whoever runs the command (root's
    would then stop the service opening its own spool). So with no -wal (no writer since the last clean close)
    the file is read as immutable (a writer starting within the milliseconds such a read takes could make it
    fail, never change the file). With -wal and -shm there, mode=ro uses them beside the writer."""
    probe(path, write=False)
    base = "file:" + urllib.parse.quote(os.path.realpath(path))
    wal, shm = Path(f"{path}-wal").exists(), Path(f"{path}-shm").exists()
    if wal and not shm:
        log.warning("spool %s: a -wal without its -shm (a writer crashed): showing the database file without the "
                    "commits still in the WAL; the next writer recovers them", path)
    uri = f"{base}?mode=ro" if wal and shm else f"{base}?mode=ro&immutable=1"
    try:
        return _connect_read_only(uri, path)
    except sqlite3.Error as exc:
        if is_corruption(exc):
            raise SpoolError(f"{path}: the spool looks corrupt ({exc.sqlite_errorname}: {exc}); a read-only "
                             "command leaves it as it is: the next writer moves it aside and salvages it") from exc
        raise unavailable(path, exc, write=False) from exc


def _connect_read_only(uri: str, path: Path) -> sqlite3.Connection:
    timeout = schema.BUSY_TIMEOUT_S
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        conn.text_factory = bytes
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = {r[0].decode() for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > FORMAT_VERSION:
            raise SpoolError(f"{path}: spool format {version} is newer than this program supports ({FORMAT_VERSION})")
        missing = [t for t in TABLES if t not in names]
        if missing:
            raise SpoolError(f"{path}: not a usable spool (tables missing: {', '.join(missing)})")
    except BaseException:
        conn.close()
        raise
    return conn


def verify_counters(conn: sqlite3.Connection, path: Path) -> None:
    """Set the counters in meta from the tables they count (and add any an older file lacks), in one transaction:
    whatever happened before (another writer, a bug), they cannot stay wrong past an open."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT OR IGNORE INTO meta (name, value) VALUES (?, 0)", [(c,) for c in COUNTERS])
        stored = {n.decode(): v for n, v in conn.execute("SELECT name, value FROM meta")}
        depth, size, top_pending = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0) FROM pending").fetchone()
        dead, top_dead = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM dead").fetchone()
        quarantined, top_q = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM quarantine").fetchone()
        actual = {"depth": depth, "bytes": size, "dead": dead, "quarantined": quarantined,
                  "last_seq": max(stored["last_seq"], top_pending, top_dead, top_q)}
        wrong = {k: (stored[k], v) for k, v in actual.items() if stored[k] != v}
        conn.executemany("UPDATE meta SET value = ? WHERE name = ?", [(new, k) for k, (_, new) in wrong.items()])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if wrong:
        log.warning("spool %s: counters did not match the tables, corrected: %s", path,
                    ", ".join(f"{k} {old} → {new}" for k, (old, new) in wrong.items()))


def open_parts(
    path: Path, owner_name: str
) -> tuple[OwnerLock, sqlite3.Connection, sqlite3.Connection, RecoveryReport | None, MarkKeeper, WalLoss | None]:
    """In this order: the owner lock, the checked writer connection (salvaged when corrupt), the comparison with
    the mark, the new mark, the reader connection. Whatever fails, what was opened is closed again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpoolUnavailable(f"{path}: cannot open the spool now: {exc.filename}: {errno_text(exc)}") from exc
    probe(path, write=True)
    try:
        owner = OwnerLock.acquire(lock_path(path), owner_name)
    except OSError as exc:
        raise SpoolUnavailable(f"{path}: cannot open the spool now: {lock_path(path)}: {errno_text(exc)}; "
                               "nothing was changed") from exc
    writer: sqlite3.Connection | None = None
    reader: sqlite3.Connection | None = None
    mark: MarkKeeper | None = None
    in_use(path, +1)
    try:
        writer, recovery = open_for_writing(path)
        mark = MarkKeeper(path)
        loss = mark.loss(writer)
        if loss is not None:
            _record_loss(writer, path, loss, salvaged=recovery is not None)
        mark.start(writer)
        reader = connect(path)
    except BaseException as exc:
        close_parts(path, owner, writer, reader, mark)
        if isinstance(exc, sqlite3.Error) and not is_corruption(exc):
            raise unavailable(path, exc, write=True) from exc
        if isinstance(exc, (OSError, sqlite3.Error)):
            raise SpoolError(f"{path}: cannot open spool: {exc}") from exc
        raise
    return owner, writer, reader, recovery, mark, loss


def close_parts(
    path: Path, owner: OwnerLock, writer: sqlite3.Connection | None, reader: sqlite3.Connection | None,
    mark: MarkKeeper | None,
) -> None:
    if reader is not None:
        reader.close()
    if writer is not None:
        writer.close()
    in_use(path, -1)
    if mark is not None:
        mark.close()  # a failed open leaves the stored mark as it was, for the next open to compare
    owner.release()


def _record_loss(conn: sqlite3.Connection, path: Path, loss: WalLoss, *, salvaged: bool) -> None:
    """Say what a lost or damaged WAL took, and count it in lost_total (before the new mark replaces the old)."""
    cause = ("the file was corrupt and its salvage holds less" if salvaged
             else "the WAL is missing or damaged")
    seqs = f"commits up to seq {loss.expected_last_seq} were made, the database holds up to seq {loss.found_last_seq}"
    if not loss.lost:
        log.warning("spool %s: %s (%s), but every event it held had already left the spool (acked, "
                    "dead-lettered or evicted)", path, cause, seqs)
        return
    log.error("spool %s: %d events lost: %s (%s); what its intact frames held is kept", path, loss.lost, cause, seqs)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE meta SET value = value + ? WHERE name = 'lost_total'", (loss.lost,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
