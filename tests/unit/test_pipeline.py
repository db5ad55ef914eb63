"""Pipeline wiring with fakes behind the stage interfaces: order, graceful stop, restarts, give-up."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.buffers import BoundedQueue
from edge.detect import ObjectDetector
from edge.detect.yolo import Letterbox
from edge.pipeline import Pipeline, StageFailed
from edge.types import Detections, Frame
from tests.support import Collector


class FakeDetector:
    """One 'stop sign' per frame; can fail on chosen frame indices."""

    model_name, provider, classes = "fake.onnx", "cpu", ("stop sign",)

    def __init__(self, fail_on: set[int] | None = None, infer_s: float = 0.0):
        self.fail_on = set(fail_on or ())
        self.infer_s = infer_s

    def preprocess(self, image, out=None):
        return image, Letterbox(4, 4, 1.0, 0, 0)

    def infer(self, tensor):
        if self.infer_s:
            time.sleep(self.infer_s)  # stands in for session.run
        idx = int(tensor[0, 0, 0])
        if idx in self.fail_on:
            self.fail_on.discard(idx)
            raise RuntimeError(f"boom on frame {idx}")
        return tensor

    def postprocess(self, output, geometry):
        return Detections(np.array([[0, 0, 2, 2]], np.float32), np.array([0.9], np.float32), np.array([0]), ("stop sign",))

    def set_thresholds(self, conf, iou, classes):
        pass


def test_the_fake_is_a_detector_as_the_stages_see_it():
    assert isinstance(FakeDetector(), ObjectDetector), "FakeDetector implements edge.detect.ObjectDetector"


class FakeCapture:
    def __init__(self, out: BoundedQueue, n: int):
        self.out, self.n = out, n

    def run(self, stop: threading.Event) -> None:
        for i in range(self.n):
            if stop.is_set():
                return
            img = np.full((4, 4, 3), i, np.uint8)
            self.out.put(Frame(i, i / 5, 1_700_000_000 + i / 5, img, "fake.mp4"), stop)


def _pipeline(n=20, detector=None, max_restarts=0, sink=None):
    frames: BoundedQueue[Frame] = BoundedQueue(4, "block")
    got = Collector()  # the sink runs on the pipeline's emit thread
    p = Pipeline(
        FakeCapture(frames, n), frames, detector or FakeDetector(), sink or got,
        vehicle_id="v", camera_id="c", session_id="s", max_restarts=max_restarts,
    )
    return p, got


def test_every_frame_reaches_the_sink_in_order():
    p, got = _pipeline(50)
    stats = p.run(threading.Event())
    assert [e.frame_number for e in got.items] == list(range(50)), "file replay: every frame, in order, none dropped"
    assert stats.frames == 50 and stats.detections == 50, f"stats count frames and detections: {stats}"


class ReusingDetector(FakeDetector):
    """Writes each frame into the tensor it is offered, as the real one does, and notes what it was offered."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[int] = []
        self.inferred: list[int] = []
        self.pixels: list[int] = []  # what the model saw of each frame: its index, painted by FakeCapture

    def preprocess(self, image, out=None):
        if out is not None:
            self.offered.append(id(out))
            out[...] = image
            return out, Letterbox(4, 4, 1.0, 0, 0)
        return image.copy(), Letterbox(4, 4, 1.0, 0, 0)

    def infer(self, tensor):
        self.inferred.append(id(tensor))
        self.pixels.append(int(tensor[0, 0, 0]))
        return tensor.copy()


def test_input_tensors_are_reused_only_after_inference_read_them():
    detector = ReusingDetector()
    p, got = _pipeline(40, detector=detector)
    p.run(threading.Event())
    assert detector.pixels == list(range(40)), f"the model saw each frame's own pixels, in order: {detector.pixels}"
    assert len(got.items) == 40, f"every frame made its event: {len(got.items)}"
    assert len(detector.offered) >= 30, f"most frames write into a recycled tensor: {len(detector.offered)} of 40"
    assert set(detector.offered) <= set(detector.inferred), "only tensors the model already read are offered"


def test_each_stage_of_each_frame_is_timed():
    p, _ = _pipeline(30)
    p.run(threading.Event())
    snap = p.latency.snapshot()
    counts = {stage: v["count"] for stage, v in snap.items()}
    assert counts == {"capture": 30, "preprocess": 30, "inference": 30, "postprocess": 30}, f"per frame: {counts}"
    assert all(v["p99_ms"] >= 0 for v in snap.values()), f"{snap}"


def test_stop_ends_capture_and_drains_frames_in_flight():
    p, got = _pipeline(10_000, detector=FakeDetector(infer_s=0.002))
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    stats = p.run(stop)
    timer.cancel()
    assert 0 < stats.frames < 10_000, f"stop should end the run early, processed {stats.frames}"
    assert [e.frame_number for e in got.items] == list(range(stats.frames)), "frames already captured are finished, no gap"


def test_failing_stage_is_restarted_within_the_limit():
    p, got = _pipeline(30, detector=FakeDetector(fail_on={5, 17}), max_restarts=5)
    p.run(threading.Event())
    numbers = [e.frame_number for e in got.items]
    assert 5 not in numbers and 17 not in numbers, "the frame that crashed the stage is lost, logged and counted"
    assert len(numbers) == 28 and p.restarts["infer"], f"the rest flows after restarts: {len(numbers)}, {p.restarts}"


def test_failing_stage_past_the_limit_stops_the_pipeline():
    p, _ = _pipeline(30, detector=FakeDetector(fail_on={1, 2, 3}), max_restarts=1)
    with pytest.raises(StageFailed, match="stage infer failed"):
        p.run(threading.Event())


def test_sink_failure_without_restarts_raises():
    def bad_sink(events):
        raise OSError("disk on fire")

    p, _ = _pipeline(5, sink=bad_sink)
    with pytest.raises(StageFailed, match="emit"):
        p.run(threading.Event())
