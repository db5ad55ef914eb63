"""The service's real main loop (`Daemon.run(stop, reload)`) in a thread, as openpilot tests run `main(exit_event)`:
real model, real video, real spool and broker; no systemd, no signals (those are the CLI's)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import pytest

from edge.config import load_config
from edge.daemon import Daemon
from edge.localkafka import read_topic
from edge.status import read_status
from tests.support import wait_until

sys.path.insert(0, str(Path(__file__).parent))  # stream_helpers, as the other live tests import it
from stream_helpers import FfmpegStreamServer, ffmpeg_path, free_port  # noqa: E402

DRIVE = "video/stop_sign_approach.mp4"


def _config(tmp_path: Path, data_dir: Path, model: Path, bootstrap: str, topic: str, confidence: float = 0.25) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[vehicle]\nvehicle_id = "veh-loop"\nsession_id = "20260101-loop01"\n'
        f'[source]\nuri = "{data_dir / DRIVE}"\ninference_fps = 5\n'
        f'[detector]\nmodel = "{model}"\nproviders = ["cpu"]\nconfidence = {confidence}\n'
        f'[state]\nstate_dir = "{tmp_path / "state"}"\nruntime_dir = "{tmp_path / "run"}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\nobjects_topic = "{topic}-objects"\n'
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
    # the service tracks too: the drive's one stop sign is one object record on the objects topic
    objects = {o["object_id"]: o for o in read_topic(tansu.bootstrap, f"{kafka_topic}-objects", 30)}
    assert [o["class_name"] for o in objects.values()] == ["stop sign"], f"one stop-sign object: {objects}"
    (sign,) = objects.values()
    assert {e["track_id"] for e in events.values()} == {sign["track_id"]}, "every event names the sign's track"
    assert sign["detections"] == len(events), f"the object counts the {len(events)} events: {sign}"


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


@pytest.mark.skipif(ffmpeg_path() is None, reason="ffmpeg not installed: cannot serve a live stream")
def test_live_service_times_each_stage_and_keeps_its_latency_budget(tmp_path, data_dir, yolov8n, tansu, kafka_topic,
                                                                    caplog):
    # given the service on a real-time stream with a budget no real path can keep, and a record every 5 s
    config = _config(tmp_path, data_dir, yolov8n, tansu.bootstrap, kafka_topic)
    with FfmpegStreamServer(data_dir / DRIVE, free_port()) as stream:
        text = config.read_text().replace(f'uri = "{data_dir / DRIVE}"', f'uri = "{stream.url}"')
        text = text.replace("[kafka]\n", f'prometheus_textfile = "{tmp_path / "edge.prom"}"\n[kafka]\n')
        config.write_text(text + "[latency]\nbudget_ms = 1\nreport_interval_s = 5\nwindow_s = 5\n")
        caplog.set_level(logging.INFO, logger="edge.latency")
        with ServiceThread(config) as service:
            warned = wait_until(lambda: [r for r in caplog.records if r.levelno == logging.WARNING],
                                "the latency budget's WARNING", 90)
            status = wait_until(lambda: (s := read_status(tmp_path / "run")) and s.get("latency_over_budget") and s,
                                "status to flag the budget", 30)
            # when the budget is raised by a reload
            config.write_text(config.read_text().replace("budget_ms = 1\n", "budget_ms = 60000\n"))
            service.reload.set()
            wait_until(lambda: any(r.getMessage().startswith("latency back within budget") for r in caplog.records),
                       "the recovery record", 30)
            wait_until(lambda: any(r.getMessage().startswith("latency over the last") for r in caplog.records),
                       "the periodic latency record", 30)
    # then one warning named the slowest stage, status and the textfile showed every stage
    assert len(warned) == 1, f"one WARNING while over: {[r.getMessage() for r in warned]}"
    assert warned[0].LATENCY_SLOWEST_STAGE in STAGE_NAMES, warned[0].getMessage()
    assert set(status["stages"]) == set(STAGE_NAMES) | {"total"}, f"every stage timed: {sorted(status['stages'])}"
    assert all(v["p99_ms"] >= v["p50_ms"] >= 0 for v in status["stages"].values()), status["stages"]
    prom = (tmp_path / "edge.prom").read_text()
    for stage in STAGE_NAMES:
        assert f'edge_stage_latency_seconds_bucket{{stage="{stage}",le="+Inf"}}' in prom, f"{stage} histogram: {prom}"
    record = next(r for r in caplog.records if r.getMessage().startswith("latency over the last"))
    assert float(record.LATENCY_TOTAL_P99_MS) > 0, "the periodic record carries the journal fields"


STAGE_NAMES = ("capture", "preprocess", "inference", "postprocess", "spool", "produce", "ack")
