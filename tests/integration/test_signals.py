"""SIGTERM to `edge replay` / `edge ingest-csv` (real processes): stop reading, spool what is in flight, summary, 143."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from command_helpers import edge_env, number, pending

from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
# The bound is 5 s (measured: 0.8 s for a replay, 0.2 s for an ingest). Tests never fail on timing on
# these shared machines, so the test waits this long only to tell a stop from a hang, and prints the figure.
HANG_S = 60.0


def start_edge(*args: str, stderr: Path) -> subprocess.Popen:
    """`python -m edge ARGS` with no broker configured (events stay in the spool), stderr to a file."""
    env = edge_env()
    with open(stderr, "w") as fh:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "edge", *args], stdout=subprocess.DEVNULL, stderr=fh, env=env)


def stop_when(proc: subprocess.Popen, stderr: Path, ready: Callable[[], bool], what: str) -> tuple[int | None, str]:
    """Waits for `ready`, sends SIGTERM; the exit status (None: hung, then killed) and everything on stderr."""
    try:
        wait_until(lambda: ready() or proc.poll() is not None, what, 120)
        assert proc.poll() is None, f"it ended before it was stopped: {stderr.read_text()[-1500:]}"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(HANG_S)
        except subprocess.TimeoutExpired:
            code = None
        print(f"{what}: SIGTERM → exit {code} in {time.monotonic() - sent:.2f} s (issue's bound 5 s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return code, stderr.read_text()


@pytest.mark.slow
def test_sigterm_stops_a_replay_with_its_summary_and_every_event_spooled(tmp_path, data_dir, yolov8n):
    # given a replay of a real drive into a spool, with no broker, that has analysed a few frames
    state, err = tmp_path / "state", tmp_path / "stderr.txt"
    video = data_dir / "video" / "stop_sign_approach.mp4"
    proc = start_edge("replay", str(video), "--model", str(yolov8n), "--state-dir", str(state), stderr=err)
    # when it is sent SIGTERM after spooling a few events
    code, stderr = stop_when(proc, err, lambda: pending(state) >= 3, "the replay to spool 3 events")
    # then it ends, as stopped by SIGTERM, after its summary
    assert code == 128 + signal.SIGTERM, f"exit {code}, expected 143: {stderr[-1500:]}"
    assert "Traceback" not in stderr, f"no traceback on a stop: {stderr[-3000:]}"
    assert "stopped by SIGTERM" in stderr, f"summary says why it stopped: {stderr[-1500:]}"
    frames, detections = number(r"frames (\d+) in", stderr), number(r"detections (\d+) \(", stderr)
    spooled = number(r"events spooled: (\d+)", stderr)
    assert 0 < frames < 43, f"stopped part-way: {frames} of 43 frames analysed"
    # and every event of the frames it reports is in the spool, none missing, none twice
    assert spooled == detections, f"{detections} detections reported, {spooled} spooled: {stderr[-1500:]}"
    assert pending(state) == detections, f"spool holds {pending(state)} events, the summary says {detections}"
    assert pending(state, "count(DISTINCT detection_id)") == detections, "an event spooled twice"
    assert "not spooled" not in stderr, f"nothing in flight may be lost on a stop: {stderr[-1500:]}"


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "drive.csv"
    subprocess.run([sys.executable, str(REPO / "bench" / "csv_gen.py"), str(path), "--rows", "200000"],
                   check=True, capture_output=True, timeout=120)
    return path


def test_sigterm_stops_ingest_csv_with_its_summary_and_a_resumable_checkpoint(tmp_path, big_csv):
    # given an ingest of a large CSV file into a spool, with no broker, that has spooled its first rows
    state, err = tmp_path / "state", tmp_path / "stderr.txt"
    args = ("ingest-csv", str(big_csv), "--state-dir", str(state), "--rejects", str(tmp_path / "rejects.csv"))
    proc = start_edge(*args, stderr=err)
    # when it is sent SIGTERM after spooling its first rows
    code, stderr = stop_when(proc, err, lambda: pending(state) > 0, "the ingest to spool its first rows")
    # then it ends with 143 after its summary, the chunk in hand spooled and checkpointed
    assert code == 128 + signal.SIGTERM, f"exit {code}, expected 143: {stderr[-1500:]}"
    assert "Traceback" not in stderr, f"no traceback on a stop: {stderr[-3000:]}"
    assert "stopped: rerun the same command to continue" in stderr, f"summary says how to go on: {stderr[-1500:]}"
    spooled = number(r"spooled ([\d,]+) events", stderr)
    assert 0 < spooled < 200_000, f"stopped part-way: {spooled} events spooled"
    assert pending(state) == spooled, f"spool holds {pending(state)} events, the summary says {spooled}"
    # and the same command continues where it stopped: every row once, none twice
    proc = start_edge(*args, stderr=err)
    assert proc.wait(180) == 0, f"the rerun should finish the file: {err.read_text()[-1500:]}"
    assert pending(state) == 200_000, f"{pending(state)} events spooled in all, expected one per row"
    assert pending(state, "count(DISTINCT detection_id)") == 200_000, "rows spooled twice after the resume"
