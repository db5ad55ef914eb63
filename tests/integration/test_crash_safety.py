"""Crash safety against the real broker: a producing+flushing process is SIGKILLed at 20+ random points; at the
end the topic holds every event (none lost) and deduplication by detection_id leaves exactly N."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from edge.localkafka.topic import read_topic

CHILD = Path(__file__).resolve().parent / "crash_child.py"
N = 6000
KILLS = 20


def _ids_on_topic(bootstrap: str, topic: str) -> list[str]:
    return [event["detection_id"] for event in read_topic(bootstrap, topic, timeout=60)]


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path, tansu):
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    tansu.create_topic(topic, partitions=3)
    rng = random.Random(20261123)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [sys.executable, str(CHILD), str(tmp_path), tansu.bootstrap, topic, str(N)]
    kills = 0
    while kills < KILLS:
        child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=rng.uniform(0.4, 1.5))
            break  # finished before this kill: all appended and drained
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert "DONE" in final.stdout, f"the last run continues and drains: {final.stdout} {final.stderr[-2000:]}"
    assert kills >= KILLS, f"the child should be killed {KILLS} times before it finishes, got {kills}"
    ids = _ids_on_topic(tansu.bootstrap, topic)
    expected = {f"crash-{i:06d}" for i in range(N)}
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} events lost after {kills} SIGKILLs, e.g. {sorted(missing)[:5]}"
    assert set(ids) == expected, f"nothing but the expected ids: {len(set(ids) - expected)} extra"
    assert len(set(ids)) == N, f"deduplication by detection_id leaves exactly {N}, got {len(set(ids))}"
