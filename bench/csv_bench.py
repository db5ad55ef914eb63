"""CSV ingestion benchmarks: parsers compared, dry-run throughput, end to end into a local broker, peak RSS.

    .venv/bin/python bench/csv_bench.py [--rows N] [--only parse,e2e,rss] [--rss-rows N] [--dir DIR]

parse: every parser on the same generated file (N rows, default 500k), parse only and, where this project
       has the code, parse + validate + enrich + serialise (target: ≥ 1M rows/s for the latter).
e2e:   `edge ingest-csv` (a subprocess) into a local Tansu broker, every event acknowledged, against a bare producer
       process sending the same events pre-serialised (targets: ≥ 100k rows/s and ≥ 0.5× the bare producer).
rss:   peak RSS of a dry run over a 5M-row file, and of the e2e run (target ≤ 200 MB).
Each figure is the best of --repeat runs: the machine is shared and times drift.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_producer import tsv_line  # noqa: E402
from csv_gen import write_csv  # noqa: E402

from edge.ingest.convert import Converter  # noqa: E402
from edge.ingest.reader import CsvFile  # noqa: E402
from edge.ingest.run import Ingest, Options  # noqa: E402
from edge.ingest.sinks import DryRunSink  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_csv_module(path: Path) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        for _row in csv.reader(fh):
            pass


def parse_pyarrow(path: Path) -> None:
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20))
    for _batch in reader:
        pass


def parse_polars(path: Path) -> None:
    import polars as pl

    pl.read_csv(path)


def parse_numpy_structure(path: Path) -> None:
    """The fast path's own parse step: separators of every row found with numpy (no conversion)."""
    import numpy as np

    with CsvFile(path) as f:
        for chunk in f.chunks():
            arr = np.frombuffer(chunk.data, np.uint8)
            np.flatnonzero((arr == 44) | (arr == 10))


def full_exact(path: Path) -> None:
    """csv module + per-row validation + DetectionEvent.to_json (the exact path), one thread."""
    with CsvFile(path) as f:
        conv = Converter(f.header, _ctx(path), vectorised=False)
        for chunk in f.chunks():
            b = conv.convert(chunk.data, chunk.first_line, "2026-01-01T00:00:00.000Z")
            for _ in b.json_lines():
                pass


def full_fast(path: Path, workers: int) -> DryRunSink:
    """What `edge ingest-csv --dry-run` does: read, convert (numpy path), serialise, count."""
    sink = DryRunSink(samples=0)
    Ingest(Options("vehicle-001", "cam-front", workers=workers), sink).run([path])
    return sink


def _ctx(path: Path):  # noqa: ANN202
    from edge.ingest.run import file_context

    return file_context(path, Options("vehicle-001", "cam-front"))


def bench_parse(path: Path, rows: int, repeat: int) -> None:
    print(f"\n== parse: {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB ({path.name}); best of {repeat}")
    cases = [
        ("csv module: parse only", lambda: parse_csv_module(path)),
        ("pyarrow.csv (streaming reader): parse + convert types only", lambda: parse_pyarrow(path)),
        ("polars.read_csv: parse + convert types only", lambda: parse_polars(path)),
        ("numpy: row/field boundaries only", lambda: parse_numpy_structure(path)),
        ("csv module + validate + enrich + serialise (exact path)", lambda: full_exact(path)),
        ("numpy + validate + enrich + serialise, 1 thread (chosen)", lambda: full_fast(path, 1)),
        ("numpy + validate + enrich + serialise, 2 threads (chosen, default)", lambda: full_fast(path, 2)),
    ]
    for name, fn in cases:
        try:
            t = best(fn, repeat if "exact" not in name else 1)
        except ImportError as exc:
            print(f"  {name:<72} not installed ({exc.name})")
            continue
        print(f"  {name:<72} {rows / t:>12,.0f} rows/s")


# Runs the command from a small fresh process: a child forked from this (large) one would report this
# process's pages in its peak RSS (ru_maxrss counts the image before exec).
_LAUNCHER = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
    "print(f'MAXRSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); sys.exit(p.returncode)"
)


def _rss_run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) and stderr of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    lines = proc.stderr.splitlines()
    peak = int(lines[-1].split("=", 1)[1])
    return wall, peak, "\n".join(lines[:-1])


class _TsvSink:
    """Writes every event pre-serialised for bench/bare_producer.py: key TAB detection_id TAB value."""

    def __init__(self, fh):  # noqa: ANN001
        self.fh = fh

    def write(self, batch, ctx) -> None:  # noqa: ANN001
        for _line, value, did, _cap in batch.events():
            self.fh.write(tsv_line(ctx.vehicle_id, did, value))


def bench_e2e(path: Path, rows: int, workdir: Path, repeat: int) -> None:
    """`edge ingest-csv` into a broker against a bare producer process sending the same events, alternating."""
    from flush_bench import bare_command

    from edge.config import KafkaConfig
    from edge.localkafka.broker import LocalBroker
    from edge.localkafka.topic import read_topic

    print(f"\n== end to end: {rows:,} rows → local Tansu broker, every event acknowledged; best of {repeat}")
    events = workdir / "e2e-events.tsv"
    with open(events, "wb") as fh:
        Ingest(Options("vehicle-001", "cam-front"), _TsvSink(fh)).run([path])
    best: dict[str, float] = {}
    with LocalBroker(workdir / "broker") as broker:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "EDGE_"))}
        for r in range(repeat):
            for mode in (("edge", "bare") if r % 2 == 0 else ("bare", "edge")):
                topic = f"bench-csv-{mode}-{r}"
                broker.create_topic(topic, partitions=3)
                if mode == "edge":
                    env = dict(base, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, KAFKA_TOPIC=topic)
                    cmd = [sys.executable, "-m", "edge", "--log-level", "WARNING", "ingest-csv", str(path),
                           "--state-dir", str(workdir / f"state-e2e-{r}"), "-q"]
                    wall, peak, err = _rss_run(cmd, env)
                    print(f"  run {r + 1} edge ingest-csv  {rows / wall:>9,.0f} rows/s  peak RSS {peak / 1024:.0f} MB")
                    last_topic, last_err = topic, err
                else:
                    cmd = bare_command(KafkaConfig(bootstrap_servers=broker.bootstrap), events, topic)
                    wall, peak, _ = _rss_run(cmd, base)
                    print(f"  run {r + 1} bare producer   {rows / wall:>9,.0f} rows/s")
                best[mode] = min(best.get(mode, wall), wall)
        ids = {event["detection_id"] for event in read_topic(broker.bootstrap, last_topic, timeout=60)}
    print("  " + "\n  ".join(line for line in last_err.splitlines() if "sent" in line or "time" in line))
    print(f"  edge ingest-csv, process start to exit, all acked: {rows / best['edge']:,.0f} rows/s (target ≥ 100,000)")
    print(f"  bare producer, same events pre-serialised:        {rows / best['bare']:,.0f} rows/s")
    print(f"  ratio edge / bare {best['bare'] / best['edge']:.2f} (target ≥ 0.5)")
    print(f"  unique detection ids on the last topic: {len(ids):,} of {rows:,}")


def bench_rss(path: Path, rows: int) -> None:
    print(f"\n== peak RSS, dry run over {rows:,} rows ({path.stat().st_size / 1e6:.0f} MB)")
    cmd = [sys.executable, "-m", "edge", "--log-level", "WARNING", "ingest-csv", str(path), "--dry-run",
           "--samples", "0", "-q"]
    wall, peak, _err = _rss_run(cmd, dict(os.environ))
    print(f"  command: {' '.join(cmd[1:])}")
    print(f"  wall {wall:.1f} s ({rows / wall:,.0f} rows/s including process start); peak RSS {peak / 1024:.0f} MB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--rss-rows", type=int, default=5_000_000)
    p.add_argument("--e2e-rows", type=int, default=200_000)
    p.add_argument("--only", default="parse,e2e,rss")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", help="where to put generated files (default: a temporary directory)")
    args = p.parse_args()
    what = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="csv-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        if "parse" in what:
            path = write_csv(work / "bench.csv", args.rows)
            bench_parse(path, args.rows, args.repeat)
        if "e2e" in what:
            path = write_csv(work / "e2e.csv", args.e2e_rows, seed=2)
            bench_e2e(path, args.e2e_rows, work, args.repeat)
        if "rss" in what:
            path = write_csv(work / "rss.csv", args.rss_rows, seed=3)
            bench_rss(path, args.rss_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
