"""`edge queue flush` against a real broker: a spool written by the previous version (format 1, a committed fixture)
delivered without loss, an unreachable broker, no broker, no spool, a busy state dir, the bar on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from edge.localkafka.broker import LocalBroker
from edge.localkafka.topic import read_topic
from tests.integration.command_helpers import edge_env, pending
from tests.support import open_spool

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "spool-v1" / "spool.db"
FIXTURE_PENDING, FIXTURE_DEAD = 120, 2  # what make_fixture.py wrote


@pytest.fixture
def old_state(tmp_path: Path) -> Path:
    """A state dir holding a copy of the format-1 spool, as a vehicle upgraded with events pending has."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copyfile(FIXTURE, state / "spool.db")
    return state


def _flush(state: Path, bootstrap: str | None, topic: str = "unused", *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = edge_env()
    if bootstrap is not None:
        env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic)
    cmd = [sys.executable, "-m", "edge", "queue", "flush", "--state-dir", str(state), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _stats(state: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edge", "queue", "stats", "--json", "--state-dir", str(state)],
                          env=edge_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"queue stats should exit 0, got {proc.returncode}: {proc.stderr[-1500:]}"
    return json.loads(proc.stdout)


def test_a_format1_spool_is_delivered_by_this_version_without_loss(tansu: LocalBroker, kafka_topic: str, old_state: Path):
    proc = _flush(old_state, tansu.bootstrap, kafka_topic)
    assert proc.returncode == 0, f"flush of the fixture should exit 0, got {proc.returncode}: {proc.stderr[-2000:]}"
    assert f"flushed {FIXTURE_PENDING} events" in proc.stdout, f"summary should count {FIXTURE_PENDING}: {proc.stdout}"
    events = read_topic(tansu.bootstrap, kafka_topic, timeout=60)
    ids = {e["detection_id"] for e in events}
    expected = {str(uuid.UUID(int=0xF1 << 120 | i)) for i in range(FIXTURE_DEAD, FIXTURE_PENDING + FIXTURE_DEAD)}
    assert ids == expected, f"every pending fixture event exactly once by id: missing {sorted(expected - ids)[:5]}, " \
                            f"extra {sorted(ids - expected)[:5]}"
    assert len(events) == FIXTURE_PENDING, f"no duplicates on the topic: {len(events)} messages for {len(ids)} ids"
    assert all(e["schema_version"] == 1 and e["source"] == "fixture" for e in events), "events as the old version wrote them"
    st = _stats(old_state)
    assert (st["depth"], st["dead"], st["acked_total"]) == (0, FIXTURE_DEAD, FIXTURE_PENDING), \
        f"spool after the flush: nothing pending, the fixture's dead letters kept, every event acked: {st}"


def test_an_unreachable_broker_exits_1_and_keeps_every_event(old_state: Path):
    proc = _flush(old_state, "127.0.0.1:9", "t", "--timeout", "3")  # port 9 (discard): nothing listens
    assert proc.returncode == 1, f"a broker that never answers should exit 1, got {proc.returncode}: {proc.stderr[-2000:]}"
    last = proc.stderr.strip().splitlines()[-1]
    assert f"{FIXTURE_PENDING} events not delivered within 3 s" in last and "stay in the spool" in last, \
        f"the last line should say what was not delivered and where it is: {last!r}"
    assert "127.0.0.1:9 unreachable (" in last, f"the last line should name the broker and why it failed: {last!r}"
    assert "Traceback" not in proc.stderr, f"no traceback: {proc.stderr[-2000:]}"
    assert pending(old_state) == FIXTURE_PENDING, "every pending event is still in the spool"


def test_without_a_broker_it_names_the_key_and_exits_2(old_state: Path):
    proc = _flush(old_state, None)
    assert proc.returncode == 2, f"no broker configured is a configuration error (2), got {proc.returncode}"
    assert "kafka.bootstrap_servers" in proc.stderr, f"the message names the key: {proc.stderr!r}"
    assert pending(old_state) == FIXTURE_PENDING, "nothing touched"


def test_without_a_spool_there_is_nothing_to_flush(tmp_path: Path):
    proc = _flush(tmp_path / "empty", "127.0.0.1:9")
    assert proc.returncode == 0, f"no spool means nothing pending (0), got {proc.returncode}: {proc.stderr[-1000:]}"
    assert "nothing to flush" in proc.stdout, f"it says so: {proc.stdout!r}"


def test_a_state_dir_in_use_is_refused_with_its_owner(old_state: Path):
    spool = open_spool(old_state / "spool.db")
    try:
        proc = _flush(old_state, "127.0.0.1:9", "t", "--timeout", "3")
    finally:
        spool.close()
    assert proc.returncode == 2, f"a busy state dir is exit 2, got {proc.returncode}: {proc.stderr[-1000:]}"
    assert f"pid {os.getpid()}" in proc.stderr, f"the message names the owner's pid: {proc.stderr!r}"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_the_progress_bar_is_shown_on_a_terminal_only(tansu: LocalBroker, kafka_topic: str, old_state: Path, terminal: bool):
    env = edge_env() | {"KAFKA_BOOTSTRAP_SERVERS": tansu.bootstrap, "KAFKA_TOPIC": kafka_topic}
    cmd = [sys.executable, "-m", "edge", "queue", "flush", "--state-dir", str(old_state)]
    if terminal:
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=secondary)
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(primary)
        rc, err = proc.wait(120), b"".join(chunks).decode(errors="replace")
    else:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        rc, err = done.returncode, done.stderr
    assert rc == 0, f"flush should exit 0, got {rc}: {err[-1500:]}"
    bar = f"{FIXTURE_PENDING}/{FIXTURE_PENDING}"
    if terminal:
        assert "flush:" in err and bar in err, f"a terminal shows the bar with count {bar}: {err[-1500:]!r}"
    else:
        assert bar not in err and "\r" not in err, f"a pipe gets log lines, no bar: {err[-1500:]!r}"
