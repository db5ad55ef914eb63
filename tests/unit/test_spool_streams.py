"""Spool streams: object records beside detection events, a format-1 file migrated at open, salvage of either."""

from __future__ import annotations

import logging
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from edge.spool import FORMAT_VERSION, SpoolItem, Stream
from edge.spool.reader import SpoolReader
from edge.spool.records import checksum
from tests.support import open_spool

# The format-1 tables as edge-detector wrote them before streams existed: written out, not derived from the code.
V1_RECORD = """seq INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL, detection_id TEXT NOT NULL,
    schema_version INTEGER NOT NULL, captured_at REAL NOT NULL, enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL,
    size INTEGER NOT NULL, crc INTEGER NOT NULL"""
V1_DDL = [
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    f"CREATE TABLE pending ({V1_RECORD})",
    f"CREATE TABLE dead ({V1_RECORD}, error TEXT NOT NULL, dead_at REAL NOT NULL)",
    """CREATE TABLE quarantine (qid INTEGER PRIMARY KEY, seq INTEGER, key BLOB, value BLOB, detection_id BLOB,
    schema_version INTEGER, captured_at REAL, enqueued_at REAL, attempts INTEGER, size INTEGER, crc INTEGER,
    reason TEXT NOT NULL, quarantined_at REAL NOT NULL)""",
]
V1_COLUMNS = "seq, key, value, detection_id, schema_version, captured_at, enqueued_at, attempts, size, crc"
CAPTURED = 1_796_305_500.0


def v1_crc(key: bytes, value: bytes, did: bytes, version: int, captured: float) -> int:
    """The format-1 record checksum, written out as it was."""
    header = struct.pack("<IIid", len(key), len(did), version, captured)
    return zlib.crc32(header, zlib.crc32(did, zlib.crc32(key, zlib.crc32(value))))


def v1_row(seq: int, did: str) -> tuple:
    key, value = b"vehicle-001", f'{{"detection_id":"{did}"}}'.encode()
    return (seq, key.decode(), value, did, 1, CAPTURED + seq, CAPTURED + seq, 0, len(key) + len(value),
            v1_crc(key, value, did.encode(), 1, CAPTURED + seq))


def write_v1(path: Path, *, user_version: int = 1) -> dict[str, int]:
    """A format-1 spool: seq 1 pending (det-p), seq 2 dead (det-d), one quarantined row; returns detection_id -> crc."""
    pending, dead = v1_row(1, "det-p"), v1_row(2, "det-d")
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        for ddl in V1_DDL:
            raw.execute(ddl)
        raw.execute(f"INSERT INTO pending ({V1_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", pending)
        raw.execute(f"INSERT INTO dead ({V1_COLUMNS}, error, dead_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*dead, "MSG_SIZE_TOO_LARGE", CAPTURED))
        raw.execute("INSERT INTO quarantine (seq, reason, quarantined_at) VALUES (0, 'checksum mismatch', ?)",
                    (CAPTURED,))
        counters = {"depth": 1, "bytes": pending[8], "last_seq": 2, "dead": 1, "quarantined": 1, "appended_total": 2,
                    "acked_total": 0, "evicted_total": 0, "lost_total": 0}
        raw.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", counters.items())
        raw.execute(f"PRAGMA user_version = {user_version}")
    finally:
        raw.close()
    return {"det-p": pending[9], "det-d": dead[9]}


def item(i: int, stream: Stream = Stream.DETECTIONS) -> SpoolItem:
    return SpoolItem(f"vehicle-{i % 2:03d}", f'{{"i":{i}}}'.encode(), f"{stream.name.lower()}-{i}", CAPTURED + i,
                     stream=stream)


def raw_query(path: Path, sql: str) -> list[tuple]:
    raw = sqlite3.connect(path)
    try:
        return raw.execute(sql).fetchall()
    finally:
        raw.close()


def columns(path: Path, table: str) -> list[str]:
    return [r[1] for r in raw_query(path, f"PRAGMA table_info({table})")]


# ------------------------------------------------------------------------------------------------ migration


def test_a_format1_file_is_migrated_at_open_and_its_rows_keep_stream_0_and_their_checksums(tmp_path, caplog):
    # given a format-1 spool with a pending and a dead record
    path = tmp_path / "spool.db"
    crcs = write_v1(path)
    # when this version opens it, delivers the pending record and requeues the dead one
    with caplog.at_level(logging.INFO, logger="edge.spool"), open_spool(path) as spool:
        leased = spool.lease(10)
        dead = spool.dead_letters(10)
        spool.ack([r.seq for r in leased])
        assert spool.requeue_dead() == 1, "the format-1 dead letter requeues"
        requeued = spool.lease(10)
        spool.flush()
        stored_dead_crc = raw_query(path, "SELECT crc FROM pending WHERE seq = 2")
    # then it was migrated once, at INFO, and every record reads back as a detection event
    migrated = [r for r in caplog.records if "migrated" in r.getMessage()]
    assert len(migrated) == 1 and migrated[0].levelno == logging.INFO, f"one INFO line for the migration: {migrated}"
    assert "format 1 migrated to 2" in migrated[0].getMessage(), f"it names both formats: {migrated[0].getMessage()}"
    assert [(r.detection_id, r.stream) for r in leased] == [("det-p", 0)], f"pending record, stream 0: {leased}"
    assert [(r.detection_id, r.stream, e) for r, e, _ in dead] == [("det-d", 0, "MSG_SIZE_TOO_LARGE")], \
        f"dead letter, stream 0, its error kept: {dead}"
    assert [(r.seq, r.stream) for r in requeued] == [(2, 0)], f"the requeued dead letter leases as stream 0: {requeued}"
    assert stored_dead_crc == [(crcs["det-d"],)], f"the row's format-1 checksum is unchanged: {stored_dead_crc}"
    version = raw_query(path, "PRAGMA user_version")[0][0]
    assert version == FORMAT_VERSION == 2, f"the file is format 2 after the open, found {version}"
    for table in ("pending", "dead", "quarantine"):
        assert columns(path, table)[-1] == "stream", f"{table} gained stream as its last column: {columns(path, table)}"
    assert raw_query(path, "SELECT stream FROM quarantine") == [(None,)], "an old quarantine entry has no stream"
    # and a second open has nothing left to migrate
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.spool"), open_spool(path):
        pass
    assert not [r for r in caplog.records if "migrated" in r.getMessage()], "a format-2 file is not migrated again"


def test_a_read_only_look_at_a_format1_file_reads_stream_0_and_changes_nothing(tmp_path):
    # given a format-1 spool nobody has opened for writing yet
    path = tmp_path / "spool.db"
    write_v1(path)
    # when `edge queue peek|dead` reads it
    with SpoolReader.open(path, max_bytes=1 << 20, when_full="block") as reader:
        peeked = reader.peek(10)
        dead = reader.dead_letters(10)
    # then both records read back as detection events, and the file is still format 1
    assert [(r.detection_id, r.stream) for r in peeked] == [("det-p", 0)], f"pending read as stream 0: {peeked}"
    assert [(r.detection_id, r.stream) for r, _, _ in dead] == [("det-d", 0)], f"dead read as stream 0: {dead}"
    assert raw_query(path, "PRAGMA user_version") == [(1,)], "a read-only command must not migrate the file"
    assert "stream" not in columns(path, "pending"), "nor add columns"


# ------------------------------------------------------------------------------------------------ streams


def test_object_records_keep_their_stream_through_lease_dead_letter_requeue_and_reopen(tmp_path):
    # given detection events and object records appended in turn
    path = tmp_path / "spool.db"
    streams = [Stream.DETECTIONS, Stream.OBJECTS] * 3
    with open_spool(path) as spool:
        spool.append([item(i, s) for i, s in enumerate(streams)])
        # when they are leased, one object record is dead-lettered, the others released, and it is requeued
        leased = spool.lease(10)
        obj = leased[1]
        spool.dead_letter(obj.seq, "poison")
        dead = spool.dead_letters(10)
        spool.release([r.seq for r in leased if r.seq != obj.seq])
        spool.requeue_dead()
        again = spool.lease(10)
        peeked = spool.peek(10)
    with open_spool(path) as reopened:
        after_restart = reopened.lease(10)
    # then each record keeps its stream, in seq order, every time it is read
    want = [int(s) for s in streams]
    assert [r.stream for r in leased] == want, f"lease returns each record's stream in order: {leased}"
    assert [(r.seq, r.stream) for r, _, _ in dead] == [(obj.seq, 1)], f"the dead letter is an object record: {dead}"
    assert [r.stream for r in again] == want and [r.stream for r in peeked] == want, \
        f"after the requeue, lease and peek see the same streams: {again}, {peeked}"
    assert [(r.detection_id, r.stream) for r in after_restart] == [(r.detection_id, r.stream) for r in leased], \
        f"the streams are on disk: the same after a restart: {after_restart}"


def test_an_unknown_stream_is_refused_at_append(tmp_path):
    with open_spool(tmp_path / "spool.db") as spool:
        with pytest.raises(ValueError, match="stream"):
            spool.append([SpoolItem("v", b"{}", "d", CAPTURED, stream=7)])
        assert spool.stats().depth == 0, "nothing of a refused append is written"


def test_a_stream_changed_on_disk_is_quarantined_and_kept(tmp_path):
    # given an object record and a detection event, then each one's stream flipped on disk, and a row with a
    # stream this version does not know (its checksum right)
    path = tmp_path / "spool.db"
    with open_spool(path) as spool:
        spool.append([item(0, Stream.OBJECTS), item(1, Stream.DETECTIONS), item(2, Stream.OBJECTS)])
    crc = checksum(b"v", b"{}", b"future", 1, CAPTURED, 5)
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("UPDATE pending SET stream = 1 - stream WHERE seq IN (1, 2)")
        raw.execute("INSERT INTO pending (seq, key, value, detection_id, schema_version, captured_at, enqueued_at, "
                    "attempts, size, crc, stream) VALUES (4, 'v', X'7B7D', 'future', 1, ?, ?, 0, 3, ?, 5)",
                    (CAPTURED, CAPTURED, crc))
        raw.execute("UPDATE meta SET value = value + 1 WHERE name IN ('depth', 'last_seq')")
        raw.execute("UPDATE meta SET value = value + 3 WHERE name = 'bytes'")
    finally:
        raw.close()
    # when it is opened and leased
    with open_spool(path) as spool:
        leased = spool.lease(10)
        quarantined = {seq: reason for seq, reason, _ in spool.quarantined(10)}
    # then the checksum caught the flips, the unknown stream is refused, and each row is kept with what it held
    assert [(r.seq, r.stream) for r in leased] == [(3, 1)], f"only the untouched record is delivered: {leased}"
    assert set(quarantined) == {1, 2, 4}, f"the three bad rows are quarantined: {quarantined}"
    assert all("checksum mismatch" in quarantined[s] for s in (1, 2)), f"flips fail the checksum: {quarantined}"
    assert "unknown stream 5" in quarantined[4], f"an unknown stream is named: {quarantined[4]!r}"
    kept = dict(raw_query(path, "SELECT seq, stream FROM quarantine"))
    assert kept == {1: 0, 2: 1, 4: 5}, f"quarantine keeps the stream as it was found: {kept}"


# ------------------------------------------------------------------------------------------------ salvage


def test_salvage_of_a_format2_file_keeps_streams_dead_letters_and_quarantine(tmp_path):
    # given a format-2 spool with object records pending, dead and quarantined, then its header damaged
    path = tmp_path / "spool.db"
    with open_spool(path) as spool:
        spool.append([item(i, Stream.OBJECTS if i % 2 else Stream.DETECTIONS) for i in range(5)])
        spool.dead_letter(spool.lease(2)[1].seq, "poison")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE pending SET crc = crc + 1 WHERE seq = 4")  # an object record gone bad
    raw.execute("PRAGMA user_version = 0")  # "format version missing from the header": moved aside, salvaged
    raw.close()
    # when it is opened
    with open_spool(path) as spool:
        report = spool.recovery
        leased = spool.lease(10)
        dead = spool.dead_letters(10)
        stats = spool.stats()
    # then every record came back with its stream, the bad one stayed quarantined with its stream
    assert report is not None and report.salvaged == 4, f"four records salvaged: {report}"
    assert [(r.seq, r.stream) for r in leased] == [(1, 0), (3, 0), (5, 0)], f"pending, with streams: {leased}"
    assert [(r.seq, r.stream, e) for r, e, _ in dead] == [(2, 1, "poison")], f"the dead object record: {dead}"
    assert stats.quarantined == 1, f"the damaged row is quarantined: {stats}"
    assert raw_query(path, "SELECT seq, stream FROM quarantine") == [(4, 1)], "quarantined with its stream"


def test_salvage_of_a_format1_file_gives_its_records_stream_0(tmp_path):
    # given a format-1 spool whose header lost its format number
    path = tmp_path / "spool.db"
    write_v1(path, user_version=0)
    # when it is opened
    with open_spool(path) as spool:
        report = spool.recovery
        leased = spool.lease(10)
        dead = spool.dead_letters(10)
        stats = spool.stats()
    # then its records, read without a stream column, come back as detection events and pass their checksums
    assert report is not None and (report.salvaged, report.quarantined) == (2, 0), f"both records salvaged: {report}"
    assert [(r.detection_id, r.stream) for r in leased] == [("det-p", 0)], f"pending, stream 0: {leased}"
    assert [(r.detection_id, r.stream) for r, _, _ in dead] == [("det-d", 0)], f"dead, stream 0: {dead}"
    assert stats.quarantined == 1, f"its old quarantine entry is copied: {stats}"
    assert raw_query(path, "PRAGMA user_version") == [(FORMAT_VERSION,)], "the fresh spool is the current format"
