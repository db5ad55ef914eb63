"""On-disk format of the spool: tables, format version, connections, integrity check and moving a bad file aside."""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time
from pathlib import Path

from edge.clock import compact_utc
from edge.spool.records import STREAMS, SpoolError, SpoolRecord, checksum

log = logging.getLogger(__name__)

# Bump on any change to the tables below, and teach `migrate` to bring the older format up to it.
# 1: the first. 2: `stream` (records.Stream, the topic a record goes to) added to pending, dead and quarantine.
FORMAT_VERSION = 2

# A record's columns in the order `row_to_record` reads them; pending and dead hold them all, quarantine holds them
# nullable. New ones go last, where ALTER TABLE puts them, so that a migrated file and a new one look the same.
COLUMNS_V1 = "seq, key, value, detection_id, schema_version, captured_at, enqueued_at, attempts, size, crc"
COLUMNS = COLUMNS_V1 + ", stream"
WIDTH = COLUMNS.count(",") + 1  # values in a row of COLUMNS
# What format 2 added, per table: the same text creates a new file and migrates an old one (`migrate`).
_STREAM_DDL = {
    "pending": "stream INTEGER NOT NULL DEFAULT 0",  # 0: every record a format-1 file holds is a detection event
    "dead": "stream INTEGER NOT NULL DEFAULT 0",
    "quarantine": "stream INTEGER",
}
_RECORD_DDL = """
    seq            INTEGER PRIMARY KEY,
    key            TEXT    NOT NULL,
    value          BLOB    NOT NULL,
    detection_id   TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    captured_at    REAL    NOT NULL,
    enqueued_at    REAL    NOT NULL,
    attempts       INTEGER NOT NULL,
    size           INTEGER NOT NULL,  -- len(key) + len(value) in bytes, what max_bytes bounds
    crc            INTEGER NOT NULL   -- records.checksum() of the fields above it and of stream
"""
SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE pending ({_RECORD_DDL}, {_STREAM_DDL["pending"]});
CREATE TABLE dead ({_RECORD_DDL}, error TEXT NOT NULL, dead_at REAL NOT NULL, {_STREAM_DDL["dead"]});
CREATE TABLE quarantine (
    qid            INTEGER PRIMARY KEY,
    seq            INTEGER,
    key            BLOB,
    value          BLOB,
    detection_id   BLOB,
    schema_version INTEGER,
    captured_at    REAL,
    enqueued_at    REAL,
    attempts       INTEGER,
    size           INTEGER,
    crc            INTEGER,
    reason         TEXT NOT NULL,
    quarantined_at REAL NOT NULL,
    {_STREAM_DDL["quarantine"]}
);
"""
BUSY_TIMEOUT_S = 10.0  # how long a statement waits for another connection's lock before SQLITE_BUSY
WAL_AUTOCHECKPOINT_PAGES = 256  # ~1 MiB of WAL before a checkpoint; disk.RESERVE_BYTES must exceed it
TABLES = ("meta", "pending", "dead", "quarantine")
# Counters kept in `meta`, changed in the same transaction as the rows they count.
COUNTERS = (
    "depth", "bytes", "last_seq", "dead", "quarantined", "appended_total", "acked_total", "evicted_total",
    "lost_total",  # events found missing at an open (WAL lost or damaged); added to older files at open
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL, text read as bytes."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn.text_factory = bytes  # decode ourselves: a flipped byte must reach the checksum, not a UnicodeDecodeError
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {4 << 20}")  # a WAL grown by a burst shrinks back after it
    # Debian builds SQLite with secure_delete on: zeroing every acked event's bytes costs a quarter of a delete and
    # protects nothing here (the events went to Kafka in clear); salvage reads live rows only
    conn.execute("PRAGMA secure_delete = OFF")
    return conn


def problem(conn: sqlite3.Connection, path: Path) -> str | None:
    """Why an existing file is unusable as a spool (None: fine). Raises SpoolError for files we must not touch."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = {r[0].decode() for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version > FORMAT_VERSION:
        raise SpoolError(
            f"{path}: spool format {version} is newer than this program supports ({FORMAT_VERSION}); "
            "upgrade edge-detector or move the file away"
        )
    if version == 0:
        if names and "pending" not in names:
            raise SpoolError(f"{path}: an SQLite database but not a spool (tables: {', '.join(sorted(names))})")
        if names:
            return "format version missing from the header"
        return None  # empty database: initialised by the caller
    missing = [t for t in TABLES if t not in names]
    if missing:
        return f"tables missing: {', '.join(missing)}"
    rows = [r[0].decode() if isinstance(r[0], bytes) else str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    if rows != ["ok"]:
        return "quick_check: " + "; ".join(rows[:5])
    return None


def initialise(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    # statement by statement: executescript() would COMMIT the open transaction
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, 0)", [(c,) for c in COUNTERS])
    conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a file of an older format (1) to FORMAT_VERSION in one transaction: its records get stream 0 (they are
    all detection events) and keep their checksums. A crash or an error leaves it as it was, for the next open."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = conn.execute("PRAGMA user_version").fetchone()[0]
        for table, ddl in _STREAM_DDL.items():
            if "stream" not in column_names(conn, table):  # a file someone half-migrated by hand still opens
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {ddl}")
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("spool %s: format %d migrated to %d: records now carry a stream (the topic they go to); the ones it "
             "held are detection events", path, old, FORMAT_VERSION)


def column_names(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns `table` has (none when it is missing); sqlite3.DatabaseError when its schema is unreadable."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {r[1].decode() if isinstance(r[1], bytes) else str(r[1]) for r in rows}


def select_columns(has_stream: bool) -> str:
    """The SELECT list that reads COLUMNS from a table with or without `stream` (a format-1 file: every record in it
    is a detection event, stream 0)."""
    return COLUMNS if has_stream else f"{COLUMNS_V1}, 0"


def corrupt_name(path: Path) -> Path:
    """Where a corrupt spool goes: `<name>.corrupt-<UTC time>[-n]`, a name not yet taken."""
    stamp = compact_utc(time.time())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    return target


def move_aside(path: Path, target: Path) -> None:
    """Rename the spool and its -wal/-shm to `target[-wal|-shm]`; never deletes anything."""
    for suffix in ("", "-wal", "-shm"):  # the copy keeps SQLite's naming, so opening it still applies its WAL
        src = Path(f"{path}{suffix}")
        if src.exists() and not Path(f"{target}{suffix}").exists():
            os.replace(src, f"{target}{suffix}")


def row_to_record(row: tuple, attempts_bump: int = 0) -> tuple[SpoolRecord | None, int, str]:
    """Check and decode one row in COLUMNS order: (record, size, "") or (None, 0, reason). Runs for every record
    the flusher leases: the record is built with tuple.__new__, the one check that is not a comparison is the CRC."""
    seq, key, value, did, version, captured, enqueued, attempts, size, crc, stream = row
    try:
        expected = checksum(key, value, did, version, captured, stream)
    except (TypeError, ValueError, struct.error) as exc:  # a damaged row: wrong column types or ranges
        return None, 0, f"bad column type or value: {exc}"
    if expected != crc or value.__class__ is not bytes:
        return None, 0, f"checksum mismatch (stored {crc!r}, computed {expected:#010x})"
    if stream.__class__ is not int or stream not in STREAMS:  # the flusher indexes its topics with it
        return None, 0, f"unknown stream {stream!r}"
    if size != len(key) + len(value):
        return None, 0, f"size mismatch (stored {size!r}, actual {len(key) + len(value)})"
    try:
        record = _new_record(SpoolRecord, (
            seq, key.decode("utf-8"), value, did.decode("utf-8"), version, float(captured), float(enqueued),
            int(attempts) + attempts_bump, stream,
        ))
    except (AttributeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        return None, 0, f"undecodable: {exc}"
    return record, size, ""


_new_record = tuple.__new__
