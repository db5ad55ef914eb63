"""Recorded tracks (NMEA or GPX) for replays: positions interpolated along the great circle at frame times.

A frame's track time is `track_start + frame.timestamp_sec` when the caller knows when the video
started (container creation time, `--start-time`, or `start_from_first_fix(track, offset)`), else
`frame.captured_at`. Between two fixes at most `max_gap_s` apart the position is interpolated on the
great circle; heading is the recorded course (interpolated the short way round 359 → 0) or else the
bearing between the fixes. Outside the track or inside a longer gap: status no_fix and nulls — a
position is never invented. age_ms is the time to the nearer of the two surrounding fixes.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from edge.clock import iso_or_dash
from edge.gps import geo
from edge.gps.base import age_ms
from edge.gps.gpx import GpxError, parse_gpx
from edge.gps.nmea import TrackPoint, parse_nmea_text
from edge.types import Frame, GpsFix

log = logging.getLogger(__name__)

TrackFormat = Literal["nmea", "gpx"]
MAX_TRACK_BYTES = 512 * 1024 * 1024
_STILL_M = 0.5  # closer fixes than this give no bearing


class TrackError(ValueError):
    """The file cannot be read as a track (I/O error, unknown format, malformed XML)."""


@dataclass(slots=True)
class Track:
    """Fixes sorted by time (duplicate times merged), with what loading them cost."""

    points: list[TrackPoint]
    format: TrackFormat | None = None
    bad: int = 0  # bad sentences / track points skipped
    no_fix: int = 0  # epochs the receiver marked invalid (NMEA)
    undated: int = 0  # positions without any date (NMEA, GGA-only files)
    path: str = ""
    _times: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_points(cls, points: Sequence[TrackPoint], **info: object) -> Track:
        merged: list[TrackPoint] = []
        for p in sorted(points, key=lambda p: p.time):
            if merged and merged[-1].time == p.time:
                q = merged[-1]
                merged[-1] = TrackPoint(
                    q.time, q.lat, q.lon,
                    q.course if q.course is not None else p.course,
                    q.speed_mps if q.speed_mps is not None else p.speed_mps,
                )
            else:
                merged.append(p)
        track = cls(merged, **info)  # type: ignore[arg-type]
        track._times = [p.time for p in merged]
        return track

    def __len__(self) -> int:
        return len(self.points)

    @property
    def first(self) -> TrackPoint | None:
        return self.points[0] if self.points else None

    @property
    def last(self) -> TrackPoint | None:
        return self.points[-1] if self.points else None

    def miss(self, start: float, end: float) -> str | None:
        """Why a recording from `start` to `end` (epoch) gets no position at all from this track; None when
        the two overlap."""
        if self.first is None or self.last is None:
            return f"track {self.path or '(in memory)'} has no fixes"
        if end < self.first.time or start > self.last.time:
            return (f"the recording ({_iso(start)} to {_iso(end)}) does not overlap the track {self.path or ''} "
                    f"({_iso(self.first.time)} to {_iso(self.last.time)})")
        return None

    def gaps(self, max_gap_s: float) -> int:
        """Number of intervals between consecutive fixes longer than max_gap_s."""
        return sum(1 for a, b in zip(self._times, self._times[1:]) if b - a > max_gap_s)

    def at(self, t: float, max_gap_s: float) -> GpsFix:
        """The interpolated fix at epoch time t (source 'track')."""
        none = GpsFix(source="track", status="no_fix")
        times = self._times
        if not times or not math.isfinite(t) or t < times[0] or t > times[-1]:
            return none
        i = bisect.bisect_right(times, t)
        if times[i - 1] == t:
            return self._exact(i - 1, max_gap_s)
        p0, p1 = self.points[i - 1], self.points[i]
        dt = p1.time - p0.time
        if dt > max_gap_s:
            return none
        f = (t - p0.time) / dt
        lat, lon = geo.interpolate(p0.lat, p0.lon, p1.lat, p1.lon, f)
        dist = geo.distance_m(p0.lat, p0.lon, p1.lat, p1.lon)
        if p0.course is not None and p1.course is not None:
            heading: float | None = geo.interpolate_angle(p0.course, p1.course, f)
        elif dist >= _STILL_M:
            heading = geo.bearing(p0.lat, p0.lon, p1.lat, p1.lon)
        else:
            heading = p0.course if p0.course is not None else p1.course
        if p0.speed_mps is not None and p1.speed_mps is not None:
            speed: float | None = p0.speed_mps + (p1.speed_mps - p0.speed_mps) * f
        else:
            speed = dist / dt
        return GpsFix(lat, lon, heading, speed, "track", "ok", age_ms(min(t - p0.time, p1.time - t)), t)

    def _exact(self, i: int, max_gap_s: float) -> GpsFix:
        p = self.points[i]
        heading, speed = p.course, p.speed_mps
        if heading is None or speed is None:  # borrow from a neighbouring segment within the gap limit
            for a, b in ((i, i + 1), (i - 1, i)):
                if 0 <= a and b < len(self.points) and self._times[b] - self._times[a] <= max_gap_s:
                    pa, pb = self.points[a], self.points[b]
                    dist = geo.distance_m(pa.lat, pa.lon, pb.lat, pb.lon)
                    if heading is None and dist >= _STILL_M:
                        heading = geo.bearing(pa.lat, pa.lon, pb.lat, pb.lon)
                    if speed is None:
                        speed = dist / (pb.time - pa.time)
                    break
        return GpsFix(p.lat, p.lon, heading, speed, "track", "ok", 0, p.time)


def _iso(epoch: float) -> str:
    return iso_or_dash(epoch, "seconds")


def sniff_format(head: bytes) -> TrackFormat | None:
    """'gpx' for XML, 'nmea' for text with NMEA sentences, else None (decided from the first bytes)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "gpx"
    if b"$" in text and any(line.lstrip().startswith((b"$", b"!")) for line in text.splitlines()[:200]):
        return "nmea"
    return None


def parse_track(data: bytes, *, path: str = "") -> Track:
    """A Track from a file's bytes, format detected by content. Raises TrackError if unreadable."""
    fmt = sniff_format(data[:65536])
    if fmt == "gpx":
        try:
            points, gstats = parse_gpx(data)
        except GpxError as exc:
            raise TrackError(f"{path or 'track'}: {exc}") from None
        return Track.from_points(points, format="gpx", bad=gstats.bad, path=path)
    if fmt == "nmea":
        points, nstats = parse_nmea_text(data)
        return Track.from_points(
            points, format="nmea", bad=nstats.bad, no_fix=nstats.no_fix, undated=nstats.undated, path=path
        )
    raise TrackError(f"{path or 'track'}: neither NMEA nor GPX")


def load_track(path: str | os.PathLike[str]) -> Track:
    """Read and parse a track file. Raises TrackError (with the reason) if it cannot be read."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_TRACK_BYTES + 1)
    except OSError as exc:
        raise TrackError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_TRACK_BYTES:
        raise TrackError(f"{p}: larger than {MAX_TRACK_BYTES} bytes")
    track = parse_track(data, path=p)
    if track.bad:
        log.warning("track %s: %d bad sentences/points skipped", p, track.bad)
    return track


def start_from_first_fix(track: Track, offset_s: float = 0.0) -> float:
    """Video start time (epoch) = the track's first fix + offset_s (`--gps-offset`). ValueError if empty."""
    if track.first is None:
        raise ValueError(f"track {track.path or '(in memory)'} has no fixes")
    return track.first.time + offset_s


class TrackProvider:
    """Fixes for replayed frames from a recorded track."""

    def __init__(self, track: Track, *, max_gap_s: float = 5.0, track_start: float | None = None):
        self.track, self.max_gap_s, self.track_start = track, max_gap_s, track_start
        self.warned = False  # one warning per replay about frames outside the track (set by whoever gave it)

    def start(self) -> None:
        pass

    def track_time(self, frame: Frame) -> float:
        """The track time of a frame: track_start + media time, else its capture time."""
        if self.track_start is not None:
            return self.track_start + frame.timestamp_sec
        return frame.captured_at

    def fix_for(self, frame: Frame) -> GpsFix:
        t = self.track_time(frame)
        fix = self.track.at(t, self.max_gap_s)
        if fix.status == "no_fix" and not self.warned and self.track.miss(t, t) is not None:
            self.warned = True  # a drive may start before the receiver's first fix: say it once, not per frame
            log.warning("gps track: frame %d of %s at %s is outside the track (%s to %s): frames outside it get null "
                        "GPS; --start-time or --gps-offset places the recording on the track's clock", frame.index,
                        frame.source, _iso(t), _iso(self.track.first.time), _iso(self.track.last.time))  # type: ignore[union-attr]
        return fix

    def close(self) -> None:
        pass
