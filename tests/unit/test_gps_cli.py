"""`edge gps inspect`: output and exit codes on real and made-up files (watch is tested with the fake gpsd)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from edge.gps.cli import inspect

DATA = Path(os.environ.get("EDGE_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@pytest.mark.parametrize(
    "path, code, needle",
    [
        ("nmea/bt451.log", 0, "fixes: 14"),
        ("nmea/rst39.log", 0, "span: 4.0 s"),
        ("exif/gps_iphone_hdr_NO.jpg", 0, "lon=-3.72475"),
        ("exif/Canon_40D.jpg", 1, "problem: no GPS latitude"),
        ("exif/tests_30-type_error.jpg", 2, "unreadable EXIF: TypeError"),
        ("exif/tests_45-gps_ifd.jpg", 2, "unreadable EXIF"),
        ("nope/missing.nmea", 2, "cannot read"),
    ],
)
def test_inspect_real_files(path, code, needle):
    out = io.StringIO()
    rc = inspect(str(DATA / path), out)
    assert rc == code, f"{path}: exit {rc}, expected {code}\n{out.getvalue()}"
    assert needle in out.getvalue(), f"{path}: {needle!r} not in\n{out.getvalue()}"


def test_inspect_made_up_files(tmp_path):
    cases = {
        "nofix.nmea": ("$GPRMC,,V,,,,,,,,,,N*53\n$GPRMC,bad*00\n", 1, "bad sentences: 1"),
        "empty.gpx": ("<gpx><trk><trkseg></trkseg></trk></gpx>", 1, "no usable fixes"),
        "broken.gpx": ("<gpx><trk", 2, "unreadable"),
        "binary.bin": (bytes(range(256)) * 4, 2, "neither NMEA nor GPX"),
        "one.gpx": ('<gpx><trk><trkseg><trkpt lat="1" lon="2"><time>2024-01-01T00:00:00Z</time></trkpt></trkseg></trk></gpx>', 0, "fixes: 1"),
    }
    for name, (content, code, needle) in cases.items():
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        out = io.StringIO()
        rc = inspect(str(p), out)
        assert rc == code and needle in out.getvalue(), f"{name}: exit {rc} (want {code})\n{out.getvalue()}"
