"""EXIF GPS of image-folder frames: every sample photo, malformed input, and property tests."""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import piexif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.gps.exif import ExifProvider, fix_from_gps_ifd, read_exif
from edge.sources.image_folder import photo_time
from edge.types import Frame

DATA = Path(os.environ.get("EDGE_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
EXIF = DATA / "exif"
G = piexif.GPSIFD

GOOD = {  # file: (|lat|, |lon|, heading) from ../shared/data/exif/SOURCES.txt
    "gps_iphone_hdr_NO.jpg": (40.446972, 3.724753, 212.87),
    "gps_Kodak_CX7530.jpg": (0.3713, 36.056417, None),
    # 291.39 ref M (magnetic) + WMM2015v2 declination 1.92 E on 2016-09-12: tests/unit/test_heading_wmm.py
    "tests_67-0_length_string.jpg": (51.025, 7.591944, 293.31),
}
BAD = sorted(
    p.name for p in EXIF.glob("*.jpg") if not p.name.startswith("gps_") and p.name not in GOOD
)


def frame(path: Path | None, captured_at: float | None = None) -> Frame:
    """A frame of the photo, dated as the image-folder source dates it (its EXIF time, else now)."""
    if captured_at is None:
        captured_at = (photo_time(path) if path is not None else None) or time.time()
    return Frame(0, 0.0, captured_at, np.zeros((1, 1, 3), np.uint8), "folder", None if path is None else str(path))


def refs(path: Path) -> tuple[int, int]:
    """Signs of latitude and longitude read independently with piexif."""
    gps = piexif.load(str(path))["GPS"]
    lat_ref, lon_ref = gps[G.GPSLatitudeRef].strip(b"\x00 "), gps[G.GPSLongitudeRef].strip(b"\x00 ")
    return (-1 if lat_ref == b"S" else 1), (-1 if lon_ref == b"W" else 1)


def test_sample_set_is_complete():
    names = {p.name for p in EXIF.glob("*.jpg")}
    assert {"tests_30-type_error.jpg", "tests_45-gps_ifd.jpg", "gps_iphone_hdr_NO.jpg"} <= names, f"data at {EXIF}"
    assert len(BAD) >= 8, f"malformed/GPS-less samples expected, got {BAD}"


@pytest.mark.parametrize("name", sorted(p.name for p in EXIF.glob("gps_*.jpg")) + ["tests_67-0_length_string.jpg"])
def test_good_photos_give_their_position(name, caplog):
    # given a real GPS-tagged photo / when its frame asks for a fix
    path = EXIF / name
    with caplog.at_level(logging.WARNING):
        fix = ExifProvider().fix_for(frame(path))
    # then the position is the photo's, with the hemisphere signs of its refs
    lat_sign, lon_sign = refs(path)
    assert fix.status == "ok" and fix.source == "exif", f"{name}: {fix}"
    assert fix.age_ms == (None if fix.time is None else 0), f"{name}: dated by its own GPS time, else age unknown: {fix}"
    assert (fix.lat > 0) == (lat_sign > 0) or fix.lat == 0, f"{name}: lat sign {fix.lat} vs ref"
    assert (fix.lon > 0) == (lon_sign > 0), f"{name}: lon sign {fix.lon} vs ref"
    if name in GOOD:
        lat, lon, heading = GOOD[name]
        assert abs(fix.lat - lat_sign * lat) < 1e-5 and abs(fix.lon - lon_sign * lon) < 1e-5, f"{name}: {fix}"
        assert (fix.heading is None) == (heading is None), f"{name}: heading {fix.heading}"
        if heading is not None:
            assert abs(fix.heading - heading) < 0.01, f"{name}: heading {fix.heading} != {heading}"
    else:  # Nikon DSCN: Tuscany, 43.46 N 11.88 E; direction ref is a stray NUL without a value
        assert 43.4 < fix.lat < 43.5 and 11.8 < fix.lon < 11.9 and fix.heading is None, f"{name}: {fix}"
        assert fix.time is not None and fix.time > 1.2e9, f"{name}: GPS date+time expected: {fix.time}"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], f"{name}: no warning for a good photo"


def test_iphone_time_and_speed():
    fix = read_exif(str(EXIF / "gps_iphone_hdr_NO.jpg")).fix
    assert fix.time == pytest.approx(1428689542.06), f"2015-04-10T18:12:22.06Z expected, got {fix.time}"
    assert fix.speed_mps == 0.0, f"GPSSpeed 0 km/h, got {fix.speed_mps}"


@pytest.mark.parametrize("name", BAD)
def test_malformed_photos_give_nulls_and_one_warning(name, caplog):
    provider = ExifProvider()
    with caplog.at_level(logging.WARNING, logger="edge.gps.exif"):
        fixes = [provider.fix_for(frame(EXIF / name)) for _ in range(3)]  # same frame asked three times
    for fix in fixes:
        assert fix.lat is None and fix.lon is None and fix.heading is None, f"{name}: {fix}"
        assert fix.status == "no_fix" and fix.source == "exif", f"{name}: {fix}"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and name in warnings[0].getMessage(), f"{name}: one warning per file: {warnings}"


@pytest.mark.parametrize("name", ["tests_30-type_error.jpg", "tests_45-gps_ifd.jpg"])
def test_piexif_errors_are_contained(name):
    with pytest.raises(Exception):  # precondition: piexif itself raises on these
        piexif.load(str(EXIF / name))
    result = read_exif(str(EXIF / name))
    assert not result.readable and result.fix.lat is None and result.problems, f"{name}: {result}"


def test_frame_without_path_and_missing_file(tmp_path, caplog):
    provider = ExifProvider()
    with caplog.at_level(logging.WARNING):
        a = provider.fix_for(frame(None))
        b = provider.fix_for(frame(tmp_path / "nope.jpg"))
    assert a.status == b.status == "no_fix" and a.lat is None and b.lat is None, f"{a} {b}"
    assert len(caplog.records) == 2, f"one warning each: {[r.getMessage() for r in caplog.records]}"


def gps_ifd(over=None):
    """10.5 N, 20.25 W, with `over` applied (a None value removes the tag)."""
    ifd = {
        G.GPSLatitudeRef: b"N", G.GPSLatitude: ((10, 1), (30, 1), (0, 1)),
        G.GPSLongitudeRef: b"W", G.GPSLongitude: ((20, 1), (15, 1), (0, 1)),
    }
    for k, v in (over or {}).items():
        if v is None:
            ifd.pop(k, None)
        else:
            ifd[k] = v
    return ifd


@pytest.mark.parametrize(
    "over, field",
    [
        ({G.GPSLatitude: ((10, 0), (30, 1), (0, 1))}, "latitude"),  # zero denominator
        ({G.GPSLongitudeRef: None}, "longitude"),  # missing ref
        ({G.GPSLatitudeRef: b"X"}, "latitude"),  # nonsense ref
        ({G.GPSLatitude: ((91, 1), (0, 1), (0, 1))}, "latitude"),  # out of range
        ({G.GPSLongitude: ((181, 1), (0, 1), (0, 1))}, "longitude"),
        ({G.GPSLatitude: b"garbage"}, "latitude"),  # wrong type
        ({G.GPSLongitude: None}, "longitude"),  # absent
    ],
)
def test_bad_values_give_null_position(over, field):
    result = fix_from_gps_ifd(gps_ifd(over))
    assert result.fix.lat is None and result.fix.lon is None and result.fix.status == "no_fix", f"{over}: {result}"
    assert any(field in p for p in result.problems), f"{over}: problem names the {field}: {result.problems}"


def test_bad_direction_nulls_only_the_heading():
    result = fix_from_gps_ifd(gps_ifd({G.GPSImgDirectionRef: b"T", G.GPSImgDirection: (5, 0), G.GPSTrack: (90, 1)}))
    assert result.fix.lat == 10.5 and result.fix.lon == -20.25, f"position still good: {result.fix}"
    assert result.fix.heading == 90.0, f"falls back to GPSTrack: {result.fix}"
    assert result.problems, "the bad direction is reported"


def test_huge_entry_count_is_rejected_quickly():
    # a TIFF block whose only entry claims 2**32-1 BYTE values (piexif would build a 4 GB format string)
    block = b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 1) + struct.pack("<HHLL", 0x010F, 1, 0xFFFFFFFF, 26) + b"\x00" * 8
    started = time.monotonic()
    result = read_exif(b"Exif\x00\x00" + block)
    assert not result.readable and result.fix.lat is None, f"rejected as malformed: {result}"
    assert time.monotonic() - started < 1.0, "rejected without allocating"


def _exif_with_gps(ifd) -> bytes:
    return piexif.dump({"0th": {}, "Exif": {}, "GPS": ifd, "1st": {}, "thumbnail": None})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"", b"Exif\x00\x00", b"Exif\x00\x00II*\x00", b"Exif\x00\x00MM\x00*", b"\xff\xd8"]))
def test_arbitrary_bytes_as_exif_never_raise(data, prefix):
    result = read_exif(prefix + data)
    assert result.fix.source == "exif", "always an exif fix"
    assert (result.fix.status == "ok") == (result.fix.lat is not None), f"status follows the position: {result}"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_mutated_real_exif_never_raises(noise):
    blob = bytearray(_exif_with_gps(gps_ifd()))
    for k, b in enumerate(noise):  # overwrite bytes of a valid blob (keeps the header, breaks the rest)
        blob[(k * 7919 + b) % len(blob)] = b
    read_exif(bytes(blob))


rat = st.tuples(st.integers(0, 2**31), st.integers(1, 2**31))


@settings(max_examples=200, deadline=None)
@given(
    d=st.integers(0, 89), m=st.integers(0, 59), s=rat, dlon=st.integers(0, 179),
    south=st.booleans(), west=st.booleans(), direction=st.tuples(st.integers(0, 35999), st.just(100)),
)
def test_valid_rationals_round_trip(d, m, s, dlon, south, west, direction):
    sec = s[0] / s[1]
    ifd = {
        G.GPSLatitudeRef: b"S" if south else b"N", G.GPSLatitude: ((d, 1), (m, 1), s),
        G.GPSLongitudeRef: b"W" if west else b"E", G.GPSLongitude: ((dlon, 1), (m, 1), s),
        G.GPSImgDirectionRef: b"T", G.GPSImgDirection: direction,
    }
    result = read_exif(_exif_with_gps(ifd))
    lat, lon = d + m / 60 + sec / 3600, dlon + m / 60 + sec / 3600
    if lat > 90 or lon > 180:  # seconds may push past the limits: must be refused, not wrapped
        assert result.fix.lat is None, f"out of range refused: {result}"
        return
    assert result.fix.lat == pytest.approx(-lat if south else lat, abs=1e-9), f"lat: {result}"
    assert result.fix.lon == pytest.approx(-lon if west else lon, abs=1e-9), f"lon: {result}"
    assert result.fix.heading == pytest.approx(direction[0] / 100), f"heading: {result}"


# --- issue 11: image-folder frames are dated by their photo, and an EXIF fix has a real age ---------------------


def _photo(path: Path, gps_time: tuple[str, int, int, int] | None, original: tuple[str, str] | None = None) -> Path:
    """A tiny JPEG at 43.46 N 11.88 E with an optional GPS date/time (UTC) and DateTimeOriginal + offset."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok, "cv2 encodes a tiny JPEG"
    gps = {G.GPSLatitudeRef: b"N", G.GPSLatitude: ((43, 1), (28, 1), (0, 1)),
           G.GPSLongitudeRef: b"E", G.GPSLongitude: ((11, 1), (53, 1), (0, 1))}
    if gps_time is not None:
        date, h, m, s = gps_time
        gps.update({G.GPSDateStamp: date.encode(), G.GPSTimeStamp: ((h, 1), (m, 1), (s, 1))})
    exif = {}
    if original is not None:
        exif = {piexif.ExifIFD.DateTimeOriginal: original[0].encode(), 0x9011: original[1].encode()}
    piexif.insert(piexif.dump({"GPS": gps, "Exif": exif}), buf.tobytes(), str(path))
    return path


def test_photo_time_prefers_the_zoned_original_then_gps():
    nikon = photo_time(EXIF / "gps_DSCN0010.jpg")
    assert nikon == pytest.approx(1224772027.24), f"GPS 2008-10-23 14:27:07.24 UTC (no zoned original): {nikon}"
    assert photo_time(EXIF / "gps_Kodak_CX7530.jpg") is None, "a DateTimeOriginal without zone dates nothing"
    assert photo_time(EXIF / "tests_30-type_error.jpg") is None and photo_time(EXIF / "nope.jpg") is None, "never raises"


def test_image_folder_dates_frames_by_the_photo_not_the_copy(tmp_path):
    # given a folder with a copied Nikon photo (mtime: now), a phone photo with a zoned original, and one with no time
    from edge.sources.image_folder import ImageFolderSource

    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((EXIF / "gps_DSCN0010.jpg").read_bytes())
    _photo(folder / "b.jpg", ("2024:05:01", 7, 59, 0), ("2024:05:01 10:00:00", "+02:00"))
    _photo(folder / "c.jpg", None)
    frames = list(ImageFolderSource(folder, inference_fps=5).frames(threading.Event()))
    # then each frame carries its photo's time (else the file's mtime) and its own file name
    got = [(f.source, f.captured_at) for f in frames]
    assert got[0] == ("shots/a.jpg", pytest.approx(1224772027.24)), f"Nikon: its GPS time: {got[0]}"
    assert got[1] == ("shots/b.jpg", 1714550400.0), f"phone: 10:00+02:00 = 08:00Z: {got[1]}"
    assert got[2] == ("shots/c.jpg", pytest.approx((folder / "c.jpg").stat().st_mtime)), f"no time: mtime: {got[2]}"


def test_exif_fix_age_is_capture_minus_fix_time(tmp_path):
    provider = ExifProvider(max_age_s=2.0)
    # a photo taken at 08:00Z whose GPS fix is from 07:59Z: a minute old, stale
    phone = _photo(tmp_path / "b.jpg", ("2024:05:01", 7, 59, 0), ("2024:05:01 10:00:00", "+02:00"))
    fix = provider.fix_for(frame(phone))
    assert (fix.status, fix.age_ms) == ("stale", 60_000), f"a cached fix is not fresh: {fix}"
    # a frame dated years after its fix (an mtime, say) is not 'ok, age 0'
    nikon = EXIF / "gps_DSCN0010.jpg"
    fix = provider.fix_for(frame(nikon, captured_at=1_700_000_000.0))
    assert fix.status == "stale" and fix.age_ms == round((1_700_000_000.0 - 1224772027.24) * 1000), f"{fix}"
    assert fix.lat is not None, "the position stays: stale says how far to trust it"
    # a fix without any GPS time has an unknown age
    fix = provider.fix_for(frame(_photo(tmp_path / "c.jpg", None), captured_at=1_700_000_000.0))
    assert (fix.status, fix.age_ms) == ("ok", None), f"no time, no age: {fix}"
