"""A WAL lost or damaged after SIGKILL: the spool says how many events are gone and keeps every intact one."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.spool import Spool

REPO = Path(__file__).resolve().parents[2]
WAL_HEADER, FRAME_HEADER, PAGE = 32, 24, 4096  # https://www.sqlite.org/fileformat.html#the_write_ahead_log

# Appends `big` events with 3 KB of padding (enough WAL for SQLite to checkpoint some of them into the
# database file), then `small` events in commits of 5, acks the first `acked`, says READY and waits to be killed.
WRITER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from edge.spool import Spool, SpoolItem

    spool = Spool.open({path!r}, commit_interval_ms=1.0)
    n = 0
    def append(count, pad):
        global n
        spool.append([SpoolItem("vehicle-001", json.dumps({{"i": i, "pad": "p" * pad}}).encode(), f"det-{{i:05d}}",
                                1.7e9 + i) for i in range(n, n + count)])
        n += count
    for _ in range({big}):
        append(1, 3000)
    for _ in range(0, {small}, 5):
        append(5, 20)
    leased = spool.lease({acked}) if {acked} else []
    spool.ack(r.seq for r in leased)
    assert spool.flush(10), "acks not committed"
    print("READY", n, flush=True)
    sys.stdin.read()
    """
)


def write_and_kill(path: Path, *, big: int = 0, small: int = 25, acked: int = 0) -> int:
    """Runs the writer, kills it with SIGKILL once everything is committed; returns how many it appended."""
    code = WRITER.format(repo=str(REPO), path=str(path), big=big, small=small, acked=acked)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None, "no pipe to the writer"
        line = proc.stdout.readline()  # blocks until the child has committed everything (or died)
        assert line.startswith("READY"), f"writer failed: {line!r}, rc {proc.poll()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"writer ended with {proc.returncode}, not by SIGKILL"
    assert Path(f"{path}-wal").stat().st_size > WAL_HEADER, "the newest commits must be in the WAL"
    return int(line.split()[1])


def frames(wal: Path) -> int:
    return (wal.stat().st_size - WAL_HEADER) // (FRAME_HEADER + PAGE)


def intact(wal: Path) -> None:
    pass


def delete(wal: Path) -> None:
    wal.unlink()


def truncate(wal: Path) -> None:
    os.truncate(wal, WAL_HEADER + frames(wal) // 2 * (FRAME_HEADER + PAGE) + 100)  # ends inside a frame


def corrupt(wal: Path) -> None:
    at = WAL_HEADER + frames(wal) // 2 * (FRAME_HEADER + PAGE) + FRAME_HEADER + 1000  # page data of a middle frame
    with open(wal, "r+b") as fh:
        fh.seek(at)
        data = fh.read(64)
        fh.seek(at)
        fh.write(bytes(b ^ 0xFF for b in data))


def reopen(path: Path, caplog: pytest.LogCaptureFixture) -> tuple[list, object, object, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING), Spool.open(path) as spool:
        records = spool.peek(1_000_000)
        loss, stats = spool.wal_loss, spool.stats()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return records, loss, stats, errors


def check_intact(records: list, first: int = 0) -> None:
    """Every record present is one the writer appended, unchanged, in order, with none missing before the last."""
    ids = [r.detection_id for r in records]
    expected = [f"det-{i:05d}" for i in range(first, first + len(records))]
    assert ids == expected, f"present records must be det-{first}.. in order: {ids[:3]}…{ids[-3:]}"
    for r in records:
        i = int(r.detection_id[4:])
        assert r.value.startswith(b'{"i": %d, "pad": "' % i), f"record {r.detection_id} changed: {r.value[:40]!r}"


@pytest.mark.parametrize("damage", [intact, delete, truncate, corrupt], ids=lambda f: f.__name__)
def test_wal_damage_is_reported_with_the_count_lost(
    tmp_path: Path, damage: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    # given 25 events committed in 5 commits by a writer killed with SIGKILL: they live only in the WAL
    path = tmp_path / "spool.db"
    appended = write_and_kill(path)
    # when the WAL is damaged and the spool reopened
    damage(Path(f"{path}-wal"))
    records, loss, stats, errors = reopen(path, caplog)
    # then what is there is intact, and what is not is counted and said, exactly
    check_intact(records)
    gone = appended - len(records)
    if damage is intact:
        assert gone == 0 and loss is None and not errors, f"nothing may be reported lost: {loss} {errors}"
        return
    assert gone > 0, f"{damage.__name__} should have cost some of the {appended} events"
    assert loss is not None and loss.lost == gone, f"{gone} events are gone, the spool reports {loss}"
    assert (loss.expected_last_seq, loss.found_last_seq) == (appended, len(records)), f"seqs in {loss}"
    assert stats.lost_total == gone, f"lost_total {stats.lost_total}, expected {gone}"
    assert any(f"{gone} events lost" in e for e in errors), f"an ERROR line must give the count: {errors}"
    # and the next open has nothing new to report, but keeps the count
    _, again, stats2, errors2 = reopen(path, caplog)
    assert again is None and not errors2 and stats2.lost_total == gone, f"reported once: {again} {errors2} {stats2}"


def test_events_acked_before_the_loss_are_not_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # given 25 events of which the first 10 were delivered (acked), then SIGKILL, then the WAL deleted
    path = tmp_path / "spool.db"
    appended = write_and_kill(path, acked=10)
    delete(Path(f"{path}-wal"))
    # when the spool is reopened
    records, loss, stats, _ = reopen(path, caplog)
    # then the 15 undelivered ones are reported lost, not the delivered ones
    assert (appended, len(records)) == (25, 0), f"all 25 were only in the WAL: {len(records)} present"
    assert loss is not None and loss.lost == 15 and stats.lost_total == 15, f"15 undelivered events lost: {loss}"


def test_loss_after_a_checkpoint_counts_only_what_the_wal_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given enough events for SQLite to checkpoint part of them into the database file, then 25 more, SIGKILL
    path = tmp_path / "spool.db"
    appended = write_and_kill(path, big=400)
    # when the WAL is deleted
    delete(Path(f"{path}-wal"))
    records, loss, stats, _ = reopen(path, caplog)
    # then the checkpointed ones are there, intact, and exactly the rest is reported lost
    check_intact(records)
    assert 0 < len(records) < appended, f"part should be in the database file: {len(records)} of {appended}"
    assert loss is not None and loss.lost == appended - len(records), (
        f"{appended - len(records)} gone, reported {loss}")
    assert stats.lost_total == loss.lost, f"lost_total {stats.lost_total}"
