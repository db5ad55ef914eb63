"""Child process for the crash test: appends N deterministic events to the spool in batches while the flusher
drains it to Kafka; killed with SIGKILL at random points, restarted, it continues where it left off."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edge.config import load_config
from edge.delivery import Delivery
from edge.spool import SpoolItem

BATCH = 50


def main() -> None:
    state_dir, bootstrap, topic, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    progress = Path(state_dir) / "appended"
    cfg = load_config(None, env={}, overrides={
        "state.state_dir": state_dir, "kafka.bootstrap_servers": bootstrap, "kafka.topic": topic,
        "spool.when_full": "block",
    })
    delivery = Delivery.start(cfg, when_full="block")
    start = int(progress.read_text()) if progress.exists() else 0
    for first in range(start, total, BATCH):
        items = []
        for i in range(first, min(first + BATCH, total)):
            body = {"detection_id": f"crash-{i:06d}", "vehicle_id": f"v{i % 3}", "seq": i}
            items.append(SpoolItem(key=body["vehicle_id"], value=json.dumps(body).encode(),
                                   detection_id=body["detection_id"], captured_at=time.time()))
        delivery.spool.append(items)  # durable on return
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(str(first + len(items)))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, progress)  # a kill before this line re-appends the batch: same ids, deduplicated
        time.sleep(0.25)  # paced like a camera, so the kills land mid-run
    drained = delivery.finish(60)
    print("DONE" if drained else "NOT DRAINED", flush=True)


if __name__ == "__main__":
    main()
