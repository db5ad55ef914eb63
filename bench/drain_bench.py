"""Spool → Kafka drain rate of the flusher against a bare confluent-kafka producer, same broker, same run.

    .venv/bin/python bench/drain_bench.py [--events 50000] [--repeat 3] [--vehicles 3] [--dir DIR]

N realistic events (the real DetectionEvent JSON, ~600 bytes) go to a local Tansu broker two ways,
each into a fresh 3-partition topic, alternating, best of --repeat:
  flusher: a spool holding the N events, KafkaFlusher.drain() until every event is acknowledged
           by the broker and the acks are committed in the spool (depth 0, nothing in flight);
  bare:    a confluent-kafka Producer with the same settings (producer_config: idempotent, acks=all,
           zstd, same linger and batch) produces the same events and waits for every delivery report.
Two figures each: cold (a new producer: includes the idempotent producer's start, ~0.5-1 s of
InitProducerId, which dominates 50k events) and warm (the producer already delivered one event:
the steady drain rate of a running daemon). Target: flusher/bare ≥ 0.8.
CPU µs/event is process CPU time (all threads: flusher, spool writer, librdkafka) per event.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402

from edge.cli import tune_gc  # noqa: E402
from edge.config import KafkaConfig  # noqa: E402
from edge.localkafka.broker import LocalBroker  # noqa: E402
from edge.localkafka.topic import read_topic  # noqa: E402
from edge.metrics import Metrics  # noqa: E402
from edge.sinks.kafka import KafkaFlusher, producer_config  # noqa: E402
from edge.spool import Spool, SpoolItem  # noqa: E402
from edge.types import DetectionEvent  # noqa: E402


def make_items(n: int, vehicles: int) -> list[SpoolItem]:
    now = time.time()
    items = []
    for i in range(n):
        ev = DetectionEvent(
            detection_id=str(uuid.uuid4()), vehicle_id=f"vehicle-{i % vehicles:03d}", session_id="20250101-abcdef",
            ingested_at="2025-01-01T00:00:00.000Z", frame_number=i // vehicles, timestamp_sec=round(i / 15, 3),
            pixel_u=612.5, pixel_v=402.25, confidence=0.8731, class_name="stop sign", vehicle_lat=37.774929,
            vehicle_lon=-122.419416, heading=271.5, camera_id="cam-front", class_id=11,
            bbox=(580.0, 350.5, 645.0, 402.25), inference_latency_ms=151.2, captured_at="2025-01-01T00:00:00.000Z",
            model="yolov8n.onnx", source="cam0", gps_source="gpsd", gps_status="ok", gps_age_ms=120,
        )
        items.append(SpoolItem(key=ev.vehicle_id, value=ev.to_json().encode(), detection_id=ev.detection_id, captured_at=now))
    return items


def fill_spool(path: Path, items: list[SpoolItem]) -> tuple[Spool, float]:
    spool = Spool.open(path, max_bytes=1 << 30, when_full="block")
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):
        spool.append(items[i : i + 5000])
    return spool, time.perf_counter() - t0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_flusher(cfg: KafkaConfig, path: Path, items: list[SpoolItem], warm: bool) -> tuple[float, float, float]:
    """(seconds, cpu seconds, spool fill seconds) to drain `items` from a spool through a KafkaFlusher."""
    if warm:  # one event first: the producer is created and initialised before the clock starts
        spool, _ = fill_spool(path, items[:1])
        flusher = KafkaFlusher(cfg, spool, Metrics())
        if not flusher.drain(30):
            raise SystemExit("warm-up event not delivered")
        t0 = time.perf_counter()
        spool.append(items[1:])
        fill = time.perf_counter() - t0
        spool.flush()
    else:
        spool, fill = fill_spool(path, items)
        flusher = KafkaFlusher(cfg, spool, Metrics())
    t0, c0 = time.perf_counter(), _cpu()
    ok = flusher.drain(300)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    flusher.close()
    spool.close()
    if not ok:
        raise SystemExit(f"flusher did not drain within 300 s: {flusher.metrics.snapshot()}")
    return elapsed, cpu, fill


def run_bare(cfg: KafkaConfig, items: list[SpoolItem], warm: bool) -> tuple[float, float]:
    """(seconds, cpu seconds) for a bare producer to have every event acknowledged."""
    producer = Producer(producer_config(cfg))
    done = {"ok": 0, "err": 0}

    def on_delivery(err, _msg):  # noqa: ANN001
        done["err" if err else "ok"] += 1

    if warm:
        producer.produce(cfg.topic, value=items[0].value, key=items[0].key, on_delivery=on_delivery)
        producer.flush(30)
        items = items[1:]
        done["ok"] = 0
    ct = ("content-type", b"application/json")
    t0, c0 = time.perf_counter(), _cpu()
    for it in items:
        headers = [("detection_id", it.detection_id), ("schema_version", str(it.schema_version)), ct]
        while True:
            try:
                producer.produce(cfg.topic, value=it.value, key=it.key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(300)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    if done["ok"] != len(items):
        raise SystemExit(f"bare producer: {done} of {len(items)}")
    return elapsed, cpu


def count_unique(bootstrap: str, topic: str) -> int:
    return len({event["detection_id"] for event in read_topic(bootstrap, topic, timeout=60)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--vehicles", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", help="spool and broker log directory (default: a temporary directory)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_gc()  # as every edge command does

    n = args.events
    items = make_items(n, args.vehicles)
    size = sum(len(i.value) for i in items) / n
    best: dict[tuple[str, str], tuple[float, float]] = {}
    fills: list[float] = []
    with tempfile.TemporaryDirectory(prefix="drain-bench-") as tmp:
        work = Path(args.dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with LocalBroker(work / "broker") as broker:
            base = KafkaConfig(bootstrap_servers=broker.bootstrap)  # defaults: zstd, linger 20 ms, batch 10k, window 10k
            print(f"== {n:,} events of {size:.0f} bytes, {args.vehicles} vehicles, Tansu at {broker.bootstrap}")
            print(f"   librdkafka: idempotent, acks=all, {base.compression_type}, linger {base.linger_ms:g} ms, "
                  f"batch {base.batch_size}, flusher window {base.max_in_flight}")
            last_topic = ""
            for r in range(args.repeat):
                for warmth in ("cold", "warm"):
                    modes = ("flusher", "bare") if r % 2 == 0 else ("bare", "flusher")
                    for mode in modes:
                        topic = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
                        broker.create_topic(topic, partitions=3)
                        cfg = base.model_copy(update={"topic": topic})
                        if mode == "flusher":
                            t, cpu, fill = run_flusher(cfg, work / f"spool-{r}-{warmth}.db", items, warmth == "warm")
                            fills.append(fill)
                            last_topic = topic
                        else:
                            t, cpu = run_bare(cfg, items, warmth == "warm")
                        count = n - (warmth == "warm")
                        print(f"   run {r + 1} {warmth} {mode:<7} {count / t:>10,.0f} events/s  "
                              f"{cpu / count * 1e6:5.1f} µs CPU/event")
                        key = (mode, warmth)
                        if key not in best or count / t > best[key][0]:
                            best[key] = (count / t, cpu / count * 1e6)
            unique = count_unique(broker.bootstrap, last_topic)
    print(f"\n   best of {args.repeat}                 cold (new producer)        warm (producer started)")
    for mode in ("flusher", "bare"):
        (c, cc), (w, wc) = best[(mode, "cold")], best[(mode, "warm")]
        print(f"   {mode:<22} {c:>9,.0f} ev/s {cc:5.1f} µs/ev   {w:>9,.0f} ev/s {wc:5.1f} µs/ev")
    rc, rw = best[("flusher", "cold")][0] / best[("bare", "cold")][0], best[("flusher", "warm")][0] / best[("bare", "warm")][0]
    print(f"   ratio flusher / bare   {rc:>9.2f}                {rw:>9.2f}          (target ≥ 0.80)")
    print(f"   spool fill (append, fsynced, not timed above): {n / min(fills):,.0f} events/s")
    print(f"   unique detection ids on the last flusher topic: {unique:,} of {n:,}")
    return 0 if unique == n else 1


if __name__ == "__main__":
    sys.exit(main())
