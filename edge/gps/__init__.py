"""Vehicle position for frames: one small interface, providers for gpsd, EXIF, recorded tracks, fixed, none."""

from __future__ import annotations

from edge.config import (
    ExifGpsConfig,
    FixedGpsConfig,
    GpsConfig,
    GpsdConfig,
    NoGpsConfig,
    TrackGpsConfig,
)
from edge.gps.base import FixedProvider, GpsConfigError, GpsProvider, NoneProvider
from edge.gps.exif import ExifProvider, ExifResult, read_exif
from edge.gps.gpsd_provider import GpsdProvider, Sample
from edge.gps.track import (
    Track,
    TrackError,
    TrackProvider,
    load_track,
    start_from_first_fix,
)

__all__ = [
    "ExifProvider", "ExifResult", "FixedProvider", "GpsConfigError", "GpsProvider", "GpsdProvider",
    "NoneProvider", "Sample", "Track", "TrackError", "TrackProvider", "load_track", "make_provider",
    "read_exif", "start_from_first_fix",
]


def make_provider(cfg: GpsConfig, *, track_start: float | None = None) -> GpsProvider:
    """The provider for `cfg` (one settings model per provider), not yet started.

    The settings were checked where they are declared (edge.config), so `edge config check` refuses the same.
    For a track the file is read here, an input: a missing, unreadable or empty track raises TrackError (an
    unusable input, not a configuration error). `track_start` is the video's start (epoch) that maps media time
    to track time (None: frame.captured_at)."""
    match cfg:
        case NoGpsConfig():
            return NoneProvider()
        case FixedGpsConfig():
            return FixedProvider(cfg.fixed_lat, cfg.fixed_lon, cfg.fixed_heading)
        case GpsdConfig():
            return GpsdProvider(cfg.gpsd_host, cfg.gpsd_port, max_age_s=cfg.max_age_s)
        case ExifGpsConfig():
            return ExifProvider(max_age_s=cfg.max_age_s)
        case TrackGpsConfig():
            try:
                track = load_track(cfg.track)
            except TrackError as exc:
                raise TrackError(f"gps.track {exc}") from None
            if not len(track):
                raise TrackError(f"gps.track {cfg.track}: no usable fixes ({track.bad} bad sentences/points)")
            return TrackProvider(track, max_gap_s=cfg.track_max_gap_s, track_start=track_start)
    raise TypeError(f"not a GPS configuration: {cfg!r}")
