"""Detector stages: letterbox (Preprocess) and onnxruntime (Infer), each a bounded-queue thread loop."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge.buffers import BoundedQueue, Closed
from edge.detect.detector import ObjectDetector
from edge.detect.yolo import Letterbox
from edge.latency import StageLatencies
from edge.types import Frame

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Work:
    """A frame on its way through the detector; fields fill in stage by stage."""

    frame: Frame
    tensor: np.ndarray | None = None
    geometry: Letterbox | None = None
    output: np.ndarray | None = None
    inference_ms: float = 0.0
    overhead_ms: float = 0.0  # wall time spent on this frame outside session.run (pre + post)
    overhead_cpu_ms: float = 0.0  # CPU time of the same work (wall time also counts waiting for a core)
    t_in: float = field(default_factory=time.perf_counter)


class TensorPool:
    """Input tensors that Infer hands back to Preprocess once the model has read them, so that each frame is
    written into memory already mapped (fresh pages cost tens of ms on a busy machine: see letterbox_tensor).
    A tensor is only ever reused after `give`: the one stage that held it is done with it."""

    def __init__(self, keep: int = 4):
        self._free: collections.deque[np.ndarray] = collections.deque(maxlen=keep)  # append/pop: thread-safe

    def take(self) -> np.ndarray | None:
        try:
            return self._free.pop()
        except IndexError:
            return None

    def give(self, tensor: np.ndarray | None) -> None:
        if tensor is not None:
            self._free.append(tensor)


def _forward(stop: threading.Event, inq: BoundedQueue, outq: BoundedQueue, step) -> None:  # noqa: ANN001
    """Take items until the input closes (or `stop`), apply `step`, pass results on. Closing the output is
    the pipeline's job, so a stage that raised can be restarted on the same queues."""
    while not stop.is_set():
        try:
            item = inq.get(timeout=0.2)
        except Closed:
            return
        if item is None:
            continue
        result = step(item)
        if result is not None:
            outq.put(result, stop)


class Preprocess:
    """Frame → letterboxed NCHW tensor."""

    def __init__(self, detector: ObjectDetector, inq: BoundedQueue[Frame], outq: BoundedQueue[Work],
                 latency: StageLatencies | None = None, pool: TensorPool | None = None):
        self.detector, self.inq, self.outq = detector, inq, outq
        self.latency = latency or StageLatencies()
        self.pool = pool or TensorPool()

    def _step(self, frame: Frame) -> Work:
        start, cpu = time.perf_counter(), time.thread_time()
        self.latency.record("capture", time.monotonic() - frame.decoded_at)
        tensor, geometry = self.detector.preprocess(frame.image, self.pool.take())
        took = time.perf_counter() - start
        self.latency.record("preprocess", took)
        return Work(frame, tensor, geometry, overhead_ms=took * 1000, overhead_cpu_ms=(time.thread_time() - cpu) * 1000)

    def run(self, stop: threading.Event) -> None:
        _forward(stop, self.inq, self.outq, self._step)


class Infer:
    """Tensor → raw network output. The only stage that calls session.run."""

    def __init__(self, detector: ObjectDetector, inq: BoundedQueue[Work], outq: BoundedQueue[Work],
                 latency: StageLatencies | None = None, pool: TensorPool | None = None):
        self.detector, self.inq, self.outq = detector, inq, outq
        self.latency = latency or StageLatencies()
        self.pool = pool or TensorPool()

    def _step(self, work: Work) -> Work:
        start = time.perf_counter()
        work.output = self.detector.infer(work.tensor)
        took = time.perf_counter() - start
        self.latency.record("inference", took)
        work.inference_ms = took * 1000
        self.pool.give(work.tensor)  # read by the model: Preprocess may write the next frame into it
        work.tensor = None
        return work

    def run(self, stop: threading.Event) -> None:
        _forward(stop, self.inq, self.outq, self._step)
