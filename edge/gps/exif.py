"""Position of image-folder frames from their own EXIF GPS tags (piexif), contained against any input.

Latitude/longitude from GPSLatitude(+Ref)/GPSLongitude(+Ref); heading from GPSImgDirection, else
GPSTrack: a magnetic 'M' reference is turned to true north with the World Magnetic Model at the photo's
place and date (GPS date, else DateTimeOriginal), or left null with the reason (edge/gps/magnetic.py);
speed from GPSSpeed(+Ref, default km/h); time from GPSDateStamp + GPSTimeStamp (UTC).
Zero denominators, missing or odd refs, out-of-range values, absent or truncated EXIF, and piexif
raising anything give null fields and a list of problems — never an exception. The provider logs
one warning per file and caches results per path.
"""

from __future__ import annotations

import calendar
import collections
import dataclasses
import datetime as dt
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import piexif

from edge.gps.base import age_ms, norm_heading
from edge.gps.magnetic import DeclinationUnavailable, true_bearing
from edge.gps.tiff import TIFF_MAGIC, ExifFormatError, exif_block
from edge.types import Frame, GpsFix

log = logging.getLogger(__name__)

_G = piexif.GPSIFD
_HEAD_BYTES = 1024 * 1024  # a JPEG's EXIF (APP1, at most 64 KiB) sits among the first segments
_MAX_TIFF_BYTES = 64 * 1024 * 1024
_SPEED = {"K": 1 / 3.6, "M": 0.44704, "N": 1852.0 / 3600.0}


@dataclass(frozen=True, slots=True)
class ExifResult:
    """What one image's EXIF yields: the fix, why fields are null, and whether piexif could read it."""

    fix: GpsFix
    problems: tuple[str, ...] = ()
    readable: bool = True  # False when piexif raised (corrupt or not an image with EXIF)


@dataclass(slots=True)
class _Acc:
    problems: list[str] = field(default_factory=list)


def rational(v: object) -> float | None:
    """(num, den) of non-negative ints → float; None for anything else (zero denominator included)."""
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        return None
    num, den = v
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (num, den)):
        return None
    if den == 0 or num < 0 or den < 0:
        return None
    return num / den


def dms(v: object) -> float | None:
    """((d,1),(m,1),(s,100)) → degrees; 1 to 3 rationals accepted; None if any part is invalid."""
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= 3:
        return None
    parts = [rational(x) for x in v]
    if any(p is None for p in parts):
        return None
    total = sum(p / 60.0**i for i, p in enumerate(parts))  # type: ignore[operator]
    return total if math.isfinite(total) else None


def _ref(v: object) -> str:
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("latin-1")
    return v.replace("\x00", "").strip().upper() if isinstance(v, str) else ""


def _coord(gps: Mapping[int, object], tag: int, ref_tag: int, limit: float, signs: str, acc: _Acc) -> float | None:
    name = "latitude" if signs == "NS" else "longitude"
    if tag not in gps:
        acc.problems.append(f"no GPS {name}")
        return None
    value, ref = dms(gps[tag]), _ref(gps.get(ref_tag))
    if value is None:
        acc.problems.append(f"invalid GPS {name} {gps[tag]!r}")
        return None
    if value > limit:
        acc.problems.append(f"GPS {name} {value:.6f} out of range")
        return None
    if ref[:1] not in tuple(signs) or not ref:
        acc.problems.append(f"missing or invalid GPS {name} ref {gps.get(ref_tag)!r}")
        return None
    return -value if ref[0] == signs[1] else value


def _direction(gps: Mapping[int, object], acc: _Acc) -> tuple[float | None, str]:
    """The first valid direction (image direction, else track) and its reference ('T', 'M' or '')."""
    for tag, ref_tag in ((_G.GPSImgDirection, _G.GPSImgDirectionRef), (_G.GPSTrack, _G.GPSTrackRef)):
        if tag in gps:
            v = rational(gps[tag])
            if v is None or v > 360.0:
                acc.problems.append(f"invalid GPS direction {gps[tag]!r}")
                continue
            return norm_heading(v), _ref(gps.get(ref_tag))
    return None, ""


def _true_north(
    value: float | None, ref: str, lat: float | None, lon: float | None, when: float | None, acc: _Acc
) -> float | None:
    """The direction as a true heading; a magnetic one through WMM, else None with the reason in `acc`."""
    if value is None or ref in ("", "T"):  # no reference: writers that omit it record true (GPS) bearings
        return value
    if ref != "M":
        acc.problems.append(f"GPS direction ref {ref!r} is neither T nor M: heading left null")
        return None
    if lat is None or lon is None or when is None:
        acc.problems.append(f"magnetic GPS direction {value:.2f} without position and date: heading left null")
        return None
    try:
        # sea level: the photo's altitude moves the declination by far less than a compass's error
        return true_bearing(value, lat, lon, when)
    except DeclinationUnavailable as exc:
        acc.problems.append(f"magnetic GPS direction {value:.2f} not turned to true north: {exc}; heading left null")
        return None


def _speed(gps: Mapping[int, object], acc: _Acc) -> float | None:
    if _G.GPSSpeed not in gps:
        return None
    v, ref = rational(gps[_G.GPSSpeed]), _ref(gps.get(_G.GPSSpeedRef)) or "K"
    if v is None or ref not in _SPEED:
        acc.problems.append(f"invalid GPS speed {gps[_G.GPSSpeed]!r} ref {ref!r}")
        return None
    return v * _SPEED[ref]


def _time(gps: Mapping[int, object], acc: _Acc) -> float | None:
    if _G.GPSDateStamp not in gps or _G.GPSTimeStamp not in gps:
        return None
    date, hms = _ref(gps[_G.GPSDateStamp]), gps[_G.GPSTimeStamp]
    parts = [rational(x) for x in hms] if isinstance(hms, (tuple, list)) and len(hms) == 3 else []
    try:
        y, m, d = (int(x) for x in date.replace("-", ":").split(":"))
        if len(parts) != 3 or any(p is None for p in parts):
            raise ValueError
        h, mi, s = parts  # type: ignore[misc]
        if not (1 <= m <= 12 and 1 <= d <= 31 and 1900 <= y <= 9999 and h < 24 and mi < 60 and s < 61):
            raise ValueError
        return calendar.timegm((y, m, d, 0, 0, 0)) + h * 3600 + mi * 60 + s
    except (ValueError, TypeError):
        acc.problems.append(f"invalid GPS date/time {gps[_G.GPSDateStamp]!r} {hms!r}")
        return None


def _photo_date(exif: Mapping[str, object]) -> float | None:
    """DateTimeOriginal, else DateTime, read as UTC (EXIF 2.2 has no zone): good to a day, for WMM only."""
    for ifd, tag in (("Exif", piexif.ExifIFD.DateTimeOriginal), ("0th", piexif.ImageIFD.DateTime)):
        tags = exif.get(ifd)
        raw = _ref(tags.get(tag)) if isinstance(tags, Mapping) else ""
        try:
            y, mo, d = (int(x) for x in raw[:10].split(":"))
            return float(calendar.timegm(dt.date(y, mo, d).timetuple()))
        except (ValueError, TypeError, OverflowError):
            continue
    return None


def fix_from_gps_ifd(gps: object, taken_at: float | None = None) -> ExifResult:
    """The fix from piexif's GPS IFD dict ({tag: value}); any content accepted.

    `taken_at` (the photo's own date, Unix seconds) dates a magnetic direction when the GPS date is absent."""
    acc = _Acc()
    if not isinstance(gps, Mapping) or not gps:
        return ExifResult(GpsFix(source="exif"), ("no GPS tags",))
    lat = _coord(gps, _G.GPSLatitude, _G.GPSLatitudeRef, 90.0, "NS", acc)
    lon = _coord(gps, _G.GPSLongitude, _G.GPSLongitudeRef, 180.0, "EW", acc)
    (direction, ref), speed, when = _direction(gps, acc), _speed(gps, acc), _time(gps, acc)
    heading = _true_north(direction, ref, lat, lon, when if when is not None else taken_at, acc)
    if lat is None or lon is None:
        return ExifResult(GpsFix(None, None, None, None, "exif", "no_fix", None, when), tuple(acc.problems))
    return ExifResult(GpsFix(lat, lon, heading, speed, "exif", "ok", 0, when), tuple(acc.problems))


def read_exif(source: str | bytes) -> ExifResult:
    """The fix from an image file path, JPEG/TIFF bytes or an 'Exif\\0\\0' blob; never raises."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read(_HEAD_BYTES)
                if data[:4] in TIFF_MAGIC:  # TIFF IFDs may lie anywhere in the file
                    data += fh.read(_MAX_TIFF_BYTES)
        except OSError as exc:
            return ExifResult(GpsFix(source="exif"), (f"cannot read: {exc.strerror or exc}",), False)
    try:
        block = exif_block(data)
    except ExifFormatError as exc:
        return ExifResult(GpsFix(source="exif"), (f"unreadable EXIF: {exc}",), False)
    if block is None:
        return ExifResult(GpsFix(source="exif"), ("no EXIF data",))
    try:
        exif = piexif.load(b"Exif\x00\x00" + block)
    except Exception as exc:  # piexif raises TypeError, struct.error, ValueError, … on bad input
        return ExifResult(GpsFix(source="exif"), (f"unreadable EXIF: {type(exc).__name__}: {exc}",), False)
    gps = exif.get("GPS") if isinstance(exif, dict) else None
    if not gps:
        return ExifResult(GpsFix(source="exif"), ("no EXIF GPS data",))
    try:
        return fix_from_gps_ifd(gps, _photo_date(exif))
    except Exception as exc:  # defensive: a value shape not foreseen above
        return ExifResult(GpsFix(source="exif"), (f"unusable EXIF GPS data: {type(exc).__name__}: {exc}",))


class ExifProvider:
    """Fixes for image-folder frames from each file's EXIF; one warning per file that yields problems.

    The age is the frame's capture time minus the fix's GPS time (either way round: a photo is not dated
    by a fix taken later either), stale beyond `max_age_s`; null when the EXIF has no GPS time."""

    def __init__(self, cache_size: int = 256, *, max_age_s: float = 2.0):
        self._cache: collections.OrderedDict[str, GpsFix] = collections.OrderedDict()
        self._size = cache_size
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._warned_no_path = False

    def start(self) -> None:
        pass

    def fix_for(self, frame: Frame) -> GpsFix:
        if frame.path is None:
            if not self._warned_no_path:
                self._warned_no_path = True
                log.warning("gps provider 'exif' needs image-folder frames; %s has no file path", frame.source)
            return GpsFix(source="exif")
        with self._lock:
            fix = self._cache.get(frame.path)
            if fix is not None:
                self._cache.move_to_end(frame.path)
        if fix is None:
            result = read_exif(frame.path)
            if result.problems:
                log.warning("EXIF GPS of %s: %s", frame.path, "; ".join(result.problems))
            fix = result.fix
            with self._lock:
                self._cache[frame.path] = fix
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return self._aged(fix, frame.captured_at)

    def _aged(self, fix: GpsFix, captured_at: float) -> GpsFix:
        if fix.status != "ok":
            return fix
        if fix.time is None:  # a position without a time: how old it is, nobody knows
            return dataclasses.replace(fix, age_ms=None)
        age = abs(captured_at - fix.time)
        status = "stale" if age > self._max_age_s else "ok"
        return dataclasses.replace(fix, age_ms=age_ms(age), status=status)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
