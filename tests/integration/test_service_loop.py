"""The service's real main loop (`Daemon.run(stop, reload)`) in a thread, as openpilot tests run `main(exit_event)`:
real model, real video, real spool and broker; no systemd, no signals (those are the CLI's)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from edge.config import load_config
from edge.daemon import Daemon
from edge.localkafka import read_topic
from edge.status import read_status
from tests.support import wait_until

DRIVE = "video/stop_sign_approach.mp4"


def _config(tmp_path: Path, data_dir: Path, model: Path, bootstrap: str, topic: str, confidence: float = 0.25) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[vehicle]\nvehicle_id = "veh-loop"\nsession_id = "20260101-loop01"\n'
        f'[source]\nuri = "{data_dir / DRIVE}"\ninference_fps = 5\n'
        f'[detector]\nmodel = "{model}"\nproviders = ["cpu"]\nconfidence = {confidence}\n'
        f'[state]\nstate_dir = "{tmp_path / "state"}"\nruntime_dir = "{tmp_path / "run"}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\n'
    )
    return path


class ServiceThread:
    """`Daemon(cfg).run(stop, reload)` on a thread; `code` is its exit code once it ended."""

    def __init__(self, config: Path):
        self.daemon = Daemon(load_config(config, env={}), config)
        self.stop, self.reload = threading.Event(), threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._main, name="test-service", daemon=True)

    def _main(self) -> None:
        self.code = self.daemon.run(self.stop, self.reload)

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the service loop ends within 60 s of stop"


def test_main_loop_delivers_every_event_and_reports_a_stopped_status(tmp_path, data_dir, yolov8n, tansu, kafka_topic):
    config = _config(tmp_path, data_dir, yolov8n, tansu.bootstrap, kafka_topic)
    with ServiceThread(config) as service:
        # a recording ends by itself: the loop drains the spool and returns
        service.thread.join(120)
    assert service.code == 0, f"a clean end of the source exits 0, got {service.code}"
    status = read_status(tmp_path / "run")
    assert status is not None and status["state"] == "stopped" and status["drained"] is True, status
    assert status["broker"] == "connected" and status["spool_depth"] == 0, f"everything delivered: {status}"
    events = {e["detection_id"]: e for e in read_topic(tansu.bootstrap, kafka_topic, 30)}
    assert len(events) == status["detections"] > 0, f"{status['detections']} detections, {len(events)} on the topic"
    assert {e["session_id"] for e in events.values()} == {"20260101-loop01"}, "the configured session"


def test_stop_ends_the_loop_and_reload_applies_new_thresholds(tmp_path, data_dir, yolov8n, tansu, kafka_topic,
                                                              caplog):
    config = _config(tmp_path, data_dir, yolov8n, tansu.bootstrap, kafka_topic)
    caplog.set_level(logging.INFO, logger="edge.daemon")
    with ServiceThread(config) as service:
        wait_until(lambda: (tmp_path / "run" / "status.json").exists(), "the first status to be written", 60)
        config.write_text(config.read_text().replace("confidence = 0.25", "confidence = 0.6"))
        service.reload.set()
        wait_until(lambda: any(r.getMessage().startswith("reloaded") for r in caplog.records),
                   "the main loop to apply the reload", 30)
        service.stop.set()
        service.thread.join(60)
    assert service.code == 0, f"a stop asked for exits 0, got {service.code}"
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("reloaded"))
    assert "detector.confidence 0.25 → 0.6" in line, line
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "stopped", f"the final status says stopped: {status}"


def test_an_unusable_source_gives_back_the_state_dir(tmp_path, data_dir, yolov8n, tansu, kafka_topic):
    from edge.sources import SourceError

    config = _config(tmp_path, data_dir, yolov8n, tansu.bootstrap, kafka_topic)
    config.write_text(config.read_text().replace(str(data_dir / DRIVE), str(tmp_path / "missing.mp4")))
    daemon = Daemon(load_config(config, env={}), config)
    with pytest.raises(SourceError):
        daemon.run(threading.Event())
    # then the delivery started before the source was opened was finished: a second writer may take the spool
    from edge.delivery import Delivery

    with Delivery.start(daemon.cfg) as delivery:
        assert delivery.spool.stats().depth == 0, "the state dir's lock was given back"
