"""Vehicle position for frames: one small interface, providers for gpsd, EXIF, recorded tracks, fixed, none."""

from __future__ import annotations

from edge.config import GpsConfig
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
    """The provider `cfg.provider` names, not yet started.

    What the configuration alone decides (a position for 'fixed', a file for 'track', …) is checked by
    GpsConfig itself, so `edge config check` refuses the same. For 'track' the file is read here, an input:
    a missing, unreadable or empty track raises TrackError (an unusable input, not a configuration error).
    `track_start` is the video's start (epoch) that maps media time to track time (None: frame.captured_at)."""
    if cfg.provider == "none":
        return NoneProvider()
    if cfg.provider == "fixed":
        assert cfg.fixed_lat is not None and cfg.fixed_lon is not None, "GpsConfig requires a fixed position"
        return FixedProvider(cfg.fixed_lat, cfg.fixed_lon, cfg.fixed_heading)
    if cfg.provider == "gpsd":
        return GpsdProvider(cfg.gpsd_host, cfg.gpsd_port, max_age_s=cfg.max_age_s)
    if cfg.provider == "exif":
        return ExifProvider(max_age_s=cfg.max_age_s)
    if cfg.provider == "track":
        try:
            track = load_track(cfg.track)
        except TrackError as exc:
            raise TrackError(f"gps.track {exc}") from None
        if not len(track):
            raise TrackError(f"gps.track {cfg.track}: no usable fixes ({track.bad} bad sentences/points)")
        return TrackProvider(track, max_gap_s=cfg.track_max_gap_s, track_start=track_start)
    raise ValueError(f"unknown gps.provider {cfg.provider!r}")  # GpsConfig admits only the names above
