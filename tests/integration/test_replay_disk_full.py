"""A full disk under `edge replay` and `edge ingest-csv` (a real small file system): bounded, counted, resumable."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from command_helpers import edge_env, number, pending
from test_spool_disk_full import batch, fill_leaving, fill_until_disk_full, small_tmpfs

from edge.delivery import SpoolSink
from edge.spool import Spool, SpoolFull

BOUND_S = 2.0  # spool.block_timeout_s for these runs (default 30 s)
ENDS_WITHIN_S = 60.0  # model load, frames up to the full disk, the bound, frames in flight: far less than this
REPO = Path(__file__).resolve().parents[2]


def edge(*args: str, timeout: float = ENDS_WITHIN_S) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m edge ARGS` without a broker; fails the test when it has not ended within `timeout` (a hang)."""
    env = edge_env()
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"edge {args[0]} still running after {timeout:.0f} s on a full disk: {str(exc.stderr)[-1500:]}")
    return proc, time.monotonic() - start


def assert_stopped_on_full_disk(proc: subprocess.CompletedProcess, took: float, state: Path, summary: str) -> None:
    """Exit 1, no traceback, `summary` in the output, and a last line naming the full disk and its free bytes."""
    assert proc.returncode == 1, f"exit {proc.returncode} after {took:.1f} s: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, f"no traceback: {proc.stderr[-3000:]}"
    assert summary in proc.stderr, f"the summary says it stopped: {proc.stderr[-1500:]}"
    last = proc.stderr.strip().splitlines()[-1]
    assert f"disk full: {state} has" in last and "bytes free" in last, f"last line names the disk: {last}"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Callable[[int], tuple[Path, Path]]]:
    """free → (state directory on a 16 MiB file system with about `free` bytes left, config file with the bound)."""
    config = tmp_path / "edge.toml"
    config.write_text(f"[spool]\nblock_timeout_s = {BOUND_S}\n")
    with small_tmpfs(tmp_path / "fs", "16m") as fs:

        def make(free: int) -> tuple[Path, Path]:
            state = fs / "state"
            state.mkdir()
            fill_leaving(fs, free)
            return state, config

        yield make


def test_spool_sink_gives_up_after_the_bound_and_names_the_disk(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs") as fs, Spool.open(fs / "spool.db", when_full="block", commit_interval_ms=1.0) as spool:
        fill_leaving(fs, 0)
        stop = threading.Event()
        sink = SpoolSink(spool, live=False, room_timeout=1.0, stop=stop)
        # when appends find the disk full
        start = time.monotonic()
        with pytest.raises(SpoolFull):
            for i in range(0, 40_000, 10):
                sink.append(batch(i))
        took = time.monotonic() - start
        # then the sink waits the bound, not forever, says why and asks the command to stop
        assert took < 30, f"gave up after {took:.1f} s"
        assert stop.is_set(), "giving up must stop the source"
        assert sink.no_room and str(fs) in sink.no_room and "bytes free" in sink.no_room, f"names the disk: {sink.no_room}"
        # and later appends do not wait again
        start = time.monotonic()
        with pytest.raises(SpoolFull):
            sink.append(batch(10**6))
        assert time.monotonic() - start < 0.5, "after giving up, appends fail at once"
        assert spool.stats().depth == sink.written, f"spool depth {spool.stats().depth}, sink wrote {sink.written}"


def test_spool_sink_waits_while_deliveries_make_room(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", "8m") as fs, Spool.open(fs / "spool.db", when_full="block", commit_interval_ms=1.0) as spool:
        (fs / "filler").write_bytes(bytes(4 << 20))
        fill_until_disk_full(spool, timeout=0.3)
        sink = SpoolSink(spool, live=False, room_timeout=5.0)

        def deliver() -> None:  # the flusher: Kafka acknowledges a batch
            spool.ack(r.seq for r in spool.lease(2000))

        # when an append finds no room and a delivery frees some a second later, within the bound
        flusher = threading.Timer(1.0, deliver)
        flusher.start()
        sink.append(batch(10**6))
        flusher.join(10)
        # then it went through and the sink never gave up
        assert sink.no_room is None, f"gave up although room was made: {sink.no_room}"
        assert sink.written == 10, f"the append was written: {sink.written}"


@pytest.mark.slow
def test_replay_onto_a_full_disk_ends_with_what_was_kept(full_disk, data_dir: Path, yolov8n: Path) -> None:
    state, config = full_disk(100 << 10)  # the spool opens, and the disk fills up a few frames later
    video = data_dir / "video" / "stop_sign_approach.mp4"
    args = ("replay", str(video), "--model", str(yolov8n), "--state-dir", str(state), "--config", str(config), "-q")
    # when a replay spools onto a disk that fills up and stays full
    proc, took = edge(*args)
    # then it ends within the bound with exit 1, its summary, and a last line naming the disk
    assert_stopped_on_full_disk(proc, took, state, "stopped: no room")
    detections = number(r"detections (\d+) \(", proc.stderr)
    kept = number(r"events spooled: (\d+)", proc.stderr)
    lost = number(r"not spooled: (\d+)", proc.stderr)
    assert number(r"frames (\d+) in", proc.stderr) < 43, "the replay stopped reading"
    assert kept + lost == detections, f"{kept} kept + {lost} not spooled != {detections} detections"
    assert pending(state) == kept, f"spool holds {pending(state)} events, the summary says {kept} were kept"
    # and once there is room again the same replay spools every event of the drive (same ids)
    (state.parent / "filler").unlink()
    proc, _ = edge(*args, timeout=300)
    assert proc.returncode == 0, f"the replay with room succeeds: {proc.stderr[-2000:]}"
    total = number(r"detections (\d+) \(", proc.stderr)
    assert pending(state, "count(DISTINCT detection_id)") == total, "every event of the drive is in the spool"


def test_ingest_csv_onto_a_full_disk_stops_and_resumes(full_disk, tmp_path: Path) -> None:
    state, config = full_disk(400 << 10)  # the spool and the checkpoints open; the first chunk does not fit
    csv = tmp_path / "drive.csv"
    subprocess.run([sys.executable, str(REPO / "bench" / "csv_gen.py"), str(csv), "--rows", "3000"],
                   check=True, capture_output=True, timeout=60)
    args = ("ingest-csv", str(csv), "--state-dir", str(state), "--config", str(config),
            "--rejects", str(tmp_path / "rejects.csv"))
    # when an ingest spools onto a disk without room
    proc, took = edge(*args)
    # then it ends within the bound with exit 1, its summary, and a last line naming the disk
    assert_stopped_on_full_disk(proc, took, state, "stopped: rerun the same command to continue")
    assert pending(state) == number(r"spooled ([\d,]+) events", proc.stderr), "the summary counts what was kept"
    # and once there is room again the same command finishes the file, every row once
    (state.parent / "filler").unlink()
    proc, _ = edge(*args)
    assert proc.returncode == 0, f"the rerun with room succeeds: {proc.stderr[-2000:]}"
    assert pending(state, "count(DISTINCT detection_id)") == pending(state) == 3000, "every row spooled once"
