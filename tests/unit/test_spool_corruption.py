"""Spool on a damaged file: open never crashes, the bad file is kept aside, readable records are salvaged."""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest

from edge.spool import Spool, SpoolItem

N = 2000


def build(path: Path) -> dict[str, bytes]:
    """A closed spool of N records (some dead-lettered); returns detection_id -> value."""
    items = [
        SpoolItem("vehicle-001", f'{{"i":{i},"pad":"{"y" * 80}"}}'.encode(), f"det-{i}", 1_700_000_000.0 + i)
        for i in range(N)
    ]
    with Spool.open(path) as spool:
        for i in range(0, N, 100):
            spool.append(items[i : i + 100])
        for record in spool.lease(5):
            spool.dead_letter(record.seq, "poison")
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0, "WAL not checkpointed"
    return {i.detection_id: i.value for i in items}


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    mid = len(data) // 2
    for k in range(mid, mid + 4096, 7):
        data[k] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = bytes(random.Random(3).randrange(256) for _ in range(100))
    path.write_bytes(bytes(data))


def drain(spool: Spool) -> dict[str, bytes]:
    out = {}
    while records := spool.lease(500):
        out.update((r.detection_id, r.value) for r in records)
        spool.ack([r.seq for r in records])
    out.update((r.detection_id, r.value) for r, _, _ in spool.dead_letters(1000))
    return out


@pytest.mark.parametrize("damage", [flip_middle, truncate_half, garbage_header], ids=lambda f: f.__name__)
def test_damaged_file_opens_and_salvages(tmp_path: Path, damage, caplog: pytest.LogCaptureFixture) -> None:
    # given a spool file damaged while the daemon was down
    path = tmp_path / "spool.db"
    original = build(path)
    damage(path)
    damaged_bytes = path.read_bytes()
    # when it is opened
    with caplog.at_level(logging.WARNING), Spool.open(path) as spool:
        report = spool.recovery
        got = drain(spool)
        stats = spool.stats()
    # then nothing crashed, nothing wrong was returned, and the damage is accounted for
    wrong = [k for k, v in got.items() if original.get(k) != v]
    assert not wrong, f"records returned with wrong content: {wrong[:5]}"
    if report is None:  # the damage only hit record contents: checksums caught it
        assert stats.quarantined > 0, f"damage went unnoticed: {len(got)} records back, stats {stats}"
        return
    assert report.corrupt_path.exists(), f"the corrupt file {report.corrupt_path} must be kept"
    assert report.corrupt_path.read_bytes() == damaged_bytes, "the corrupt file must be kept unchanged"
    assert report.corrupt_path.name.startswith("spool.db.corrupt-"), f"moved to {report.corrupt_path.name}"
    assert report.salvaged == len(got), f"report says {report.salvaged} salvaged, {len(got)} came back"
    if report.lost is not None:
        assert report.salvaged + report.quarantined + report.lost == N, f"counts do not add up to {N}: {report}"
    assert any("salvage" in r.getMessage() for r in caplog.records), "salvage counts must be logged"
    if damage is truncate_half:
        assert report.salvaged > 0, f"half the file is intact, yet nothing was salvaged: {report}"
    # and the fresh spool works and is clean
    with Spool.open(path) as again:
        assert again.recovery is None, "the fresh spool must pass its check"
        again.append([SpoolItem("vehicle-001", b"{}", "after", 0.0)])
        assert [r.detection_id for r in again.lease(10)] == ["after"], "fresh spool does not work"


def test_flipped_value_byte_is_quarantined(tmp_path: Path) -> None:
    # given one record whose value bytes are changed inside the file itself
    path = tmp_path / "spool.db"
    with Spool.open(path) as spool:
        spool.append([SpoolItem("vehicle-001", b'{"marker":"ABCDEFGHIJ"}', "det-x", 1.0)])
    data = bytearray(path.read_bytes())
    at = data.index(b"ABCDEFGHIJ")
    data[at + 3] ^= 0x20
    path.write_bytes(bytes(data))
    # when opened and leased: quick_check passes, the checksum catches it
    with Spool.open(path) as spool:
        assert spool.lease(10) == [], "a flipped record must not be delivered"
        quarantined = spool.quarantined()
        assert [(q[0], "checksum" in q[1]) for q in quarantined] == [(1, True)], f"quarantine {quarantined}"


def test_wal_is_moved_aside_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    build(path)
    garbage_header(path)
    Path(f"{path}-wal").write_bytes(b"leftover wal")
    with Spool.open(path) as spool:
        report = spool.recovery
    assert report is not None, "a garbage header must be detected"
    assert Path(f"{report.corrupt_path}-wal").read_bytes() == b"leftover wal", "the -wal must be kept next to it"


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not sqlite at all\n" * 100)
    with Spool.open(path) as spool:
        assert spool.recovery is not None and spool.recovery.salvaged == 0, f"report {spool.recovery}"
        assert spool.recovery.lost is None, "nothing readable: the loss is unknown"
        assert spool.stats().depth == 0, "fresh spool must be empty"
    kept = list(tmp_path.glob("spool.db.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not"), f"kept {kept}"


def test_empty_file_is_a_fresh_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"")
    with Spool.open(path) as spool:
        assert spool.recovery is None, "an empty file is simply a new spool"
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM pending").fetchone()[0] == 0, "tables created"
