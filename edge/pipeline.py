"""The detection pipeline: capture → preprocess → infer → decode + geotag + events → sink, one thread a stage."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge.buffers import BoundedQueue, Closed
from edge.detect.detector import ObjectDetector
from edge.detect.stages import Infer, Preprocess, TensorPool, Work
from edge.events import build_events
from edge.latency import StageLatencies
from edge.objects.records import ObjectSink, ObjectTracking, frame_columns
from edge.types import DetectionEvent, Frame, GpsFix

log = logging.getLogger(__name__)

TIMING_WINDOW = 10_000  # frames whose timings are kept for percentiles
EventSink = Callable[[Sequence[DetectionEvent]], None]


class GpsLookup(Protocol):
    def fix_for(self, frame: Frame) -> GpsFix: ...


class Stage(Protocol):
    """One thread's loop: runs until `stop`, or until its input queue closes."""

    def run(self, stop: threading.Event) -> None: ...


@dataclass
class PipelineStats:
    """What the pipeline did; read by progress display and status reporting."""

    frames: int = 0
    detections: int = 0
    frames_with_detections: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    # per-frame timings of the latest frames only: a service runs for months
    overhead_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=TIMING_WINDOW))
    overhead_cpu_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=TIMING_WINDOW))
    inference_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=TIMING_WINDOW))
    by_class: dict[str, int] = field(default_factory=dict)
    last_fix: GpsFix | None = None  # GPS fix of the latest frame with detections
    objects: int = 0  # object records made (tracks that ended)
    objects_located: int = 0  # of them, with a position
    expected_frames: int | None = None  # known for recordings: progress and ETA

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    def percentiles(self, values: collections.deque[float]) -> tuple[float, float]:
        if not values:
            return 0.0, 0.0
        arr = np.asarray(values)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


class EmitEvents:
    """Decode network output, attach the GPS fix of the capture time, build events, hand them to the sink."""

    def __init__(
        self,
        detector: ObjectDetector,
        inq: BoundedQueue[Work],
        sink: EventSink,
        *,
        vehicle_id: str,
        camera_id: str,
        session_id: str,
        gps: GpsLookup | None,
        stats: PipelineStats,
        clock: Callable[[], float] = time.time,
        log_events: bool = False,
        latency: StageLatencies | None = None,
        tracking: ObjectTracking | None = None,
        objects: ObjectSink | None = None,
    ):
        self.detector, self.inq, self.sink = detector, inq, sink
        self.tracking, self.objects = tracking, objects
        self.latency = latency or StageLatencies()
        self.vehicle_id, self.camera_id, self.session_id = vehicle_id, camera_id, session_id
        self.gps, self.stats, self.clock = gps, stats, clock
        self.log_events = log_events

    def _step(self, work: Work) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        detections = self.detector.postprocess(work.output, work.geometry)
        events: list[DetectionEvent] = []
        track_ids = self._track(work.frame, detections) if self.tracking is not None else None
        if len(detections):
            fix = self.gps.fix_for(work.frame) if self.gps is not None else None
            self.stats.last_fix = fix
            events = build_events(
                work.frame,
                detections,
                vehicle_id=self.vehicle_id,
                camera_id=self.camera_id,
                session_id=self.session_id,
                model=self.detector.model_name,
                inference_latency_ms=work.inference_ms,
                gps=fix,
                now=self.clock(),
                track_ids=track_ids,
            )
        records = self.tracking.observe(events) if self.tracking is not None else []
        took = time.perf_counter() - start
        self.latency.record("postprocess", took)
        overhead = work.overhead_ms + took * 1000
        overhead_cpu = work.overhead_cpu_ms + (time.thread_time() - cpu) * 1000
        if events:
            self.sink(events)
            if self.log_events:
                _log_events(events)
        if records:
            self._objects(records)
        st = self.stats
        st.frames += 1
        st.overhead_ms.append(overhead)
        st.overhead_cpu_ms.append(overhead_cpu)
        st.inference_ms.append(work.inference_ms)
        if events:
            st.frames_with_detections += 1
            st.detections += len(events)
            for e in events:
                st.by_class[e.class_name] = st.by_class.get(e.class_name, 0) + 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("frame %d: %s", work.frame.index, ", ".join(f"{e.class_name} {e.confidence:.2f}" for e in events))

    def _track(self, frame: Frame, detections) -> list[int]:  # noqa: ANN001 - Detections
        """Track ids of the frame's detections; a frame without any still ages the tracks."""
        u, v = frame_columns(detections.xyxy)
        classes = [detections.class_name(i) for i in range(len(detections))]
        return self.tracking.assign(frame.captured_at, classes, detections.confidence, u, v, detections.xyxy,
                                    int(frame.image.shape[1]))

    def _objects(self, records: list) -> None:  # noqa: ANN001 - ObjectRecords
        self.stats.objects += len(records)
        self.stats.objects_located += sum(r.position_status == "ok" for r in records)
        if self.objects is not None:
            self.objects(records)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                work = self.inq.get(timeout=0.2)
            except Closed:
                break
            if work is not None:
                self._step(work)
        if self.tracking is not None:  # the end of the input, or a stop: every open track becomes its record
            records = self.tracking.finish()
            if records:
                self._objects(records)


def _log_events(events: Sequence[DetectionEvent]) -> None:
    """One INFO line per event handed to the sink (spooled), with its DETECTION_ID journal field."""
    if not log.isEnabledFor(logging.INFO):
        return
    for e in events:
        extra = {"detection_id": e.detection_id}
        if e.vehicle_lat is None or e.vehicle_lon is None:
            log.info("detection %s: %s %.2f in frame %d, no GPS fix", e.detection_id, e.class_name, e.confidence,
                     e.frame_number, extra=extra)
        else:
            log.info("detection %s: %s %.2f in frame %d at %.6f,%.6f heading %s (gps %s, %s)", e.detection_id,
                     e.class_name, e.confidence, e.frame_number, e.vehicle_lat, e.vehicle_lon,
                     "n/a" if e.heading is None else round(e.heading), e.gps_source, e.gps_status, extra=extra)


class StageFailed(Exception):
    """A stage failed more often than its restart limit allows; the pipeline stopped."""


class Pipeline:
    """Wires the stages with bounded queues and runs them to the end of the source, or until `stop`.

    `stop` ends capture only: frames already captured go through inference and reach the sink, then
    the stages end one after the other as their input queues close. A stage that raises is restarted in
    place up to `max_restarts` times a minute (Frigate's rule); past that the pipeline aborts and
    `run` raises StageFailed."""

    def __init__(
        self,
        capture: Stage,  # edge.sources.Capture: sources are wired by the composition root, not imported here
        frames: BoundedQueue[Frame],
        detector: ObjectDetector,
        sink: EventSink,
        *,
        vehicle_id: str,
        camera_id: str,
        session_id: str,
        gps: GpsLookup | None = None,
        depth: int = 2,
        max_restarts: int = 0,
        log_events: bool = False,  # the service: one journal line per event; replays keep their output short
        latency: StageLatencies | None = None,  # the service shares it with delivery (spool, produce, ack)
        tracking: ObjectTracking | None = None,  # tracks, object records; None: events without track_id
        objects: ObjectSink | None = None,  # where object records go (None: counted only)
    ):
        self.stats = PipelineStats()
        self.latency = latency or StageLatencies()
        self.errors: list[tuple[str, BaseException]] = []
        self.restarts: dict[str, list[float]] = {}
        self.max_restarts = max_restarts
        self._abort = threading.Event()
        tensors: BoundedQueue[Work] = BoundedQueue(depth, "block")
        pool = TensorPool(keep=depth + 2)
        outputs: BoundedQueue[Work] = BoundedQueue(depth, "block")
        self.frames = frames
        self.emit = EmitEvents(
            detector, outputs, sink, vehicle_id=vehicle_id, camera_id=camera_id, session_id=session_id,
            gps=gps, stats=self.stats, log_events=log_events, latency=self.latency, tracking=tracking, objects=objects,
        )
        self.stages: list[tuple[str, Stage, BoundedQueue]] = [
            ("capture", capture, frames),
            ("preprocess", Preprocess(detector, frames, tensors, self.latency, pool), tensors),
            ("infer", Infer(detector, tensors, outputs, self.latency, pool), outputs),
            ("emit", self.emit, outputs),
        ]
        self._queues = [frames, tensors, outputs]

    def _guard(self, name: str, stage: Stage, out: BoundedQueue, stop: threading.Event) -> None:
        own_stop = stop if name == "capture" else self._abort
        while True:
            try:
                stage.run(own_stop)
                break
            except Exception as exc:  # a stage boundary: log with context, count, restart or give up
                now = time.monotonic()
                recent = [t for t in self.restarts.get(name, []) if now - t < 60] + [now]
                self.restarts[name] = recent
                if len(recent) <= self.max_restarts and not own_stop.is_set():
                    log.error("stage %s failed (%s: %s); restart %d of %d this minute",
                              name, type(exc).__name__, exc, len(recent), self.max_restarts, exc_info=True)
                    self._abort.wait(min(5.0, 0.5 * len(recent)))
                    continue
                log.error("stage %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=True)
                self.errors.append((name, exc))
                self._abort.set()
                for q in self._queues:
                    q.close()
                break
        # whatever ended this stage, the next one must see the end of its input
        if name == "emit":
            return
        out.close()

    def abort(self) -> None:
        """Stop every stage now, dropping frames in flight (used when a graceful stop takes too long)."""
        self._abort.set()
        for q in self._queues:
            q.close()

    def run(self, stop: threading.Event, on_tick: Callable[[PipelineStats], None] | None = None, tick_s: float = 0.5) -> PipelineStats:
        threads = [
            threading.Thread(target=self._guard, args=(name, stage, out, stop), name=f"edge-{name}", daemon=True)
            for name, stage, out in self.stages
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                threads[-1].join(tick_s)
                if on_tick is not None:
                    on_tick(self.stats)
        except KeyboardInterrupt:
            stop.set()
            self.abort()
            for t in threads:
                t.join(5)
            raise
        self.stats.finished = time.monotonic()
        if self.errors:
            name, exc = self.errors[0]
            raise StageFailed(f"stage {name} failed: {type(exc).__name__}: {exc}") from exc
        return self.stats
