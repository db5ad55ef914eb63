"""Vehicle position for frames: one small interface, providers for gpsd, EXIF, recorded tracks, fixed, none."""

from __future__ import annotations

from edge.config import GpsConfig
from edge.gps.base import FixedProvider, GpsConfigError, GpsProvider, NoneProvider
from edge.gps.exif import ExifProvider, ExifResult, read_exif
from edge.gps.gpsd_provider import GpsdProvider, Sample
from edge.gps.track import Track, TrackError, TrackProvider, load_track, start_from_first_fix

__all__ = [
    "ExifProvider", "ExifResult", "FixedProvider", "GpsConfigError", "GpsProvider", "GpsdProvider",
    "NoneProvider", "Sample", "Track", "TrackError", "TrackProvider", "load_track", "make_provider",
    "read_exif", "start_from_first_fix",
]


def make_provider(cfg: GpsConfig, *, track_start: float | None = None) -> GpsProvider:
    """The provider `cfg.provider` names, not yet started. Raises GpsConfigError (key path + message).

    For 'track' the file is read here, so a missing or empty track fails at start-up; `track_start`
    is the video's start (epoch) that maps media time to track time (None: use frame.captured_at)."""
    if cfg.provider == "none":
        return NoneProvider()
    if cfg.provider == "fixed":
        missing = [(f"gps.{k}", "required when gps.provider is 'fixed'")
                   for k in ("fixed_lat", "fixed_lon") if getattr(cfg, k) is None]
        if missing:
            raise GpsConfigError(missing)
        assert cfg.fixed_lat is not None and cfg.fixed_lon is not None
        return FixedProvider(cfg.fixed_lat, cfg.fixed_lon, cfg.fixed_heading)
    if cfg.provider == "gpsd":
        if not cfg.gpsd_host.strip():
            raise GpsConfigError([("gps.gpsd_host", "required when gps.provider is 'gpsd'")])
        return GpsdProvider(cfg.gpsd_host, cfg.gpsd_port, max_age_s=cfg.max_age_s)
    if cfg.provider == "exif":
        return ExifProvider()
    if cfg.provider == "track":
        if not cfg.track.strip():
            raise GpsConfigError([("gps.track", "required when gps.provider is 'track' (an NMEA or GPX file)")])
        try:
            track = load_track(cfg.track)
        except TrackError as exc:
            raise GpsConfigError([("gps.track", str(exc))]) from None
        if not len(track):
            raise GpsConfigError([("gps.track", f"{cfg.track}: no usable fixes ({track.bad} bad sentences/points)")])
        return TrackProvider(track, max_gap_s=cfg.track_max_gap_s, track_start=track_start)
    raise GpsConfigError([("gps.provider", f"unknown provider {cfg.provider!r}")])
