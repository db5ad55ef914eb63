"""`edge queue flush` of a full spool against a bare confluent-kafka producer process, same broker, same run.

    .venv/bin/python bench/flush_bench.py [--events 300000] [--repeat 3] [--dir DIR]

The depot case: a vehicle back from a week offline, N events pending. Both sides are processes timed from start
to exit (Python start-up, imports, producer start included), each into a fresh 3-partition topic of one local
Tansu broker, alternating, best of --repeat:
  flush: `python -m edge queue flush --state-dir S -q` over a copy of a spool holding the N events;
  bare:  `python bench/bare_producer.py CONFIG FILE TOPIC`: a confluent-kafka Producer with the flusher's settings
         (producer_config: idempotent, acks=all, zstd, same linger and batch) produces the same N events, read
         pre-serialised from a file, with the same key and headers, and waits for every delivery report.
CPU is user + system of the child (all its threads). Target: flush/bare ≥ 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]


def prepare(work: Path, n: int) -> tuple[Path, Path]:
    """A spool holding the N events (closed: checkpointed) and the same events pre-serialised for the bare side."""
    from bare_producer import tsv_line
    from drain_bench import make_items

    from edge.spool import Spool

    items = make_items(n, 3)
    lines = work / "events.tsv"
    with open(lines, "wb") as fh:
        for it in items:
            fh.write(tsv_line(it.key, it.detection_id, it.value))
    state = work / "state-template"
    state.mkdir()
    with Spool.open(state / "spool.db", max_bytes=4 << 30, when_full="block") as spool:
        for i in range(0, n, 5000):
            spool.append(items[i : i + 5000])
    for name in ("spool.db.lock", "spool.db.reserve"):
        (state / name).unlink(missing_ok=True)
    return state, lines


def bare_command(cfg, lines: Path, topic: str) -> list[str]:  # noqa: ANN001 - edge.config.KafkaConfig
    """The reference process: bench/bare_producer.py with the flusher's librdkafka settings for `cfg`."""
    from edge.sinks.kafka import producer_config

    conf = {k: v for k, v in producer_config(cfg).items() if k != "statistics.interval.ms"}  # no stats_cb there
    return [sys.executable, str(Path(__file__).with_name("bare_producer.py")), json.dumps(conf), str(lines), topic]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of a child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", help="work directory (default: a temporary directory)")
    args = p.parse_args()

    from edge.config import KafkaConfig
    from edge.localkafka.broker import LocalBroker
    from edge.localkafka.topic import read_topic

    n = args.events
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="flush-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        template, lines = prepare(work, n)
        print(f"== {n:,} events; spool {os.path.getsize(template / 'spool.db') / 1e6:.0f} MB, "
              f"written in {time.perf_counter() - t0:.1f} s (not timed below)")
        with LocalBroker(work / "broker") as broker:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "EDGE_"))}
            last_topic = ""
            for r in range(args.repeat):
                for mode in (("flush", "bare") if r % 2 == 0 else ("bare", "flush")):
                    topic = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
                    broker.create_topic(topic, partitions=3)
                    if mode == "flush":
                        state = work / f"state-{r}"
                        shutil.copytree(template, state)
                        cmd = [sys.executable, "-m", "edge", "--log-level", "WARNING", "queue", "flush",
                               "--state-dir", str(state), "-q", "--timeout", "600"]
                        wall, cpu = timed(cmd, env | {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPIC": topic})
                        shutil.rmtree(state)
                        last_topic = topic
                    else:
                        wall, cpu = timed(bare_command(KafkaConfig(bootstrap_servers=broker.bootstrap), lines, topic), env)
                    print(f"   run {r + 1} {mode:<5} {wall:6.2f} s  {n / wall:>9,.0f} events/s  "
                          f"{cpu / n * 1e6:5.1f} µs CPU/event")
                    if mode not in best or wall < best[mode][0]:
                        best[mode] = (wall, cpu)
            unique = len({e["detection_id"] for e in read_topic(broker.bootstrap, last_topic, timeout=120)})
    (fw, fc), (bw, bc) = best["flush"], best["bare"]
    print(f"\n   best of {args.repeat}, process start to exit")
    print(f"   edge queue flush   {n / fw:>9,.0f} events/s  {fc / n * 1e6:5.1f} µs CPU/event")
    print(f"   bare producer      {n / bw:>9,.0f} events/s  {bc / n * 1e6:5.1f} µs CPU/event")
    print(f"   ratio flush / bare {bw / fw:9.2f} (target ≥ 0.80); CPU per event flush / bare {fc / bc:.2f} (target ≤ 1.5)")
    print(f"   unique detection ids on the last flush topic: {unique:,} of {n:,}")
    return 0 if unique == n else 1


if __name__ == "__main__":
    sys.exit(main())
