"""`edge demo`: the main job on an embedded default: replay a drive through spool and flusher into a broker
(a local Tansu started on loopback unless KAFKA_BOOTSTRAP_SERVERS names one), then show what arrived."""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from edge.config import Config
from edge.localkafka import read_topic

log = logging.getLogger(__name__)


def consume_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[dict]:
    """The events on the topic, one per detection id, in frame order."""
    unique: dict[str, dict] = {}
    for event in read_topic(bootstrap, topic, timeout):
        unique.setdefault(event["detection_id"], event)
    return sorted(unique.values(), key=lambda e: (e["frame_number"], e["detection_id"]))


def run_demo(cfg: Config, *, out=sys.stdout, drain_timeout: float = 60.0, show: int = 50) -> int:  # noqa: ANN001
    from edge.app import run_replay
    from edge.delivery import Delivery

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-demo-")))
        overrides: dict[str, object] = {
            "state": cfg.state.model_copy(update={"state_dir": str(workdir), "runtime_dir": str(workdir / "run")}),
            "spool": cfg.spool.model_copy(update={"path": "", "when_full": "block"}),
        }
        bootstrap = cfg.kafka.bootstrap_servers
        if not bootstrap:
            from edge.localkafka import LocalBroker

            broker = stack.enter_context(LocalBroker(log_dir=workdir))
            bootstrap = broker.bootstrap
            broker.create_topic(cfg.kafka.topic, partitions=3)
            broker.create_topic(cfg.kafka.objects_topic, partitions=3)
            print(f"started a local Kafka-protocol broker (Tansu) at {bootstrap}", file=out)
        overrides["kafka"] = cfg.kafka.model_copy(update={"bootstrap_servers": bootstrap})
        cfg = cfg.model_copy(update=overrides)
        print(f"replaying {cfg.source.uri} at {cfg.source.inference_fps:g} fps with {Path(cfg.detector.model).name}"
              f" → spool {cfg.spool_path()} → topic {cfg.kafka.topic}", file=out)
        delivery = stack.enter_context(Delivery.start(cfg, when_full="block"))
        started = time.monotonic()
        sink = delivery.sink(live=False)
        result = run_replay(cfg, sink.write, stop=threading.Event(), objects=sink.write_objects)
        drained = delivery.finish(drain_timeout)
        produced = result.stats.detections
        events = consume_all(bootstrap, cfg.kafka.topic)
        for e in events[:show]:
            gps = "no GPS" if e["vehicle_lat"] is None else f"{e['vehicle_lat']:.5f},{e['vehicle_lon']:.5f}"
            print(f"  frame {e['frame_number']:>4} t={e['timestamp_sec']:7.2f}s {e['class_name']:<13} "
                  f"{e['confidence']:.2f} at ({e['pixel_u']:.0f},{e['pixel_v']:.0f}) {gps} id {e['detection_id']}",
                  file=out)
        if len(events) > show:
            print(f"  … and {len(events) - show} more", file=out)
        by_class: dict[str, int] = {}
        for e in events:
            by_class[e["class_name"]] = by_class.get(e["class_name"], 0) + 1
        print(f"frames analysed {result.stats.frames} in {time.monotonic() - started:.1f} s; events produced {produced}; "
              f"on the topic {len(events)} unique detection ids ({', '.join(f'{k}: {v}' for k, v in sorted(by_class.items())) or 'none'})",
              file=out)
        # this drive's: a configured broker's topic may hold other sessions' objects
        objects = {o["object_id"]: o for o in read_topic(bootstrap, cfg.kafka.objects_topic)
                   if o.get("session_id") == result.session_id}
        for o in objects.values():
            where = (f"at {o['lat']:.6f},{o['lon']:.6f} ± {o['position_error_m']:.1f} m" if o["lat"] is not None
                     else f"no position ({o['position_status']})")
            print(f"  object {o['class_name']:<13} track {o['track_id']}: {o['detections']} detections, best "
                  f"{o['best_confidence']:.2f}, {where}, id {o['object_id']}", file=out)
        print(f"objects made {result.stats.objects}; on topic {cfg.kafka.objects_topic} {len(objects)} unique object ids",
              file=out)
        for line in delivery.report():
            print(line, file=out)
        ok = drained and len(events) == produced and len(objects) == result.stats.objects
        print("all events delivered" if ok else "NOT all events were delivered (see the log above)", file=out)
        return 0 if ok else 1
