"""Composition root: builds detector, source, GPS and sinks from the config and runs the pipeline."""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.buffers import BoundedQueue
from edge.clock import parse_iso_time
from edge.config import Config, ConfigError
from edge.detect import Detector
from edge.events import derived_session_id, new_session_id
from edge.mediatime import container_creation_time
from edge.pipeline import EventSink, GpsLookup, Pipeline, PipelineStats
from edge.types import Frame

log = logging.getLogger(__name__)


def session_for(cfg: Config, uri: str, start_time: float | None) -> str:
    """Configured session id; for recordings one derived from the file (a replay gives the same ids twice);
    for live sources a new random one."""
    if cfg.vehicle.session_id:
        return cfg.vehicle.session_id
    path = Path(uri)
    if path.exists():
        st = path.stat()
        start = start_time if start_time is not None else st.st_mtime
        size = st.st_size if path.is_file() else sum(1 for _ in path.iterdir())
        return derived_session_id(start, path.name, size, cfg.vehicle.vehicle_id, cfg.vehicle.camera_id)
    return new_session_id()


class LimitedSource:
    """At most `limit` frames of a source (replay --limit)."""

    def __init__(self, source, limit: int):  # noqa: ANN001
        self._source, self._limit = source, limit

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        return itertools.islice(self._source.frames(stop), self._limit)

    def expected_frames(self) -> int:
        total = self._source.expected_frames()
        return self._limit if total is None else min(total, self._limit)

    def __getattr__(self, name: str):  # noqa: ANN204 - delegate name, live, stats, close, ...
        return getattr(self._source, name)


def open_detector(cfg: Config, *, all_classes: bool = False) -> Detector:
    detector = Detector(cfg.detector, state_dir=Path(cfg.state.state_dir), all_classes=all_classes)
    detector.warmup()
    return detector


@dataclass
class ReplayResult:
    stats: PipelineStats
    source_stats: object
    session_id: str
    source_name: str


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


def _warn_if_track_missed(provider, source) -> None:  # noqa: ANN001 - TrackProvider, FrameSource
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


def run_replay(
    cfg: Config,
    sink: EventSink,
    *,
    detector: Detector | None = None,
    limit: int | None = None,
    start_time: float | None = None,
    gps_offset: float | None = None,
    gps: GpsLookup | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[PipelineStats], None] | None = None,
    all_classes: bool = False,
) -> ReplayResult:
    """Run the pipeline over cfg.source to its end. Raises SourceError / ModelError / ConfigError for
    unusable inputs."""
    from edge.gps import TrackProvider, make_provider, start_from_first_fix
    from edge.sources import (  # sources are a stage package: wired here
        Capture,
        open_source,
    )

    stop = stop or threading.Event()
    if gps_offset is not None and (start_time is not None or not math.isfinite(gps_offset)):
        why = "not a finite number" if start_time is None else "give --start-time or --gps-offset, not both"
        raise ConfigError("--gps-offset", [("gps_offset", f"{why} (got {gps_offset!r})")])
    start = recording_start(cfg, cfg.source.uri, start_time)
    if gps is None:
        provider = make_provider(cfg.gps)
        if isinstance(provider, TrackProvider):
            if gps_offset is not None:
                start = start_from_first_fix(provider.track, gps_offset)
            provider.track_start = start
        elif gps_offset is not None:
            raise ConfigError("--gps-offset", [("gps.provider", "--gps-offset needs a track (--gps-track FILE)")])
        provider.start()
        gps = provider
    detector = detector or open_detector(cfg, all_classes=all_classes)
    source = open_source(cfg.source, start_time=start)
    if isinstance(gps, TrackProvider):
        _warn_if_track_missed(gps, source)
    if limit is not None:
        source = LimitedSource(source, limit)
    session_id = session_for(cfg, cfg.source.uri, start)
    frames: BoundedQueue[Frame] = BoundedQueue(cfg.source.queue_size, "drop_oldest" if source.live else "block")
    pipeline = Pipeline(
        Capture(source, frames),
        frames,
        detector,
        sink,
        vehicle_id=cfg.vehicle.vehicle_id,
        camera_id=cfg.vehicle.camera_id,
        session_id=session_id,
        gps=gps,
    )
    pipeline.stats.expected_frames = source.expected_frames()
    log.info(
        "replay %s: session %s, model %s on %s, %.1f fps, classes %s, gps %s",
        source.name, session_id, detector.model_name, detector.provider, cfg.source.inference_fps,
        ", ".join(detector.classes) if len(detector.classes) <= 5 else f"{len(detector.classes)} classes",
        cfg.gps.provider,
    )
    try:
        stats = pipeline.run(stop, on_tick=on_tick)
    finally:
        source.close()
        close = getattr(gps, "close", None)
        if close is not None:
            close()
    return ReplayResult(stats, source.stats, session_id, source.name)
