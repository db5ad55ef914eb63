"""NMEA 0183 reader: sentences, talkers, checksums, dating of GGA epochs, and property tests."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.gps.nmea import (
    checksum,
    format_lat,
    format_lon,
    parse_nmea,
    parse_nmea_text,
    sentence,
)
from edge.gps.track import Track, TrackProvider
from edge.types import Frame

RMC = "$GNRMC,091503.000,A,4813.0509,N,00824.8699,E,6.56,175.87,101015,,,A,V*0B"  # nl2008u.log


def epoch(y, mo, d, h=0, mi=0, s=0.0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.timezone.utc).timestamp() + s


def test_real_rmc_sentence_is_parsed():
    # given a real RMC from a u-blox 8 (GN talker) / when parsed
    points, stats = parse_nmea([RMC])
    # then position, course, speed and time are those of the sentence
    assert stats.bad == 0 and len(points) == 1, f"one fix expected, got {points} {stats}"
    p = points[0]
    assert math.isclose(p.lat, 48 + 13.0509 / 60, abs_tol=1e-9), f"lat {p.lat}"
    assert math.isclose(p.lon, 8 + 24.8699 / 60, abs_tol=1e-9), f"lon {p.lon}"
    assert p.course == 175.87, f"course {p.course}"
    assert math.isclose(p.speed_mps, 6.56 * 1852 / 3600), f"speed {p.speed_mps}"
    assert p.time == epoch(2015, 10, 10, 9, 15, 3), f"time {p.time}"


def test_checksum_of_real_sentence():
    body = RMC[1 : RMC.index("*")]
    assert checksum(body) == "0B", "checksum must match the receiver's"
    assert sentence(body) == RMC, "sentence() must rebuild the same line"


def test_any_talker_is_accepted():
    lines = [sentence(f"{t}RMC,120000.00,A,5000.0000,S,00100.0000,W,1.0,90.0,010120,,,A") for t in ("GP", "GN", "GL", "GA", "BD")]
    points, stats = parse_nmea(lines)
    assert stats.bad == 0, f"no bad sentences expected: {stats.bad_examples}"
    assert len(points) == 1, "same time from every talker is one epoch"
    assert points[0].lat == -50.0 and points[0].lon == -(1 + 0 / 60), f"S/W must be negative: {points[0]}"


def test_bad_sentences_are_counted_and_skipped():
    good = sentence("GPRMC,120000.00,A,5000.0000,N,00100.0000,E,1.0,90.0,010120,,,A")
    lines = [
        good[:-2] + ("00" if good[-2:] != "00" else "01"),  # checksum wrong
        good.split("*")[0],  # checksum missing
        "garbage \x00\xff line",
        sentence("GPRMC,120001.00,A,5099.0000,N,00100.0000,E,1.0,90.0,010120,,,A"),  # 99 minutes
        sentence("GPRMC,250001.00,A,5000.0000,N,00100.0000,E,1.0,90.0,010120,,,A"),  # hour 25
        sentence("GPGGA,120002.00,abc,N,00100.0000,E,1,08,1.0,10,M,,,,"),
        "# a comment", "",
        good,
    ]
    points, stats = parse_nmea(lines)
    assert stats.bad == 6, f"six bad lines expected, got {stats.bad}: {stats.bad_examples}"
    assert len(points) == 1 and points[0].lat == 50.0, f"only the good sentence yields a fix: {points}"


def test_lowercase_checksum_accepted():
    s = sentence("GPRMC,120000.00,A,5000.0000,N,00100.0000,E,1.0,90.0,010120,,,A")
    points, stats = parse_nmea([s[:-2] + s[-2:].lower()])
    assert len(points) == 1 and stats.bad == 0, f"hex checksum is case-insensitive: {stats.bad_examples}"


def test_invalid_rmc_and_gga_give_no_fix():
    lines = [
        sentence("GPRMC,120000.00,V,5000.0000,N,00100.0000,E,,,010120,,,N"),
        sentence("GPGGA,120001.00,5000.0000,N,00100.0000,E,0,00,99.9,,M,,,,"),
        "$GPRMC,,V,,,,,,,,,,N*53",
    ]
    points, stats = parse_nmea(lines)
    assert points == [], f"no fixes from invalid epochs: {points}"
    assert stats.no_fix == 3 and stats.bad == 0, f"three no-fix epochs, no bad ones: {stats}"


def test_gga_takes_last_known_date_and_rolls_over_midnight():
    lines = [
        sentence("GPRMC,235959.00,A,5000.0000,N,00100.0000,E,1.0,,311219,,,A"),
        sentence("GPGGA,000001.00,5000.0010,N,00100.0000,E,1,08,1.0,10,M,,,,"),
    ]
    points, _ = parse_nmea(lines)
    assert [p.time for p in points] == [epoch(2019, 12, 31, 23, 59, 59), epoch(2020, 1, 1, 0, 0, 1)], (
        f"GGA after midnight must be dated the next day: {points}"
    )


def test_gga_before_first_date_is_back_filled_and_gga_only_is_undated():
    lines = [
        sentence("GPGGA,115959.00,5000.0000,N,00100.0000,E,1,08,1.0,10,M,,,,"),
        sentence("GPRMC,120000.00,A,5000.0010,N,00100.0000,E,1.0,,010120,,,A"),
    ]
    points, stats = parse_nmea(lines)
    assert [p.time for p in points] == [epoch(2020, 1, 1, 11, 59, 59), epoch(2020, 1, 1, 12)], f"back-filled: {points}"
    points, stats = parse_nmea(lines[:1])
    assert points == [] and stats.undated == 1, f"a GGA-only file has no dates: {points} {stats}"


def test_vtg_supplies_course_and_speed_of_its_epoch():
    lines = [
        sentence("GPGGA,120000.00,5000.0000,N,00100.0000,E,1,08,1.0,10,M,,,,"),
        sentence("GPVTG,271.5,T,,M,10.0,N,18.5,K,A"),
        sentence("GPZDA,120000.00,01,01,2020,00,00"),
    ]
    points, stats = parse_nmea(lines)
    assert len(points) == 1 and stats.bad == 0, f"one fix expected: {points} {stats.bad_examples}"
    assert points[0].course == 271.5 and math.isclose(points[0].speed_mps, 10 * 1852 / 3600), f"{points[0]}"
    assert points[0].time == epoch(2020, 1, 1, 12), "ZDA dates the GGA epoch"


def _frame(t: float) -> Frame:
    return Frame(0, 0.0, t, np.zeros((1, 1, 3), np.uint8), "test")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=120), st.binary(max_size=120)), max_size=30), st.floats(allow_nan=True))
def test_arbitrary_lines_never_raise_out_of_the_provider(lines, t):
    good = sentence("GPRMC,120000.00,A,5000.0000,N,00100.0000,E,1.0,90.0,010120,,,A")
    points, stats = parse_nmea([good, *lines])
    provider = TrackProvider(Track.from_points(points))
    fix = provider.fix_for(_frame(t))
    assert fix.source == "track", "always a track fix"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data):
    points, stats = parse_nmea_text(b"$GPRMC," + data)
    assert stats.bad >= 0 and isinstance(points, list), "parse returns counts and a list"


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-89.999, 89.999),
    lon=st.floats(-179.999, 179.999),
    course=st.floats(0, 359.99),
    knots=st.floats(0, 200),
    t=st.integers(epoch(1990, 1, 1), epoch(2070, 1, 1)),
    talker=st.sampled_from(["GP", "GN", "GL", "GA", "BD"]),
)
def test_valid_coordinates_round_trip(lat, lon, course, knots, t, talker):
    # given a fix formatted as RMC with 5 decimals of minutes
    when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    la, ns = format_lat(lat)
    lo, ew = format_lon(lon)
    body = f"{talker}RMC,{when:%H%M%S}.00,A,{la},{ns},{lo},{ew},{knots:.3f},{course:.2f},{when:%d%m%y},,,A"
    # when parsed back
    points, stats = parse_nmea([sentence(body)])
    # then the values agree to the precision written
    assert stats.bad == 0 and len(points) == 1, f"{body}: {stats.bad_examples}"
    p = points[0]
    assert abs(p.lat - lat) < 2e-7 and abs(p.lon - lon) < 2e-7, f"{body}: {p.lat},{p.lon} vs {lat},{lon}"
    assert abs(p.course - round(course, 2)) < 1e-9 or (round(course, 2) == 360.0 and p.course == 0.0), f"{body}: course"
    assert p.time == t, f"{body}: time {p.time} != {t}"
