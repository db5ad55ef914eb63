"""One process owns a state dir: a second writer exits 2 naming the owner; a killed owner leaves it free."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.config import ENV_OVERRIDES
from edge.spool import Spool

REPO = Path(__file__).resolve().parents[2]

# Owns the state dir through the path every writer takes (edge.delivery.open_spool), appends 5 events, then
# says READY and waits: "close" on stdin closes the spool and says CLOSED, end of input exits.
OWNER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from edge.config import load_config
    from edge.delivery import open_spool
    from edge.spool import SpoolItem

    cfg = load_config(None, env={{}}, overrides={{"state.state_dir": {state!r}}})
    spool = open_spool(cfg)
    spool.append([SpoolItem("vehicle-001", b"{{}}", f"det-{{i}}", time.time()) for i in range(5)])
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "close":
            spool.close()
            print("CLOSED", flush=True)
    """
)


@pytest.fixture
def env(tmp_path: Path, yolov8n: Path) -> dict[str, str]:
    config = tmp_path / "edge.toml"
    config.write_text("")
    out = {k: v for k, v in os.environ.items() if k not in set(ENV_OVERRIDES) | {"EDGE_CONFIG"}}
    return out | {"EDGE_CONFIG": str(config), "EDGE_MODEL": str(yolov8n), "PYTHONPATH": str(REPO)}


def start_owner(state: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", OWNER.format(repo=str(REPO), state=str(state))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None, "no pipe to the owner"
    line = proc.stdout.readline()  # the child's first line, or "" when it died: no sleep, no busy wait
    assert line.strip() == "READY", f"the owner did not start: {line!r}, rc {proc.poll()}"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def edge(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_second_writer_exits_2_naming_the_owner(tmp_path: Path, env: dict[str, str], data_dir: Path) -> None:
    # given a process that owns the state dir
    state = tmp_path / "state"
    csv = tmp_path / "drive.csv"
    csv.write_text("frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading\n"
                   "1,0.1,10,20,0.9,stop sign,52.1,4.3,90\n")
    owner = start_owner(state)
    try:
        # when other writers start on the same state dir (the fault: two `edge replay`)
        runs = {
            "replay": edge(["replay", str(data_dir / "images" / "bus.jpg"), "--state-dir", str(state)], env),
            "ingest-csv": edge(["ingest-csv", str(csv), "--state-dir", str(state)], env),
            "requeue-dead": edge(["queue", "requeue-dead", "--state-dir", str(state)], env),
        }
        stats = edge(["queue", "stats", "--json", "--state-dir", str(state)], env)
    finally:
        stop(owner)
    # then each exits 2 with one line naming the state dir, the owner's pid and its command, and writes nothing
    for name, run in runs.items():
        assert run.returncode == 2, f"{name}: exit {run.returncode}, expected 2: {run.stderr}"
        assert f"state dir {state} is in use by pid {owner.pid} (-c" in run.stderr, f"{name}: {run.stderr}"
        assert "Traceback" not in run.stderr and "UNIQUE" not in run.stderr, f"{name}: one line: {run.stderr}"
    # and a read-only look works beside the owner
    assert stats.returncode == 0 and json.loads(stats.stdout)["depth"] == 5, f"stats: {stats.stdout}{stats.stderr}"
    with Spool.open(state / "spool.db") as spool:
        st = spool.stats()
        assert (st.depth, st.appended_total, len(spool.peek(100))) == (5, 5, 5), f"counters drifted: {st}"


def test_killed_owner_leaves_the_state_dir_free(tmp_path: Path, env: dict[str, str]) -> None:
    # given an owner killed with SIGKILL (it never closes anything)
    state = tmp_path / "state"
    owner = start_owner(state)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(10)
    assert owner.returncode == -signal.SIGKILL, f"owner ended with {owner.returncode}"
    # when the next writer opens the state dir
    run = edge(["queue", "requeue-dead", "--state-dir", str(state)], env)
    # then it owns it at once, with every committed event
    assert run.returncode == 0, f"a killed owner's lock must be free: {run.stderr}"
    with Spool.open(state / "spool.db") as spool:
        assert spool.stats().depth == 5, f"events after the kill: {spool.stats()}"


def test_owner_releases_at_close_while_still_running(tmp_path: Path) -> None:
    # given an owner that closed its spool but is still running
    state = tmp_path / "state"
    owner = start_owner(state)
    try:
        assert owner.stdin is not None and owner.stdout is not None, "no pipes to the owner"
        owner.stdin.write("close\n")
        owner.stdin.flush()
        assert owner.stdout.readline().strip() == "CLOSED", "the owner did not close its spool"
        # when another process opens it
        with Spool.open(state / "spool.db") as spool:
            # then it may
            assert spool.stats().depth == 5, f"stats {spool.stats()}"
    finally:
        stop(owner)
