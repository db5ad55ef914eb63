"""`edge ingest-csv` against a real Kafka-protocol broker (Tansu, conftest's `tansu`): every row once, reruns add
no ids, kill -9 resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.localkafka.broker import LocalBroker
from edge.localkafka.topic import read_topic
from tests.integration.command_helpers import checkpointed_rows, write_drive_csv
from tests.support import wait_until

ROWS = 100_000
@pytest.fixture(scope="module")
def csv_100k(tmp_path_factory) -> Path:
    return write_drive_csv(tmp_path_factory.mktemp("csv") / "drive_100k.csv", ROWS)


def _cmd(path: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge", "ingest-csv", str(path), "--state-dir", str(state), "-q", *extra]


def _env(broker: LocalBroker, topic: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "EDGE_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, KAFKA_TOPIC=topic)
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _topic_ids(broker: LocalBroker, topic: str) -> list[str]:
    """Every detection_id on the topic (read after the run acked everything), duplicates included."""
    return [event["detection_id"] for event in read_topic(broker.bootstrap, topic, timeout=90)]


def test_100k_rows_arrive_once_and_reruns_add_no_ids(tansu, kafka_topic, csv_100k, tmp_path):
    broker, topic, state = tansu, kafka_topic, tmp_path / "state"
    env = _env(broker, topic)
    # when the file is ingested
    first = _run(_cmd(csv_100k, state), env)
    assert first.returncode == 0, first.stderr
    ids = _topic_ids(broker, topic)
    # then every row is on the topic once
    assert len(set(ids)) == ROWS, f"{len(set(ids))} unique ids on the topic, expected {ROWS}\n{first.stderr}"
    assert len(ids) == ROWS, f"{len(ids) - ROWS} duplicates after a clean run"
    # when the same command runs again: the file is done, nothing is sent
    again = _run(_cmd(csv_100k, state), env)
    assert again.returncode == 0 and "already ingested" in again.stderr, again.stderr
    # when forced: everything is sent again, with the same ids
    forced = _run(_cmd(csv_100k, state, "--force"), env)
    assert forced.returncode == 0, forced.stderr
    ids = _topic_ids(broker, topic)
    assert len(ids) == 2 * ROWS, f"--force must resend every row: {len(ids)} messages"
    assert len(set(ids)) == ROWS, "a rerun must not create new ids"


def test_kill_9_half_way_then_rerun_gives_every_id_once(tansu, kafka_topic, csv_100k, tmp_path):
    broker, topic, state = tansu, kafka_topic, tmp_path / "state"
    env = _env(broker, topic)
    # given a run killed with SIGKILL once about a third of the rows are checkpointed
    proc = subprocess.Popen(_cmd(csv_100k, state, "--workers", "1"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: checkpointed_rows(state) >= ROWS // 3 or proc.poll() is not None,
                   "a third of the rows to be checkpointed", 120, every=0.005)
    except AssertionError:
        proc.kill()
        proc.wait(10)
        raise
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read() if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    done = checkpointed_rows(state)
    assert ROWS // 3 <= done < ROWS, f"killed at {done} rows: not half-way"
    # when the same command runs again
    rerun = _run(_cmd(csv_100k, state), env)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed at line" in rerun.stderr, rerun.stderr
    # then every row is on the topic, none missing, no new ids
    ids = _topic_ids(broker, topic)
    assert len(set(ids)) == ROWS, f"{len(set(ids))} unique ids after kill -9 and rerun, expected {ROWS}"
