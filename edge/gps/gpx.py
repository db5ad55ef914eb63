"""GPX reader for recorded tracks (stdlib xml.etree): trkpt lat/lon/time, optional course and speed.

Namespaces are ignored (GPX 1.0 and 1.1, and course/speed inside extensions are all found by local
name). Points without a time or with impossible values are counted as bad and skipped. Malformed
XML raises GpxError (the file is unreadable); nothing else raises on content.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from edge.clock import parse_iso_time
from edge.gps.nmea import TrackPoint


class GpxError(ValueError):
    """The file is not well-formed XML."""


@dataclass(slots=True)
class GpxStats:
    points: int = 0  # trkpt elements seen
    bad: int = 0  # skipped: no/invalid lat, lon or time, impossible course/speed


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_time(text: str) -> float | None:
    """ISO 8601 (Z, offset, or naive = UTC) → epoch seconds; None if unparsable."""
    try:
        return parse_iso_time(text)
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _point(el: ET.Element) -> TrackPoint | None:
    lat, lon = _float(el.get("lat")), _float(el.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    when = course = speed = None
    for child in el.iter():
        name = _local(child.tag)
        if name == "time" and when is None:
            when = parse_time(child.text or "")
        elif name == "course" and course is None:
            course = _float(child.text)
            if course is not None and not 0 <= course <= 360:
                return None
        elif name == "speed" and speed is None:
            speed = _float(child.text)
            if speed is not None and speed < 0:
                return None
    if when is None:
        return None
    return TrackPoint(when, lat, lon, None if course is None else course % 360.0, speed)


def parse_gpx(data: bytes | str) -> tuple[list[TrackPoint], GpxStats]:
    """Track points in file order and statistics. Raises GpxError on malformed XML."""
    raw = data.encode() if isinstance(data, str) else data
    stats, points = GpxStats(), []
    try:
        for _event, el in ET.iterparse(io.BytesIO(raw), events=("end",)):
            if _local(el.tag) != "trkpt":
                continue
            stats.points += 1
            p = _point(el)
            if p is None:
                stats.bad += 1
            else:
                points.append(p)
            el.clear()
    except ET.ParseError as exc:
        raise GpxError(f"not well-formed XML: {exc}") from None
    return points, stats
