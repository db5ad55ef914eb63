"""The one composition root: builds detector, source, GPS and pipeline from the config (delivery: `Delivery.start`)."""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.buffers import BoundedQueue
from edge.clock import parse_iso_time
from edge.config import Config, ConfigError
from edge.detect import Detector
from edge.events import new_session_id, recording_session_id
from edge.gps import GpsProvider, TrackProvider, make_provider, start_from_first_fix
from edge.latency import StageLatencies
from edge.mediatime import container_creation_time
from edge.objects.records import ObjectSink, ObjectTracking
from edge.pipeline import EventSink, Pipeline, PipelineStats
from edge.sources import Capture, FrameSource, SourceStats, open_source
from edge.types import Frame

log = logging.getLogger(__name__)


def session_for(cfg: Config, uri: str, start_time: float | None) -> str:
    """Configured session id; for recordings one derived from the file (a replay gives the same ids twice);
    for live sources a new random one."""
    if cfg.vehicle.session_id:
        return cfg.vehicle.session_id
    path = Path(uri)
    if path.exists():
        return recording_session_id(path, start_time, cfg.vehicle.vehicle_id, cfg.vehicle.camera_id)
    return new_session_id()


class LimitedSource:
    """At most `limit` frames of a source (replay --limit); a FrameSource itself."""

    def __init__(self, source: FrameSource, limit: int):
        self._source, self._limit = source, limit
        self.name, self.live, self.stats = source.name, source.live, source.stats

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        return itertools.islice(self._source.frames(stop), self._limit)

    def expected_frames(self) -> int | None:
        total = self._source.expected_frames()
        return self._limit if total is None else min(total, self._limit)

    def set_fps(self, fps: float) -> None:
        self._source.set_fps(fps)

    def close(self) -> None:
        self._source.close()


def open_detector(cfg: Config, *, all_classes: bool = False) -> Detector:
    detector = Detector(cfg.detector, state_dir=Path(cfg.state.state_dir), all_classes=all_classes)
    detector.warmup()
    return detector


def recording_start(cfg: Config, uri: str, explicit: float | None) -> float | None:
    """When a recording started: --start-time, else source.start_time, else the container's creation time;
    None lets the source fall back to the file's modification time."""
    if explicit is not None:
        return explicit
    if cfg.source.start_time:
        return parse_iso_time(cfg.source.start_time)
    if Path(uri).is_file():
        return container_creation_time(uri)
    return None


def _warn_if_track_missed(provider: TrackProvider, source: FrameSource) -> None:
    """Say before the run, not after it, when a video's time span misses the track: every event would have
    null GPS. Image folders and live sources are judged frame by frame by the provider."""
    begin = provider.track_start  # None: frames are placed by their capture time, the video's start + media time
    begin = begin if begin is not None else getattr(source, "start_time", None)
    fps, count = getattr(source, "fps", 0.0), getattr(source, "frame_count", 0)
    if begin is None or not (fps > 0 and count > 0):
        return
    problem = provider.track.miss(begin, begin + (count - 1) / fps)
    if problem:
        provider.warned = True
        log.warning("gps: %s: every frame gets null GPS; place the recording on the track with --start-time or "
                    "--gps-offset S (the video starts S seconds after the first fix)", problem)


def open_gps(cfg: Config, start: float | None, gps_offset: float | None) -> tuple[GpsProvider, float | None]:
    """The configured GPS provider, started; a track is placed on the recording's clock. Returns it and the
    recording's start (moved by --gps-offset)."""
    provider = make_provider(cfg.gps)
    if isinstance(provider, TrackProvider):
        if gps_offset is not None:
            start = start_from_first_fix(provider.track, gps_offset)
        provider.track_start = start
    elif gps_offset is not None:
        raise ConfigError("--gps-offset", [("gps.provider", "--gps-offset needs a track (--gps-track FILE)")])
    provider.start()
    return provider, start


@dataclass
class DetectionRun:
    """One detection pipeline as built from the config: what it reads, where it places frames, its session.
    A context manager: leaving it closes the source and the GPS provider."""

    pipeline: Pipeline
    source: FrameSource
    gps: GpsProvider
    detector: Detector
    session_id: str

    def __enter__(self) -> DetectionRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            self.gps.close()


def build_detection(
    cfg: Config,
    sink: EventSink,
    *,
    detector: Detector | None = None,
    gps: GpsProvider | None = None,
    limit: int | None = None,
    start_time: float | None = None,
    gps_offset: float | None = None,
    all_classes: bool = False,
    session_id: str | None = None,
    max_restarts: int = 0,
    log_events: bool = False,
    latency: StageLatencies | None = None,
    objects: ObjectSink | None = None,
) -> DetectionRun:
    """The pipeline of `edge run`, `replay` and `demo` over cfg.source: capture (live: drop the oldest; files:
    block), preprocess, infer, events with GPS, into `sink`. Raises SourceError / ModelError / ConfigError /
    TrackError for unusable inputs, having closed what it opened. A `gps` provider given is used as it is
    (started by the caller) and closed with the run. With tracking on (cfg.tracking), events carry track ids and
    the record of each tracked object goes to `objects` (None: counted in the stats only)."""
    if gps_offset is not None and (start_time is not None or not math.isfinite(gps_offset)):
        why = "not a finite number" if start_time is None else "give --start-time or --gps-offset, not both"
        raise ConfigError("--gps-offset", [("gps_offset", f"{why} (got {gps_offset!r})")])
    detector = detector or open_detector(cfg, all_classes=all_classes)
    start = recording_start(cfg, cfg.source.uri, start_time)
    if gps is None:
        gps, start = open_gps(cfg, start, gps_offset)
    try:
        source: FrameSource = open_source(cfg.source, start_time=start)
    except BaseException:
        gps.close()
        raise
    if isinstance(gps, TrackProvider):
        _warn_if_track_missed(gps, source)
    if limit is not None:
        source = LimitedSource(source, limit)
    session_id = session_id or session_for(cfg, cfg.source.uri, start)
    frames: BoundedQueue[Frame] = Capture.queue_for(source, cfg.source.queue_size)
    tracking = None
    if cfg.tracking.enabled:
        tracking = ObjectTracking(cfg.tracking, cfg.camera, vehicle_id=cfg.vehicle.vehicle_id,
                                  camera_id=cfg.vehicle.camera_id, session_id=session_id, model=detector.model_name)
    pipeline = Pipeline(
        Capture(source, frames), frames, detector, sink,
        vehicle_id=cfg.vehicle.vehicle_id, camera_id=cfg.vehicle.camera_id, session_id=session_id,
        gps=gps, max_restarts=max_restarts, log_events=log_events, latency=latency, tracking=tracking,
        objects=objects,
    )
    pipeline.stats.expected_frames = source.expected_frames()
    return DetectionRun(pipeline, source, gps, detector, session_id)


@dataclass
class ReplayResult:
    stats: PipelineStats
    source_stats: SourceStats
    session_id: str
    source_name: str


def run_replay(
    cfg: Config,
    sink: EventSink,
    *,
    stop: threading.Event | None = None,
    on_tick: Callable[[PipelineStats], None] | None = None,
    **options: Any,
) -> ReplayResult:
    """Run the pipeline over cfg.source to its end (or `stop`); `options` are build_detection's (detector, gps,
    limit, start_time, gps_offset, all_classes). Raises SourceError / ModelError / ConfigError for unusable
    inputs."""
    stop = stop or threading.Event()
    with build_detection(cfg, sink, **options) as run:
        det = run.detector
        log.info(
            "replay %s: session %s, model %s on %s, %.1f fps, classes %s, gps %s",
            run.source.name, run.session_id, det.model_name, det.provider, cfg.source.inference_fps,
            ", ".join(det.classes) if len(det.classes) <= 5 else f"{len(det.classes)} classes",
            cfg.gps.provider,
        )
        stats = run.pipeline.run(stop, on_tick=on_tick)
    return ReplayResult(stats, run.source.stats, run.session_id, run.source.name)
