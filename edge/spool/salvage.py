"""Salvage: copy every record that can still be read from a corrupt spool file into a fresh one."""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.spool.records import RecoveryReport
from edge.spool.schema import (
    COLUMNS,
    COLUMNS_V1,
    COUNTERS,
    WIDTH,
    column_names,
    row_to_record,
    select_columns,
)

log = logging.getLogger(__name__)

_TIME_BUDGET_S = 120.0  # per table: a badly damaged file must not stall the daemon's start for ever
_NO_LIMIT_SPAN = 1 << 40  # how far past the last good seq to look when the table's end is unknown
_Q_COLUMNS = COLUMNS  # quarantine holds a record's columns too, each nullable


@dataclass
class _Tally:
    salvaged: int = 0
    quarantined: int = 0
    unreadable_rows: int = 0
    unreadable_ranges: int = 0


def salvage(src: Path, dst: sqlite3.Connection, reason: str) -> RecoveryReport:
    """Read `src` (a corrupt spool, left unchanged) row by row into the fresh, empty spool `dst`."""
    tally = _Tally()
    old_meta: dict[str, int] = {}
    conn = _open_readonly(src)
    if conn is None:
        log.error("salvage of %s: not readable as SQLite at all; 0 records salvaged, lost: unknown", src)
        return RecoveryReport(src, reason, 0, 0, None, 0)
    try:
        old_meta = _read_meta(conn)
        dst.execute("BEGIN IMMEDIATE")
        try:
            _copy(conn, dst, old_meta, tally)
            _recount(dst, old_meta)
            dst.execute("COMMIT")
        except Exception:  # whatever the damage, open() must go on with a working (if empty) spool
            if dst.in_transaction:
                dst.execute("ROLLBACK")
            log.exception("salvage of %s: failed; the fresh spool starts empty", src)
            tally = _Tally()
    finally:
        conn.close()
    expected = old_meta.get("depth", -1) + old_meta.get("dead", -1) if {"depth", "dead"} <= old_meta.keys() else None
    if expected is not None and expected >= 0:
        lost: int | None = max(0, expected - tally.salvaged - tally.quarantined)
    elif tally.unreadable_ranges == 0:
        lost = tally.unreadable_rows
    else:
        lost = None
    log.warning(
        "salvage of %s: %d records salvaged, %d quarantined (bad checksum), %s lost or unreadable "
        "(%d unreadable rows, %d damaged ranges skipped)",
        src, tally.salvaged, tally.quarantined, "unknown" if lost is None else lost,
        tally.unreadable_rows, tally.unreadable_ranges,
    )
    return RecoveryReport(src, reason, tally.salvaged, tally.quarantined, lost, tally.unreadable_ranges)


def _open_readonly(src: Path) -> sqlite3.Connection | None:
    uri = "file:" + urllib.parse.quote(str(src)) + "?mode=ro"
    for target, as_uri in ((uri, True), (str(src), False)):  # read-write fallback: the copy is ours anyway
        try:
            conn = sqlite3.connect(target, uri=as_uri, isolation_level=None, check_same_thread=False)
            conn.text_factory = bytes
            # Tolerate a header that claims more pages than the file has (truncation): read what is there.
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            return conn
        except sqlite3.DatabaseError as exc:
            log.warning("salvage of %s: cannot open (%s)", src, exc)
            try:
                conn.close()
            except (NameError, sqlite3.Error):
                pass
    return None


def _read_meta(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = conn.execute("SELECT name, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        log.warning("salvage: meta table unreadable (%s)", exc)
        return {}
    return {n.decode(errors="replace"): v for n, v in rows if isinstance(n, bytes) and isinstance(v, int)}


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, meta: dict[str, int], tally: _Tally) -> None:
    now = time.time()
    quarantine_sql = f"INSERT INTO quarantine ({_Q_COLUMNS}, reason, quarantined_at) VALUES ({_marks(WIDTH + 2)})"
    seen: set[tuple[bytes, int]] = set()  # (detection_id, crc): a damaged b-tree can show a row twice
    for table in ("pending", "dead"):
        extra = ", error, dead_at" if table == "dead" else ""
        insert = f"INSERT INTO {table} ({COLUMNS}{extra}) VALUES ({_marks(WIDTH + 2 if extra else WIDTH)})"
        limit = _table_end(src, table, meta)
        cols = select_columns(_has_stream(src, table))  # a format-1 file: stream 0, as its migration would set
        for kind, item in _scan(src, f"{cols}{extra}", table, "seq", limit, tally):
            if kind == "bad":
                seq, err = item
                tally.unreadable_rows += 1
                dst.execute(
                    "INSERT INTO quarantine (seq, detection_id, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                    (seq, _detection_id(src, table, seq), f"salvage: unreadable row in {table}: {err}", now),
                )
                continue
            record, _, why = row_to_record(item[:WIDTH])
            if record is None:
                tally.quarantined += 1
                dst.execute(quarantine_sql, (*item[:WIDTH], f"salvage from {table}: {why}", now))
                continue
            if table == "dead" and not (isinstance(item[WIDTH], bytes) and isinstance(item[WIDTH + 1], float)):
                item = (*item[:WIDTH], b"(error text unreadable)", now)
            if (item[3], item[9]) in seen:
                continue
            seen.add((item[3], item[9]))
            values = list(item)
            values[1], values[3] = record.key, record.detection_id  # store text as TEXT again
            if table == "dead":
                values[WIDTH] = values[WIDTH].decode("utf-8", errors="replace")
            try:
                dst.execute(insert, values)
            except sqlite3.IntegrityError:  # its seq (not covered by the checksum) collides: give it a new one
                values[0] = None
                dst.execute(insert, values)
            tally.salvaged += 1
    # Already quarantined records stay quarantined (a format-1 file's without a stream, as its migration leaves them).
    q_cols = _Q_COLUMNS if _has_stream(src, "quarantine") else f"{COLUMNS_V1}, NULL"
    for kind, item in _scan(src, f"qid, {q_cols}, reason, quarantined_at", "quarantine", "qid", _NO_LIMIT_SPAN, tally):
        if kind == "row":
            try:
                dst.execute(quarantine_sql, item[1:])
            except sqlite3.Error as exc:
                log.warning("salvage: an old quarantine entry could not be copied: %s", exc)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _has_stream(src: sqlite3.Connection, table: str) -> bool:
    """Whether `table` of the file being salvaged has the `stream` column (format 2 on); where its schema cannot be
    read, what its format number says."""
    try:
        return "stream" in column_names(src, table)
    except sqlite3.DatabaseError:
        pass
    try:
        return src.execute("PRAGMA user_version").fetchone()[0] >= 2
    except sqlite3.DatabaseError:
        return True  # the current format: a wrong guess only makes that table's reads fail, as the damage would


def _table_end(src: sqlite3.Connection, table: str, meta: dict[str, int]) -> int:
    try:
        top = src.execute(f"SELECT max(seq) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        top = None
    candidates = [v for v in (top, meta.get("last_seq")) if isinstance(v, int)]
    return max(candidates) if candidates else _NO_LIMIT_SPAN


def _detection_id(src: sqlite3.Connection, table: str, seq: int) -> bytes | None:
    try:
        row = src.execute(f"SELECT detection_id FROM {table} WHERE seq = ?", (seq,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row and isinstance(row[0], bytes) else None


def _scan(
    conn: sqlite3.Connection, cols: str, table: str, key: str, limit: int, tally: _Tally
) -> Iterator[tuple[str, tuple]]:
    """Yield ("row", row) for each readable row in key order and ("bad", (key, error)) for rows that
    exist but cannot be read; damaged stretches where not even the keys are readable are skipped."""
    pos = -(1 << 62)
    deadline = time.monotonic() + _TIME_BUDGET_S
    while time.monotonic() < deadline:
        try:
            for row in conn.execute(f"SELECT {cols} FROM {table} WHERE {key} > ? ORDER BY {key}", (pos,)):
                if not isinstance(row[0], int) or row[0] <= pos:  # keys going backwards: a damaged page
                    raise sqlite3.DatabaseError(f"{key} out of order after {pos}")
                yield "row", row
                pos = row[0]
            return
        except sqlite3.DatabaseError:
            pass
        ok, nxt = _probe(conn, table, key, pos + 1)
        if ok and nxt is None:
            return
        if ok and nxt is not None and nxt > pos:  # the next key is readable: read that row alone, go on after it
            try:
                row = conn.execute(f"SELECT {cols} FROM {table} WHERE {key} = ?", (nxt,)).fetchone()
                if row is None:
                    raise sqlite3.DatabaseError("listed but not found by its key")
            except sqlite3.DatabaseError as exc:
                row = None
                yield "bad", (nxt, str(exc))
            if row is not None:
                yield "row", row
            pos = nxt
            continue
        tally.unreadable_ranges += 1
        resume = _skip_damage(conn, table, key, pos, limit)
        if resume is None:
            return
        pos = resume - 1
    log.error("salvage of %s: gave up after %.0f s; the rest of the table is not read", table, _TIME_BUDGET_S)


def _probe(conn: sqlite3.Connection, table: str, key: str, at: int) -> tuple[bool, int | None]:
    """(readable, first key >= at); a key below `at` (damaged page) counts as unreadable."""
    try:
        row = conn.execute(f"SELECT {key} FROM {table} WHERE {key} >= ? ORDER BY {key} LIMIT 1", (at,)).fetchone()
    except sqlite3.DatabaseError:
        return False, None
    if row and not (isinstance(row[0], int) and row[0] >= at):
        return False, None
    return True, (row[0] if row else None)


def _skip_damage(conn: sqlite3.Connection, table: str, key: str, pos: int, limit: int) -> int | None:
    """Smallest readable key after a damaged stretch starting at pos + 1, None when none is found."""
    bad = pos + 1  # known unreadable probe point
    step = 1
    while True:
        at = bad + step
        if at > max(limit, pos + 2):
            return None
        ok, found = _probe(conn, table, key, at)
        if ok:
            break
        bad, step = at, step * 2
    good, result = at, found
    while good - bad > 1:  # narrow down so little readable data is skipped
        mid = (good + bad) // 2
        ok, found = _probe(conn, table, key, mid)
        if ok:
            good, result = mid, found
        else:
            bad = mid
    return result


def _recount(dst: sqlite3.Connection, old_meta: dict[str, int]) -> None:
    depth, size = dst.execute("SELECT count(*), coalesce(sum(size), 0) FROM pending").fetchone()
    dead = dst.execute("SELECT count(*) FROM dead").fetchone()[0]
    quarantined = dst.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    top = max(
        dst.execute("SELECT coalesce(max(seq), 0) FROM pending").fetchone()[0],
        dst.execute("SELECT coalesce(max(seq), 0) FROM dead").fetchone()[0],
        dst.execute("SELECT coalesce(max(seq), 0) FROM quarantine").fetchone()[0],
        old_meta.get("last_seq", 0),
    )
    values = {"depth": depth, "bytes": size, "dead": dead, "quarantined": quarantined, "last_seq": top}
    for name in COUNTERS:
        value = values.get(name, old_meta.get(name, 0))
        dst.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))
