"""Magnetic EXIF directions become true headings through the World Magnetic Model, or null with the reason."""

from __future__ import annotations

import calendar
import logging
import os
from pathlib import Path

import numpy as np
import piexif
import pytest

from edge.gps.exif import ExifProvider, fix_from_gps_ifd, read_exif
from edge.gps.magnetic import DeclinationUnavailable, declination, true_bearing
from edge.types import Frame

DATA = Path(os.environ.get("EDGE_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
PHOTO = DATA / "exif" / "tests_67-0_length_string.jpg"  # Samsung SM-G930F, 2016-09-12, direction 291.39 ref M
G = piexif.GPSIFD


def utc(y: int, m: int, d: int) -> float:
    return float(calendar.timegm((y, m, d, 0, 0, 0)))


def gps_ifd(ref: bytes, direction: tuple[int, int] = (5600, 100), date: bytes | None = b"2022:07:02", **extra) -> dict:
    """A GPS IFD at 47.6 N 122.35 W (Seattle, declination about +15.3 in 2022) with a direction and its ref."""
    ifd = {
        G.GPSLatitudeRef: b"N", G.GPSLatitude: ((47, 1), (36, 1), (0, 1)),
        G.GPSLongitudeRef: b"W", G.GPSLongitude: ((122, 1), (21, 1), (0, 1)),
        G.GPSImgDirectionRef: ref, G.GPSImgDirection: direction,
    }
    if date is not None:
        ifd.update({G.GPSDateStamp: date, G.GPSTimeStamp: ((12, 1), (0, 1), (0, 1))})
    ifd.update(extra)
    return ifd


# NOAA/NCEI, "WMM2020 Test Values" (https://www.ngdc.noaa.gov/geomag/WMM/data/WMM2020/WMM2020testvalues.pdf),
# height above the ellipsoid 0 km: declination D in degrees, given to two decimals.
NOAA_WMM2020 = [
    ((2020, 1, 1), 80.0, 0.0, -1.28),
    ((2020, 1, 1), 0.0, 120.0, 0.16),
    ((2020, 1, 1), -80.0, -120.0, 69.36),  # the table's 240 E
    ((2022, 7, 2), 80.0, 0.0, 0.01),  # 2022.5
    ((2022, 7, 2), 0.0, 120.0, -0.06),
    ((2022, 7, 2), -80.0, -120.0, 69.13),
]


@pytest.mark.parametrize("date, lat, lon, expected", NOAA_WMM2020)
def test_declination_matches_noaa_test_values(date, lat, lon, expected):
    got = declination(lat, lon, utc(*date))
    assert got == pytest.approx(expected, abs=0.006), f"WMM2020 at {lat},{lon} on {date}: {got:.3f} != NOAA {expected}"


def test_phone_photo_magnetic_direction_becomes_true_north():
    # given the real Samsung photo: 51.025 N 7.592 E, GPSImgDirection 291.39 ref M, DateTime 2016:09:12, no GPS date
    result = read_exif(str(PHOTO))
    # then the heading is the magnetic bearing plus WMM2015v2's declination there (+1.92 E), not 291.39 as is
    decl = declination(51.025, 7.5919444, utc(2016, 9, 12))
    assert decl == pytest.approx(1.92, abs=0.01), f"WMM2015v2 declination at Plettenberg, 2016-09-12: {decl}"
    assert result.fix.heading == pytest.approx(291.39 + decl, abs=1e-6), f"true heading expected: {result.fix}"
    assert result.fix.status == "ok" and not result.problems, f"converted heading is no problem: {result}"


def test_true_reference_and_missing_reference_are_kept():
    for ref in (b"T", b"", b"\x00"):
        fix = fix_from_gps_ifd(gps_ifd(ref)).fix
        assert fix.heading == pytest.approx(56.0), f"ref {ref!r}: a true bearing stays as it is, got {fix.heading}"


def test_magnetic_56_is_corrected_in_seattle():
    # given the case: a phone photo with direction 56.0 ref M (here at Seattle, 2022-07-02)
    result = fix_from_gps_ifd(gps_ifd(b"M"))
    expected = 56.0 + declination(47.6, -122.35, utc(2022, 7, 2) + 43200)
    # then the event's heading is true north (about 71.3), never 56.0 with status ok
    assert result.fix.heading == pytest.approx(expected, abs=1e-6), f"{result}"
    assert 71.0 < result.fix.heading < 71.6, f"Seattle declination is about +15.3 E in 2022: {result.fix.heading}"


def test_magnetic_track_is_corrected_too():
    ifd = gps_ifd(b"M", date=b"2022:07:02")
    del ifd[G.GPSImgDirection], ifd[G.GPSImgDirectionRef]
    ifd.update({G.GPSTrackRef: b"M", G.GPSTrack: (90, 1)})
    fix = fix_from_gps_ifd(ifd).fix
    assert fix.heading == pytest.approx(90.0 + declination(47.6, -122.35, utc(2022, 7, 2) + 43200)), f"{fix}"


@pytest.mark.parametrize("date", [b"2008:10:23", b"2031:01:01", b"2009:12:31"])
def test_outside_the_models_years_heading_is_null_with_reason(date):
    result = fix_from_gps_ifd(gps_ifd(b"M", date=date))
    assert result.fix.heading is None, f"{date!r}: no WMM for that year, heading must be null: {result.fix}"
    assert result.fix.status == "ok" and result.fix.lat is not None, f"the position is still good: {result.fix}"
    assert any("outside the World Magnetic Model" in p for p in result.problems), f"reason expected: {result.problems}"


def test_magnetic_without_any_date_is_null_with_reason():
    result = fix_from_gps_ifd(gps_ifd(b"M", date=None))
    assert result.fix.heading is None, f"no date, no declination: {result.fix}"
    assert any("without position and date" in p for p in result.problems), f"{result.problems}"


def test_photo_date_dates_a_magnetic_direction_without_gps_date():
    fix = fix_from_gps_ifd(gps_ifd(b"M", date=None), taken_at=utc(2022, 7, 2)).fix
    assert fix.heading == pytest.approx(56.0 + declination(47.6, -122.35, utc(2022, 7, 2))), f"{fix}"


def test_unknown_reference_is_null_with_reason():
    result = fix_from_gps_ifd(gps_ifd(b"X"))
    assert result.fix.heading is None and any("neither T nor M" in p for p in result.problems), f"{result}"


def test_blackout_zone_near_the_magnetic_pole_is_null():
    with pytest.raises(DeclinationUnavailable, match="magnetic pole"):
        declination(86.0, 140.0, utc(2026, 1, 1))
    assert true_bearing(350.0, 47.6, -122.35, utc(2026, 1, 1)) < 10.0, "true bearings wrap into [0, 360)"


def test_provider_warns_once_with_the_reason(tmp_path, caplog):
    # given a photo whose magnetic direction is dated 2008 (before WMM2010)
    path = tmp_path / "old.jpg"
    exif = piexif.dump({"GPS": gps_ifd(b"M", date=b"2008:10:23")})
    piexif.insert(exif, _jpeg(), str(path))
    frame = Frame(0, 0.0, utc(2008, 10, 23) + 43200, np.zeros((1, 1, 3), np.uint8), "folder", str(path))
    with caplog.at_level(logging.WARNING):
        fix = ExifProvider().fix_for(frame)
    assert fix.heading is None and fix.status == "ok", f"{fix}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "heading left null" in warnings[0], f"one warning with the reason: {warnings}"


def _jpeg() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok, "cv2 encodes a tiny JPEG"
    return buf.tobytes()
