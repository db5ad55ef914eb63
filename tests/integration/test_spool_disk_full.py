"""Spool on a real full file system (a small tmpfs): no crash, the policy applies, disk_full shows and clears."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.spool import Spool, SpoolFull, SpoolItem
from tests.support import wait_until

FS_SIZE = "8m"
FILLER_BYTES = 4 << 20  # someone else's data; deleting it gives the disk room again


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: str = FS_SIZE) -> Iterator[Path]:
    """A real, size-limited file system (tmpfs, so the machine's disk is never filled) mounted at
    `mount_point` for the block; skips the test where it cannot be mounted (needs root)."""
    mount_point.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


def fill_leaving(fs: Path, free: int, name: str = "filler") -> Path:
    """Someone else's data: a file that leaves about `free` bytes of `fs` free (deleting it gives room again)."""
    st = os.statvfs(fs)
    filler = fs / name
    filler.write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - free)))
    return filler


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "fs") as mount_point:
        (mount_point / "filler").write_bytes(bytes(FILLER_BYTES))
        yield mount_point


def batch(i: int, n: int = 10) -> list[SpoolItem]:
    pad = b"z" * 250
    now = time.time()
    return [SpoolItem("vehicle-001", b'{"i":%d,"pad":"%s"}' % (k, pad), f"det-{k}", now) for k in range(i, i + n)]


def fill_until_disk_full(spool: Spool, limit: int = 40_000, *, timeout: float | None = None) -> tuple[int, int]:
    """Append until stats show disk_full and then some more; returns (appended items, SpoolFull errors)."""
    i = errors = 0
    extra = None
    while i < limit:
        try:
            spool.append(batch(i), timeout=timeout)
        except SpoolFull:
            errors += 1
            if errors >= 3:
                break
        i += 10
        if extra is None and spool.stats().disk_full:
            extra = i + 3000  # go on well past the point the disk filled up
        if extra is not None and i >= extra:
            break
    return i, errors


def test_drop_oldest_keeps_accepting_on_full_disk(small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.spool"), Spool.open(
        small_fs / "spool.db", when_full="drop_oldest", commit_interval_ms=1.0
    ) as spool:
        # when appends outgrow the file system
        appended, errors = fill_until_disk_full(spool)
        stats = spool.stats()
        # then the spool evicts the oldest and keeps accepting: no crash, no failed append
        assert stats.disk_full, f"disk_full not shown after {appended} appends: {stats}"
        assert errors == 0, f"{errors} appends failed under drop_oldest"
        assert stats.evicted_total > 0, f"nothing evicted on a full disk: {stats}"
        assert stats.depth + stats.evicted_total == stats.appended_total, f"records unaccounted for: {stats}"
        newest = spool.peek(1_000_000)[-1].detection_id
        assert newest == f"det-{appended - 1}", f"the newest record must be kept, newest is {newest}"
        # when the disk gets room again, the condition clears
        (small_fs / "filler").unlink()
        def cleared() -> bool:
            if not spool.stats().disk_full:
                return True
            spool.append(batch(10**6), timeout=5)  # the condition is re-checked on a write
            return False

        wait_until(cleared, "disk_full to clear after space was freed", 10, every=0)
    full_logs = [r for r in caplog.records if "disk full (" in r.getMessage()]
    clear_logs = [r for r in caplog.records if "no longer full" in r.getMessage()]
    assert len(full_logs) == 1, f"disk full must be logged once when it starts, got {len(full_logs)}"
    assert len(clear_logs) == 1, f"and once when it clears, got {len(clear_logs)}"
    with Spool.open(small_fs / "spool.db") as again:
        assert again.recovery is None, f"the spool must be intact after a full disk: {again.recovery}"


def test_block_waits_on_full_disk_and_resumes_after_acks(small_fs: Path) -> None:
    with Spool.open(small_fs / "spool.db", when_full="block", commit_interval_ms=1.0) as spool:
        # when the disk fills up, appends wait and then time out cleanly
        appended, errors = fill_until_disk_full(spool, timeout=0.3)
        stats = spool.stats()
        assert stats.disk_full, f"disk_full not shown after {appended} appends: {stats}"
        assert errors >= 1, "under block, an append into a full disk must time out with SpoolFull"
        assert stats.evicted_total == 0, f"block must never evict: {stats}"
        depth = stats.depth
        # then acks free room inside the file and appends go through again
        records = spool.lease(2000)
        spool.ack(r.seq for r in records)
        assert spool.flush(10), "acks could not be committed on a full disk"
        spool.append(batch(10**6), timeout=10)
        stats = spool.stats()
        assert stats.depth == depth - len(records) + 10, f"depth {stats.depth}, expected {depth - len(records) + 10}"
        assert stats.acked_total == len(records), f"acked_total {stats.acked_total}"
