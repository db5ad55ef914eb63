"""Spool: round trip, order, group commit, checksums, bounds and policies, dead letters, reopen, versions."""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edge.spool import (
    FORMAT_VERSION,
    Spool,
    SpoolClosed,
    SpoolError,
    SpoolFull,
    SpoolItem,
)
from edge.spool.records import checksum
from edge.types import DetectionEvent
from tests.support import open_spool


def make_items(n: int, start: int = 0, size: int = 40) -> list[SpoolItem]:
    return [
        SpoolItem(
            key="vehicle-001",
            value=(f'{{"i":{i:06d},"pad":"' + "x" * size + '"}').encode(),  # same size for every i
            detection_id=f"det-{i}",
            captured_at=1_700_000_000.0 + i,
        )
        for i in range(start, start + n)
    ]


def item_size(item: SpoolItem) -> int:
    return len(item.key.encode()) + len(item.value)


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


@pytest.fixture
def spool(spool_path: Path):
    with open_spool(spool_path) as s:
        yield s


def test_round_trip(spool: Spool) -> None:
    # given three appended items
    items = make_items(3)
    spool.append(items)
    # when they are leased
    records = spool.lease(10)
    # then every field comes back as appended, with an increasing seq and one attempt
    assert [r.detection_id for r in records] == ["det-0", "det-1", "det-2"], f"leased {records}"
    for item, rec in zip(items, records, strict=True):
        assert (rec.key, rec.value, rec.captured_at, rec.schema_version) == (
            item.key, item.value, item.captured_at, item.schema_version,
        ), f"record {rec} differs from item {item}"
        assert rec.attempts == 1, f"first lease must count one attempt, got {rec.attempts}"
        assert rec.enqueued_at >= item.captured_at, f"enqueued_at {rec.enqueued_at} before capture"
    assert records[0].seq < records[1].seq < records[2].seq, f"seqs not increasing: {[r.seq for r in records]}"
    # and after ack they are gone
    spool.ack(r.seq for r in records)
    assert spool.flush(5), "flush did not finish"
    stats = spool.stats()
    assert (stats.depth, stats.bytes, stats.acked_total, stats.appended_total) == (0, 0, 3, 3), f"stats {stats}"
    assert stats.oldest_age_s is None, f"empty spool has no oldest record, got {stats.oldest_age_s}"
    assert spool.lease(10) == [], "acked records must not be leased again"


def test_append_is_durable_on_return(spool: Spool, spool_path: Path) -> None:
    # when append() returns, another connection to the file sees the rows
    spool.append(make_items(5))
    with sqlite3.connect(spool_path) as other:
        n = other.execute("SELECT count(*) FROM pending").fetchone()[0]
    assert n == 5, f"another connection sees {n} committed rows, expected 5"


def test_order_and_release(spool: Spool) -> None:
    # given ten records appended one call at a time
    for item in make_items(10):
        spool.append([item])
    first = spool.lease(3)
    second = spool.lease(3)
    assert [r.detection_id for r in first + second] == [f"det-{i}" for i in range(6)], "lease is not oldest first"
    # when two of the first lease fail delivery
    spool.release([first[0].seq, first[1].seq])
    again = spool.lease(5)
    # then they come back before newer records, with their attempts counted
    assert [r.detection_id for r in again] == ["det-0", "det-1", "det-6", "det-7", "det-8"], f"got {again}"
    assert [r.attempts for r in again[:2]] == [2, 2], f"released records must count attempts, got {again[:2]}"
    assert spool.stats().in_flight == 9, f"in_flight {spool.stats().in_flight}, expected 9"


def test_group_commit_batches_by_interval(spool_path: Path) -> None:
    # given a long commit interval and a large batch
    with Spool.open(spool_path, commit_interval_ms=100.0, commit_batch=10_000) as spool:
        before = spool.commits
        # when 200 single-item appends arrive together
        futures = [spool.append_nowait([item]) for item in make_items(200)]
        concurrent.futures.wait(futures, timeout=10)
        # then all are durable and they took very few transactions
        assert all(f.done() and f.exception() is None for f in futures), "some appends did not commit"
        commits = spool.commits - before
        assert 1 <= commits <= 10, f"200 appends took {commits} transactions, expected a handful"
        assert spool.stats().depth == 200, f"depth {spool.stats().depth}"


def test_group_commit_batches_by_count(spool_path: Path) -> None:
    # given a very long interval, batches close on commit_batch items alone
    with Spool.open(spool_path, commit_interval_ms=10_000.0, commit_batch=50) as spool:
        before = spool.commits
        start = time.monotonic()
        futures = [spool.append_nowait([item]) for item in make_items(200)]
        done, _ = concurrent.futures.wait(futures, timeout=5)
        assert len(done) == 200, f"only {len(done)} of 200 appends committed before the 10 s interval"
        assert time.monotonic() - start < 5, "commit waited for the interval instead of the batch size"
        assert spool.commits - before >= 4, f"{spool.commits - before} commits for 200 items with batch 50"


def test_append_nowait_future_and_flush(spool: Spool) -> None:
    future = spool.append_nowait(make_items(2))
    assert future.result(timeout=5) is None, "the future resolves to None once committed"
    assert spool.append_nowait([]).done(), "an empty append is done at once"
    assert spool.flush(5), "flush with nothing pending returns True"


def test_checksum_mismatch_is_quarantined(spool_path: Path) -> None:
    # given three records, one of which is changed on disk behind the spool's back
    with Spool.open(spool_path) as spool:
        spool.append(make_items(3))
    with sqlite3.connect(spool_path) as raw:
        raw.execute("UPDATE pending SET value = CAST('{\"i\":000001,\"tampered\":1}' AS BLOB) WHERE seq = 2")
    # when the flusher leases
    with Spool.open(spool_path) as spool:
        records = spool.lease(10)
        # then the bad one is not handed out but quarantined with the reason
        assert [r.seq for r in records] == [1, 3], f"leased {[r.seq for r in records]}"
        quarantined = spool.quarantined()
        assert [q[0] for q in quarantined] == [2], f"quarantine holds {quarantined}"
        assert "checksum mismatch" in quarantined[0][1], f"reason {quarantined[0][1]!r}"
        stats = spool.stats()
        assert (stats.quarantined, stats.depth) == (1, 2), f"stats {stats}"


def test_checksum_covers_key_and_detection_id(spool_path: Path) -> None:
    with Spool.open(spool_path) as spool:
        spool.append(make_items(2))
    with sqlite3.connect(spool_path) as raw:
        raw.execute("UPDATE pending SET key = 'vehicle-002' WHERE seq = 1")
        raw.execute("UPDATE pending SET detection_id = 'det-9' WHERE seq = 2")
    with Spool.open(spool_path) as spool:
        assert spool.peek(10) == [], "records with a changed key or id must not be returned"
        assert len(spool.quarantined()) == 2, f"quarantine holds {spool.quarantined()}"


def test_invalid_utf8_key_is_quarantined_not_raised(spool_path: Path) -> None:
    with Spool.open(spool_path) as spool:
        spool.append(make_items(1))
    # a key that is not UTF-8 but carries a matching checksum: decoding, not the CRC, must catch it
    item = make_items(1)[0]
    crc = checksum(b"\xff\xfeA", item.value, item.detection_id.encode(), item.schema_version, item.captured_at)
    with sqlite3.connect(spool_path) as raw:
        raw.execute(
            "UPDATE pending SET key = CAST(x'fffe41' AS TEXT), crc = ?, size = ? WHERE seq = 1",
            (crc, 3 + len(item.value)),
        )
    with Spool.open(spool_path) as spool:
        assert spool.lease(5) == [], "a record with undecodable text must not be leased"
        reasons = [q[1] for q in spool.quarantined()]
        assert len(reasons) == 1 and "undecodable" in reasons[0], f"quarantine reasons {reasons}"


def test_drop_oldest_evicts_and_counts(spool_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = make_items(15)
    size = item_size(items[0])
    with Spool.open(spool_path, max_bytes=10 * size, when_full="drop_oldest", commit_interval_ms=1.0) as spool:
        # given two leased records (in flight)
        for item in items[:10]:
            spool.append([item])
        leased = spool.lease(2)
        # when five more arrive into a full spool
        with caplog.at_level(logging.WARNING, logger="edge.spool"):
            for item in items[10:]:
                spool.append([item])
        # then the five oldest records not in flight were evicted, counted and logged
        stats = spool.stats()
        assert stats.evicted_total == 5, f"evicted_total {stats.evicted_total}"
        assert stats.bytes <= stats.max_bytes, f"bytes {stats.bytes} over max {stats.max_bytes}"
        left = [r.detection_id for r in spool.peek(100)]
        expected = ["det-0", "det-1"] + [f"det-{i}" for i in range(7, 15)]
        assert left == expected, f"left {left}"
        assert [r.detection_id for r in leased] == ["det-0", "det-1"], "in-flight records must survive"
        assert any("evicted" in r.getMessage() and "s ago" in r.getMessage() for r in caplog.records), (
            f"no eviction warning in {[r.getMessage() for r in caplog.records]}"
        )


def test_drop_oldest_evicts_released_before_newer(spool_path: Path) -> None:
    items = make_items(6)
    size = item_size(items[0])
    with Spool.open(spool_path, max_bytes=4 * size, commit_interval_ms=1.0) as spool:
        for item in items[:4]:
            spool.append([item])
        leased = spool.lease(2)
        spool.release([leased[1].seq])  # det-1 is pending again, older than det-2
        spool.append(items[4:5])
        left = [r.detection_id for r in spool.peek(10)]
        assert left == ["det-0", "det-2", "det-3", "det-4"], f"the oldest un-leased (det-1) goes first, left {left}"
        assert [r.detection_id for r in spool.lease(10)] == ["det-2", "det-3", "det-4"], "evicted record leased"


def test_block_waits_for_ack_then_proceeds(spool_path: Path) -> None:
    items = make_items(6)
    size = item_size(items[0])
    with Spool.open(spool_path, max_bytes=5 * size, when_full="block", commit_interval_ms=1.0) as spool:
        spool.append(items[:5])
        # when the spool is full, the next append waits
        future = spool.append_nowait(items[5:], timeout=30)
        done, _ = concurrent.futures.wait([future], timeout=0.3)
        assert not done, "append into a full spool under policy block must wait"
        # then acking frees room and the append goes through
        records = spool.lease(1)
        spool.ack([records[0].seq])
        assert future.result(timeout=5) is None, "append did not proceed after an ack freed room"
        stats = spool.stats()
        assert (stats.depth, stats.evicted_total) == (5, 0), f"stats {stats}"


def test_block_times_out_cleanly(spool_path: Path) -> None:
    items = make_items(3)
    size = item_size(items[0])
    with Spool.open(spool_path, max_bytes=2 * size, when_full="block", commit_interval_ms=1.0) as spool:
        spool.append(items[:2])
        start = time.monotonic()
        with pytest.raises(SpoolFull, match="within the timeout"):
            spool.append(items[2:], timeout=0.2)
        assert time.monotonic() - start < 3, "a timed-out append must return near its timeout"
        assert spool.stats().depth == 2, "the timed-out append must not be written"
        # and the spool still works afterwards
        spool.ack([spool.lease(1)[0].seq])
        spool.append(items[2:], timeout=5)
        assert spool.stats().depth == 2, f"stats {spool.stats()}"


def test_block_does_not_deadlock_close(spool_path: Path) -> None:
    items = make_items(3)
    size = item_size(items[0])
    spool = Spool.open(spool_path, max_bytes=2 * size, when_full="block", commit_interval_ms=1.0)
    spool.append(items[:2])
    future = spool.append_nowait(items[2:])  # no timeout: only close() can end the wait
    closer = threading.Thread(target=spool.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hung on an append blocked for room"
    with pytest.raises(SpoolClosed):
        future.result(timeout=1)


def test_append_larger_than_max_bytes_is_refused(spool_path: Path) -> None:
    with Spool.open(spool_path, max_bytes=100) as spool:
        with pytest.raises(ValueError, match="can never fit"):
            spool.append(make_items(1, size=200))


def test_dead_letters_requeue_and_purge(spool: Spool) -> None:
    spool.append(make_items(3))
    records = spool.lease(3)
    # when one record is dead-lettered
    spool.dead_letter(records[1].seq, "message too large")
    spool.ack([records[0].seq, records[2].seq])
    assert spool.flush(5), "flush did not finish"
    dead = spool.dead_letters()
    assert [(r.detection_id, err) for r, err, _ in dead] == [("det-1", "message too large")], f"dead {dead}"
    assert dead[0][2] > 0, "dead letters carry when they died"
    stats = spool.stats()
    assert (stats.dead, stats.depth, stats.in_flight) == (1, 0, 0), f"stats {stats}"
    assert spool.lease(10) == [], "a dead letter must not be leased"
    # then requeue brings it back, attempts kept
    assert spool.requeue_dead() == 1, "requeue_dead returns the count"
    again = spool.lease(10)
    assert [(r.detection_id, r.attempts) for r in again] == [("det-1", 2)], f"requeued {again}"
    # and purge deletes it for good
    spool.dead_letter(again[0].seq, "still too large")
    assert spool.purge_dead() == 1, "purge_dead returns the count"
    assert spool.dead_letters() == [], "dead letters left after purge"
    assert spool.stats().dead == 0, f"stats {spool.stats()}"


def test_reopen_keeps_unacked(spool_path: Path) -> None:
    with Spool.open(spool_path) as spool:
        spool.append(make_items(10))
        leased = spool.lease(5)
        spool.ack([leased[0].seq, leased[1].seq])
    # leases are in memory: after a restart everything un-acked is pending again
    with Spool.open(spool_path) as spool:
        ids = [r.detection_id for r in spool.lease(100)]
        assert ids == [f"det-{i}" for i in range(2, 10)], f"after reopen leased {ids}"
        stats = spool.stats()
        assert (stats.appended_total, stats.acked_total, stats.depth) == (10, 2, 8), f"counters not kept: {stats}"
        spool.append(make_items(1, start=10))
        assert spool.peek(100)[-1].seq == 11, "seq keeps growing across restarts"


def test_seq_never_reused_after_drain(spool_path: Path) -> None:
    with Spool.open(spool_path) as spool:
        spool.append(make_items(3))
        spool.ack([r.seq for r in spool.lease(3)])
    with Spool.open(spool_path) as spool:
        spool.append(make_items(1, start=3))
        assert [r.seq for r in spool.peek()] == [4], "a drained spool must not reuse seqs"


def test_newer_format_is_refused(spool_path: Path) -> None:
    Spool.open(spool_path).close()
    with sqlite3.connect(spool_path) as raw:
        raw.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    with pytest.raises(SpoolError, match="newer") as info:
        Spool.open(spool_path)
    assert str(spool_path) in str(info.value), f"error must name the file: {info.value}"
    assert spool_path.exists(), "a newer spool must be left where it is"
    assert not list(spool_path.parent.glob("*.corrupt-*")), "a newer spool is not corrupt"


def test_foreign_database_is_refused(spool_path: Path) -> None:
    with sqlite3.connect(spool_path) as raw:
        raw.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(SpoolError, match="not a spool"):
        Spool.open(spool_path)


def test_format_version_written(spool_path: Path) -> None:
    Spool.open(spool_path).close()
    with sqlite3.connect(spool_path) as raw:
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    assert (version, mode) == (FORMAT_VERSION, "wal"), f"user_version {version}, journal_mode {mode}"


def test_close_is_idempotent_and_final(spool_path: Path) -> None:
    spool = Spool.open(spool_path)
    spool.append_nowait(make_items(2))
    spool.close()
    spool.close()
    with pytest.raises(SpoolClosed):
        spool.append(make_items(1))
    with pytest.raises(SpoolClosed):
        spool.lease(1)
    with Spool.open(spool_path) as again:
        assert again.stats().depth == 2, "close() must commit appends still queued"


def test_stats_bytes_and_age(spool: Spool) -> None:
    items = make_items(4)
    spool.append(items)
    stats = spool.stats()
    assert stats.bytes == sum(item_size(i) for i in items), f"bytes {stats.bytes}"
    assert stats.oldest_age_s is not None and 0 <= stats.oldest_age_s < 60, f"age {stats.oldest_age_s}"
    assert (stats.policy, stats.disk_full) == ("drop_oldest", False), f"stats {stats}"


def test_concurrent_producer_and_consumer(spool_path: Path) -> None:
    # one thread appends while another leases and acks: each record is delivered once, none lost
    n = 3000
    delivered: list[str] = []
    with Spool.open(spool_path, commit_interval_ms=2.0, commit_batch=200) as spool:
        def produce() -> None:
            items = make_items(n)
            for i in range(0, n, 7):
                spool.append(items[i : i + 7])

        producer = threading.Thread(target=produce)
        producer.start()
        deadline = time.monotonic() + 30
        while len(delivered) < n and time.monotonic() < deadline:
            records = spool.lease(50)
            failed = [r for r in records[::10] if r.attempts == 1]  # some first deliveries fail: retried
            spool.release([r.seq for r in failed])
            done = [r for r in records if r not in failed]
            delivered += [r.detection_id for r in done]
            spool.ack([r.seq for r in done])
            if not records:
                time.sleep(0.001)
        producer.join(5)
        assert spool.flush(5), "flush did not finish"
        assert len(delivered) == len(set(delivered)) == n, f"{len(delivered)} deliveries, {len(set(delivered))} unique"
        assert spool.stats().depth == 0, f"stats {spool.stats()}"


def test_from_event() -> None:
    event = DetectionEvent(
        detection_id="d-1", vehicle_id="veh-7", session_id="20240501-abcdef", ingested_at="2024-05-01T12:00:01.000Z",
        frame_number=3, timestamp_sec=0.6, pixel_u=1.0, pixel_v=2.0, confidence=0.9, class_name="stop sign",
        vehicle_lat=None, vehicle_lon=None, heading=None, camera_id="cam", class_id=11,
        bbox=(1.0, 2.0, 3.0, 4.0), inference_latency_ms=5.0, captured_at="2024-05-01T12:00:00.500Z",
        model="yolov8n", source="x.mp4",
    )
    item = SpoolItem.from_event(event)
    assert (item.key, item.detection_id) == ("veh-7", "d-1"), f"item {item}"
    assert item.value == event.to_json().encode(), "value is the event JSON"
    assert item.captured_at == pytest.approx(1714564800.5), f"captured_at {item.captured_at}"
    assert item.schema_version == event.schema_version, "schema_version carried over"


def test_acks_are_deleted_as_runs_of_consecutive_seqs():
    from edge.spool.writer import runs

    assert runs([]) == [], "no acks, no ranges"
    assert runs([5, 3, 4, 4, 9, 1]) == [(1, 1), (3, 5), (9, 9)], "sorted, distinct, consecutive seqs joined"
    assert runs(range(10, 20)) == [(10, 19)], "one range for a contiguous lease"
