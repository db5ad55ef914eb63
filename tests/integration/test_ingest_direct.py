"""`edge ingest-csv` straight to Kafka (edge.ingest.direct) when the broker is not there, or goes away mid-run:
nothing lost, what was not acknowledged is in the spool, and the flusher delivers it once the broker is back."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.localkafka.topic import read_topic
from tests.integration.command_helpers import (
    Background,
    checkpointed_rows,
    edge_env,
    pending,
    write_drive_csv,
)
from tests.support import wait_until


def _cmd(csv: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge", "ingest-csv", str(csv), "--state-dir", str(state), *extra]


def test_an_unreachable_broker_leaves_every_event_in_the_spool(tmp_path: Path):
    rows = 5000
    csv, state = write_drive_csv(tmp_path / "drive.csv", rows), tmp_path / "state"
    env = edge_env() | {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "KAFKA_TOPIC": "t"}  # port 9: nothing listens
    proc = subprocess.run(_cmd(csv, state, "--stall-timeout", "1", "--drain-timeout", "2"), env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, f"not delivered is exit 1, got {proc.returncode}: {proc.stderr[-2000:]}"
    assert "go through the spool" in proc.stderr, f"the switch to the spool is logged: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert pending(state) == rows, f"every event of the file waits in the spool: {pending(state)} of {rows}"
    again = subprocess.run(_cmd(csv, state, "--stall-timeout", "1", "--drain-timeout", "1"), env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert "already ingested" in again.stderr, f"the file is done (its events are safe): {again.stderr[-1500:]}"
    assert pending(state) == rows, f"a rerun adds nothing to the spool: {pending(state)}"


@pytest.fixture
def proxied(proxied_broker):
    proxied_broker.proxy.restore()
    yield proxied_broker
    proxied_broker.proxy.restore()


def test_a_broker_cut_mid_run_loses_nothing_and_the_flusher_sends_the_rest(proxied, tmp_path: Path):
    rows = 60_000
    csv, state = write_drive_csv(tmp_path / "drive.csv", rows), tmp_path / "state"
    topic = proxied.create_topic()
    env = edge_env() | {"KAFKA_BOOTSTRAP_SERVERS": proxied.bootstrap, "KAFKA_TOPIC": topic}
    with Background(_cmd(csv, state, "--stall-timeout", "2", "--workers", "1"), env) as run:
        proc = run.proc
        progress = state / "ingest-progress.db"
        wait_until(lambda: progress.exists() or proc.poll() is not None, "the first checkpoint", 60, every=0.005)
        proxied.proxy.cut()
        wait_until(lambda: pending(state) > 0 or proc.poll() is not None, "events going to the spool", 60)
        proxied.proxy.restore()
        rc = proc.wait(180)
    stderr = run.output()
    assert rc == 0, f"the run delivers everything once the broker is back (exit 0), got {rc}: {stderr[-2500:]}"
    assert "go through the spool" in stderr, f"the cut sent the rest through the spool: {stderr[-2500:]}"
    ids = [e["detection_id"] for e in read_topic(proxied.bootstrap, topic, timeout=90)]
    assert len(set(ids)) == rows, f"every row on the topic: {len(set(ids))} unique ids of {rows}\n{stderr[-1500:]}"
    assert pending(state) == 0, f"the spool is empty at the end: {pending(state)}"


def test_sigterm_mid_run_stops_with_143_and_the_rerun_sends_every_row_once(tansu, kafka_topic, tmp_path: Path):
    rows = 200_000
    csv, state, err = write_drive_csv(tmp_path / "drive.csv", rows), tmp_path / "state", tmp_path / "stderr.txt"
    env = edge_env() | {"KAFKA_BOOTSTRAP_SERVERS": tansu.bootstrap, "KAFKA_TOPIC": kafka_topic}
    with open(err, "w") as fh:
        proc = subprocess.Popen(_cmd(csv, state, "--workers", "1"), env=env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        wait_until(lambda: checkpointed_rows(state) > 0 or proc.poll() is not None, "a first chunk acknowledged", 60,
                   every=0.005)
        assert proc.poll() is None, f"the run ended before the signal: {err.read_text()[-1500:]}"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = err.read_text()
    assert code == 128 + signal.SIGTERM, f"a SIGTERM ends the run with 143, got {code}: {stderr[-1500:]}"
    assert "Traceback" not in stderr and "stopped: rerun the same command" in stderr, f"summary: {stderr[-1500:]}"
    rerun = subprocess.run(_cmd(csv, state), env=env, capture_output=True, text=True, timeout=180, check=False)
    assert rerun.returncode == 0 and "resumed at line" in rerun.stderr, f"the rerun resumes: {rerun.stderr[-1500:]}"
    ids = [e["detection_id"] for e in read_topic(tansu.bootstrap, kafka_topic, timeout=90)]
    assert len(set(ids)) == rows, f"every row on the topic after the stop and the rerun: {len(set(ids))} of {rows}"
    assert pending(state) == 0, f"nothing left in the spool: {pending(state)}"
