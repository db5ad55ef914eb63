"""The service logs one structured line per detection event (DETECTION_ID in the journal); replays do not."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from edge.buffers import BoundedQueue
from edge.detect.yolo import Letterbox
from edge.logs import setup_logging
from edge.pipeline import Pipeline
from edge.types import Detections, Frame, GpsFix


class FakeDetector:
    """A stop sign in every frame."""

    model_name = "fake.onnx"

    def preprocess(self, image, out=None):
        return image, Letterbox(4, 4, 1.0, 0, 0)

    def infer(self, tensor):
        return tensor

    def postprocess(self, output, geometry):
        return Detections(np.array([[0, 0, 2, 2]], np.float32), np.array([0.87], np.float32), np.array([0]),
                          ("stop sign",))


class FakeCapture:
    def __init__(self, out: BoundedQueue, n: int):
        self.out, self.n = out, n

    def run(self, stop: threading.Event) -> None:
        for i in range(self.n):
            self.out.put(Frame(i, i / 5, 1_700_000_000 + i / 5, np.zeros((4, 4, 3), np.uint8), "cam"), stop)


class Gps:
    """A fix for even frames, none for odd ones."""

    def fix_for(self, frame: Frame) -> GpsFix:
        if frame.index % 2:
            return GpsFix.none()
        return GpsFix(lat=37.7749, lon=-122.4194, heading=90.4, source="gpsd", status="ok", age_ms=40)


class Journal(list):
    def __call__(self, MESSAGE, **fields):  # noqa: N803 - journal field names are upper case
        self.append({"MESSAGE": MESSAGE, **{k: str(v) for k, v in fields.items()}})


@pytest.fixture
def journal():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sent = Journal()
    setup_logging("INFO", service=True, vehicle_id="veh-3", session_id="sess-3", env={"INVOCATION_ID": "x"}, journal_send=sent)
    yield sent
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _run(n: int, *, log_events: bool) -> list:
    frames: BoundedQueue[Frame] = BoundedQueue(4, "block")
    spooled: list = []
    Pipeline(FakeCapture(frames, n), frames, FakeDetector(), spooled.extend, vehicle_id="veh-3", camera_id="c",
             session_id="sess-3", gps=Gps(), log_events=log_events).run(threading.Event())
    return spooled


def test_one_journal_record_per_event_with_its_detection_id(journal) -> None:
    # given the service's pipeline (log_events) and two frames, one with a GPS fix and one without
    events = _run(2, log_events=True)
    # then each spooled event has one INFO record carrying DETECTION_ID and the fields of our context
    records = [r for r in journal if r.get("DETECTION_ID")]
    assert [r["DETECTION_ID"] for r in records] == [e.detection_id for e in events], f"one per event: {journal}"
    for r in records:
        assert r["PRIORITY"] == "6" and r["EDGE_STAGE"] == "pipeline", f"INFO, stage: {r}"
        assert r["VEHICLE_ID"] == "veh-3" and r["SESSION_ID"] == "sess-3", f"context fields: {r}"
    with_fix, without = (r["MESSAGE"] for r in records)
    assert "stop sign 0.87 in frame 0 at 37.774900,-122.419400 heading 90 (gps gpsd, ok)" in with_fix, with_fix
    assert "stop sign 0.87 in frame 1, no GPS fix" in without, without


def test_replays_log_no_line_per_event(journal) -> None:
    events = _run(3, log_events=False)
    assert len(events) == 3 and not [r for r in journal if r.get("DETECTION_ID")], "a replay's output stays short"
