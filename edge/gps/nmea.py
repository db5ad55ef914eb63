"""NMEA 0183 reader for recorded tracks: RMC, GGA, VTG (+ ZDA for dates), any talker, checksums verified.

Sentences of one epoch (same time of day) are merged into one TrackPoint: position from RMC when
valid, else GGA; course and speed from RMC, else VTG (VTG carries no time and joins the current
epoch). Times come from the sentences, never from the clock: RMC/ZDA give the date, GGA times take
the last known date (rolled over at midnight), GGA epochs before the first date get it back-filled.
Bad sentences (checksum, syntax, impossible values) are counted and skipped; nothing here raises
on input.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

KNOT_MPS = 1852.0 / 3600.0
_ADDRESS = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One recorded fix: epoch seconds, position, course over ground (true) and speed when known."""

    time: float
    lat: float
    lon: float
    course: float | None = None
    speed_mps: float | None = None


@dataclass(slots=True)
class NmeaStats:
    """What a parse saw: sentences used, bad ones skipped, epochs without a fix or a date."""

    sentences: int = 0  # well-formed sentences (any type)
    bad: int = 0  # checksum failures, syntax errors, impossible values, garbage lines
    no_fix: int = 0  # epochs the receiver marked invalid
    undated: int = 0  # epochs with a position but no date anywhere in the file
    bad_examples: list[str] = field(default_factory=list)

    def _bad(self, line: str, why: str) -> None:
        self.bad += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"{why}: {line[:80]!r}")


class _BadSentence(ValueError):
    pass


def checksum(body: str) -> str:
    """The two-hex-digit XOR checksum of the characters between '$' and '*'."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def sentence(body: str) -> str:
    """`$body*CS` for a body such as 'GPRMC,…' (used to write synthetic tracks)."""
    return f"${body}*{checksum(body)}"


def format_lat(lat: float, decimals: int = 5) -> tuple[str, str]:
    """Latitude → ('ddmm.mmmmm', 'N'|'S')."""
    deg, minutes = _split_deg(abs(lat), decimals)
    return f"{deg:02d}{minutes:0{3 + decimals}.{decimals}f}", "N" if lat >= 0 else "S"


def format_lon(lon: float, decimals: int = 5) -> tuple[str, str]:
    """Longitude → ('dddmm.mmmmm', 'E'|'W')."""
    deg, minutes = _split_deg(abs(lon), decimals)
    return f"{deg:03d}{minutes:0{3 + decimals}.{decimals}f}", "E" if lon >= 0 else "W"


def _split_deg(a: float, decimals: int) -> tuple[int, float]:
    deg = int(a)
    minutes = round((a - deg) * 60.0, decimals)
    if minutes >= 60.0:
        deg, minutes = deg + 1, 0.0
    return deg, minutes


def split_sentence(line: str) -> tuple[str, list[str]] | None:
    """('GPRMC', fields) for a sentence with a valid checksum; None for blank/comment lines.

    Raises _BadSentence for anything else (callers count it)."""
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    if s[0] not in "$!":
        raise _BadSentence("not a sentence")
    star = s.rfind("*")
    if star < 0:
        raise _BadSentence("no checksum")
    body, cs = s[1:star], s[star + 1 :]
    if not body.isascii() or not body.isprintable():
        raise _BadSentence("non-ASCII")
    if len(cs) != 2 or cs.upper() != checksum(body):
        raise _BadSentence("checksum")
    parts = body.split(",")
    if not _ADDRESS.match(parts[0]):
        raise _BadSentence("address")
    return parts[0], parts[1:]


def _f(fields: list[str], i: int) -> str:
    return fields[i].strip() if i < len(fields) else ""


def _num(text: str) -> float | None:
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise _BadSentence("number") from None
    if not math.isfinite(v):
        raise _BadSentence("number")
    return v


def _coord(value: str, hemi: str, deg_digits: int, limit: float, signs: str) -> float | None:
    """'ddmm.mmmm' + hemisphere → signed degrees; None when empty."""
    if not value and not hemi:
        return None
    if len(value) < deg_digits + 2 or hemi not in signs or not value.replace(".", "", 1).isdigit():
        raise _BadSentence("coordinate")
    deg, minutes = int(value[:deg_digits]), float(value[deg_digits:])
    v = deg + minutes / 60.0
    if minutes >= 60.0 or v > limit:
        raise _BadSentence("coordinate range")
    return -v if hemi == signs[1] else v


def _tod(text: str) -> float | None:
    """'hhmmss.ss' → seconds of the day; None when empty."""
    if not text:
        return None
    if len(text) < 6 or not text[:6].isdigit() or not text.replace(".", "", 1).isdigit():
        raise _BadSentence("time")
    h, m, s = int(text[:2]), int(text[2:4]), float(text[4:])
    if h > 23 or m > 59 or s >= 61.0:
        raise _BadSentence("time")
    return h * 3600 + m * 60 + s


def _date(ddmmyy: str) -> dt.date | None:
    if not ddmmyy:
        return None
    if len(ddmmyy) != 6 or not ddmmyy.isdigit():
        raise _BadSentence("date")
    yy = int(ddmmyy[4:])
    try:
        return dt.date(2000 + yy if yy < 80 else 1900 + yy, int(ddmmyy[2:4]), int(ddmmyy[:2]))
    except ValueError:
        raise _BadSentence("date") from None


def _course(text: str) -> float | None:
    v = _num(text)
    if v is None:
        return None
    if not 0.0 <= v <= 360.0:
        raise _BadSentence("course")
    return 0.0 if v == 360.0 else v


def _speed(text: str, factor: float) -> float | None:
    v = _num(text)
    if v is None:
        return None
    if v < 0:
        raise _BadSentence("speed")
    return v * factor


@dataclass(slots=True)
class _Epoch:
    key: str
    tod: float
    date: dt.date | None = None
    lat: float | None = None
    lon: float | None = None
    from_rmc: bool = False
    invalid: bool = False
    course: float | None = None
    speed: float | None = None


def _epoch_time(date: dt.date, tod: float) -> float:
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp() + tod


class _Reader:
    def __init__(self) -> None:
        self.stats = NmeaStats()
        self.points: list[TrackPoint] = []
        self.cur: _Epoch | None = None
        self.date: dt.date | None = None  # last known date and the time of day it was seen at
        self.date_tod = 0.0
        self.pending: list[_Epoch] = []  # positions seen before any date

    def line(self, raw: str | bytes) -> None:
        text = raw.decode("ascii", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        try:
            parsed = split_sentence(text)
            if parsed is None:
                return
            self.stats.sentences += 1
            address, fields = parsed
            if address.startswith("P") or len(address) != 5:
                return  # proprietary ($PASHR, $PGRME…) or unknown address: not ours
            kind = address[2:]
            if kind == "RMC":
                self._rmc(fields)
            elif kind == "GGA":
                self._gga(fields)
            elif kind == "VTG":
                self._vtg(fields)
            elif kind == "ZDA":
                self._zda(fields)
        except _BadSentence as exc:
            self.stats._bad(text.strip(), str(exc))

    def _epoch(self, time_text: str, tod: float) -> _Epoch:
        if self.cur is None or self.cur.key != time_text:
            self._flush()
            self.cur = _Epoch(time_text, tod)
        return self.cur

    def _rmc(self, f: list[str]) -> None:
        tod = _tod(_f(f, 0))
        lat = _coord(_f(f, 2), _f(f, 3), 2, 90.0, "NS")
        lon = _coord(_f(f, 4), _f(f, 5), 3, 180.0, "EW")
        speed, course, date = _speed(_f(f, 6), KNOT_MPS), _course(_f(f, 7)), _date(_f(f, 8))
        status, mode = _f(f, 1), _f(f, 11)
        if status not in ("A", "V", "") or (lat is None) != (lon is None):
            raise _BadSentence("RMC fields")
        if tod is None:
            self.stats.no_fix += 1
            return
        if date is not None:
            self._learn_date(date, tod)
        e = self._epoch(_f(f, 0), tod)
        e.date = date or e.date
        if status != "A" or mode == "N" or lat is None:
            e.invalid = True
            return
        e.lat, e.lon, e.from_rmc = lat, lon, True
        e.course = course if course is not None else e.course
        e.speed = speed if speed is not None else e.speed

    def _gga(self, f: list[str]) -> None:
        tod = _tod(_f(f, 0))
        lat = _coord(_f(f, 1), _f(f, 2), 2, 90.0, "NS")
        lon = _coord(_f(f, 3), _f(f, 4), 3, 180.0, "EW")
        quality = _f(f, 5)
        if (quality and not quality.isdigit()) or (lat is None) != (lon is None):
            raise _BadSentence("GGA fields")
        if tod is None:
            self.stats.no_fix += 1
            return
        e = self._epoch(_f(f, 0), tod)
        if quality in ("", "0") or lat is None:
            e.invalid = e.invalid or not e.from_rmc
            return
        if not e.from_rmc:
            e.lat, e.lon, e.invalid = lat, lon, False

    def _vtg(self, f: list[str]) -> None:
        if _f(f, 1) == "T" or _f(f, 3) == "M" or _f(f, 5) == "N" or len(f) >= 8:  # NMEA 2.0+ layout
            course, knots, kmh, mode = _course(_f(f, 0)), _speed(_f(f, 4), KNOT_MPS), _speed(_f(f, 6), 1 / 3.6), _f(f, 8)
        else:  # pre-2.0: course true, course magnetic, knots, km/h
            course, knots, kmh, mode = _course(_f(f, 0)), _speed(_f(f, 2), KNOT_MPS), _speed(_f(f, 3), 1 / 3.6), ""
        if self.cur is None or mode == "N":
            return
        self.cur.course = self.cur.course if self.cur.course is not None else course
        speed = knots if knots is not None else kmh
        self.cur.speed = self.cur.speed if self.cur.speed is not None else speed

    def _zda(self, f: list[str]) -> None:
        tod, day, month, year = _tod(_f(f, 0)), _f(f, 1), _f(f, 2), _f(f, 3)
        if tod is None or not (day and month and year):
            return
        if not (day.isdigit() and month.isdigit() and year.isdigit()):
            raise _BadSentence("ZDA date")
        try:
            self._learn_date(dt.date(int(year), int(month), int(day)), tod)
        except ValueError:
            raise _BadSentence("ZDA date") from None

    def _learn_date(self, date: dt.date, tod: float) -> None:
        first = self.date is None
        self.date, self.date_tod = date, tod
        if first:
            for e in self.pending:  # before the first date in stream order: same day unless midnight passed
                day = date - dt.timedelta(days=1) if e.tod - tod > _DAY / 2 else date
                self._emit(e, day)
            self.pending.clear()

    def _flush(self) -> None:
        e, self.cur = self.cur, None
        if e is None:
            return
        if e.invalid or e.lat is None:
            self.stats.no_fix += 1
            return
        if e.date is not None:
            self._emit(e, e.date)
        elif self.date is not None:
            day = self.date + dt.timedelta(days=1) if self.date_tod - e.tod > _DAY / 2 else self.date
            self._emit(e, day)
        else:
            self.pending.append(e)

    def _emit(self, e: _Epoch, date: dt.date) -> None:
        assert e.lat is not None and e.lon is not None
        self.points.append(TrackPoint(_epoch_time(date, e.tod), e.lat, e.lon, e.course, e.speed))

    def finish(self) -> tuple[list[TrackPoint], NmeaStats]:
        self._flush()
        self.stats.undated += len(self.pending)
        self.pending.clear()
        return self.points, self.stats


def parse_nmea(lines: Iterable[str | bytes]) -> tuple[list[TrackPoint], NmeaStats]:
    """Fixes (in file order) and statistics from NMEA lines; never raises on content."""
    reader = _Reader()
    for raw in lines:
        reader.line(raw)
    return reader.finish()


def parse_nmea_text(data: str | bytes) -> tuple[list[TrackPoint], NmeaStats]:
    """parse_nmea over a whole file's content (any line ending, NULs and binary junk tolerated)."""
    text = data.decode("ascii", "replace") if isinstance(data, (bytes, bytearray)) else data
    return parse_nmea(text.replace("\r", "\n").split("\n"))
