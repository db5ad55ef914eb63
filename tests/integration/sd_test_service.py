"""A tiny Type=notify service for tests/integration/test_systemd.py, built on edge.service and edge.watchdog.

Warms up (EDGE_TEST_WARMUP s, extending the start timeout), sends READY, then loops: one "frame" per
0.1 s beats a Heartbeat, STATUS every 0.5 s; ProgressWatchdog pings only while that heartbeat is fresh.
It logs one record per level with structured fields and a burst of identical errors (rate limited).
With RuntimeDirectory= it writes status.json there (edge.status). The control file (EDGE_TEST_CONTROL) simulates trouble: "hang" stops the frame loop (the watchdog then
withholds WATCHDOG=1). EDGE_TEST_MODE=config-error exits 2 at once with a config error on stderr, like
`edge run` with a bad edge.toml.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from edge.logs import flush_log_summaries, setup_logging
from edge.service import Notifier, watchdog_interval
from edge.status import StatusWriter
from edge.watchdog import Heartbeat, ProgressWatchdog

log = logging.getLogger("edge.sdtest")
detect_log = logging.getLogger("edge.detect.fake")


def main() -> int:
    if os.environ.get("EDGE_TEST_MODE") == "config-error":
        print("config error: /etc/edge-detector/edge.toml: kafka.bootstrap_servers: Field required", file=sys.stderr)
        return 2
    control = Path(os.environ["EDGE_TEST_CONTROL"])
    warmup = float(os.environ.get("EDGE_TEST_WARMUP", "2"))
    logs = setup_logging("INFO", service=True, vehicle_id="veh-test-7", session_id="",
                         burst=int(os.environ.get("EDGE_TEST_BURST", "3")), window_s=1.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier = Notifier()

    with notifier.extending_timeout(30, status="warming up (stands in for a TensorRT build)"):
        time.sleep(warmup)
    logs.update(session_id="20260101-abc123")
    frames = Heartbeat("frames")
    watchdog = ProgressWatchdog(notifier, watchdog_interval(), [frames.check(1.0)])
    threading.Thread(target=watchdog.run, args=(stop,), name="watchdog", daemon=True).start()
    notifier.ready("running")
    log.info("ready after %.1f s warm-up", warmup)
    detect_log.info("detected %s", "stop sign", extra={"detection_id": "det-0001"})
    log.warning("camera slow", extra={"stage": "capture"})
    log.error("broker unreachable: %s", "127.0.0.1:1")
    for i in range(20):
        logging.getLogger("edge.sinks.kafka").error("delivery failed: %s", f"attempt {i}")

    runtime_dir = os.environ.get("RUNTIME_DIRECTORY")  # set by systemd for RuntimeDirectory=
    status = StatusWriter(Path(runtime_dir)) if runtime_dir else None
    n, last_status, hung = 0, 0.0, False
    while not stop.wait(0.1):
        if control.exists() and control.read_text().strip() == "hang":
            if not hung:
                log.warning("simulating a hang: frames stop")
                hung = True
            continue
        n += 1
        frames.beat()
        if time.monotonic() - last_status >= 0.5:
            last_status = time.monotonic()
            notifier.status(f"frames {n}")
            if status is not None:
                status.write({"state": "running", "fps": 10.0, "frames": n, "detections": 1, "spool_depth": 0,
                              "broker": "none", "gps": None})
            flush_log_summaries()
    notifier.stopping()
    log.info("stopping after %d frames", n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
