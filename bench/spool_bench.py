"""Benchmark: durable append + lease + ack through Spool, and the same through persist-queue's SQLiteAckQueue.

Usage: .venv/bin/python bench/spool_bench.py [--n 100000] [--pq-n 3000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.spool import Spool, SpoolItem  # noqa: E402


def make_payloads(n: int, seed: int = 1) -> list[dict]:
    """Event-like JSON objects of about 300 bytes (a trimmed DetectionEvent)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append({
            "detection_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "vehicle_id": "vehicle-001",
            "frame_number": i,
            "captured_at": "2024-05-01T12:00:00.000Z",
            "class_name": rng.choice(["stop sign", "traffic light"]),
            "confidence": round(rng.random(), 4),
            "bbox": [round(rng.uniform(0, 1920), 2) for _ in range(4)],
            "vehicle_lat": round(rng.uniform(-90, 90), 6),
            "vehicle_lon": round(rng.uniform(-180, 180), 6),
            "heading": round(rng.uniform(0, 360), 1),
            "schema_version": 1,
        })
    return out


def bench_spool(n: int, directory: Path, chunk: int, lease_n: int) -> dict[str, float]:
    payloads = make_payloads(n)
    now = time.time()
    items = [
        SpoolItem("vehicle-001", json.dumps(p, separators=(",", ":")).encode(), p["detection_id"], now)
        for p in payloads
    ]
    spool = Spool.open(directory / "spool.db", max_bytes=1 << 30)
    try:
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            spool.append(items[i : i + chunk])  # durable on return
        t1 = time.perf_counter()
        got = 0
        while got < n:
            records = spool.lease(lease_n)
            if not records:
                raise RuntimeError(f"spool ran dry after {got} of {n} records")
            spool.ack([r.seq for r in records])
            got += len(records)
        spool.flush()
        t2 = time.perf_counter()
        stats = spool.stats()
        commits = spool.commits
    finally:
        spool.close()
    assert stats.depth == 0 and stats.acked_total == n, stats
    return {
        "n": n,
        "append_s": t1 - t0,
        "drain_s": t2 - t1,
        "total_s": t2 - t0,
        "commits": commits,
        "payload_bytes": sum(len(i.value) for i in items) / n,
    }


def bench_persist_queue(n: int, directory: Path) -> dict[str, float] | None:
    try:
        import persistqueue
        from persistqueue.serializers import json as pq_json
    except ImportError:
        return None
    payloads = make_payloads(n, seed=2)
    q = persistqueue.SQLiteAckQueue(
        str(directory / "pq"), serializer=pq_json, auto_commit=True, multithreading=True
    )
    # Same durability as the spool: WAL (persist-queue's own setting) with synchronous=FULL.
    for conn in (q._putter, q._getter):  # noqa: SLF001 - benchmark only
        if conn is not None:
            conn.execute("PRAGMA synchronous = FULL")
    sync = q._putter.execute("PRAGMA synchronous").fetchone()[0]  # noqa: SLF001
    t0 = time.perf_counter()
    for p in payloads:
        q.put(p)
    t1 = time.perf_counter()
    for _ in range(n):
        item = q.get(block=False, raw=True)
        q.ack(id=item["pqid"])
    t2 = time.perf_counter()
    q.close()
    return {"n": n, "append_s": t1 - t0, "drain_s": t2 - t1, "total_s": t2 - t0, "synchronous": sync}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="events through Spool")
    ap.add_argument("--pq-n", type=int, default=3_000, help="events through persist-queue (0: skip)")
    ap.add_argument("--chunk", type=int, default=500, help="items per Spool.append() call")
    ap.add_argument("--lease", type=int, default=1000, help="records per Spool.lease() call")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the files (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        sp = bench_spool(args.n, Path(tmp), args.chunk, args.lease)
        pq = bench_persist_queue(args.pq_n, Path(tmp)) if args.pq_n > 0 else None
    rate = sp["n"] / sp["total_s"]
    print(f"sqlite {sqlite3.sqlite_version}, payload ~{sp['payload_bytes']:.0f} B, WAL + synchronous=FULL for both")
    print(
        f"Spool          n={sp['n']:>7}  append {sp['n'] / sp['append_s']:>9,.0f}/s  "
        f"lease+ack {sp['n'] / sp['drain_s']:>9,.0f}/s  end-to-end {rate:>9,.0f} events/s  "
        f"({sp['commits']} commits, chunk {args.chunk}, lease {args.lease})"
    )
    if pq is not None:
        pq_rate = pq["n"] / pq["total_s"]
        print(
            f"persist-queue  n={pq['n']:>7}  append {pq['n'] / pq['append_s']:>9,.0f}/s  "
            f"get+ack   {pq['n'] / pq['drain_s']:>9,.0f}/s  end-to-end {pq_rate:>9,.0f} events/s  "
            f"(SQLiteAckQueue, json, auto_commit=True, synchronous={pq['synchronous']})"
        )
        print(f"ratio Spool / persist-queue (end-to-end): {rate / pq_rate:,.1f}x")
    target = 50_000
    print(f"target >= {target:,} events/s: {'met' if rate >= target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
