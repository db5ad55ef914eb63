"""`edge ingest-csv` tracks CSV rows as point detections: a track_id on each event, object records, positions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.cli import main
from edge.events import object_schema
from edge.gps import geo
from edge.ingest.convert import splice_track_id
from tests import sim_drive as sim

HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading"


def drive_csv(path: Path, drive: sim.SimDrive, *, gps: bool = True) -> Path:
    """The drive as a perception-layer CSV: one row per sign in view per frame (bottom-centre u, v)."""
    lines = [HEADER]
    for f in drive.frames:
        for d in f.detections:
            where = f"{f.lat:.7f},{f.lon:.7f},{f.heading_deg:.2f}" if gps else ",,"
            lines.append(f"{f.index},{f.time:.3f},{d.u:.2f},{d.v:.2f},0.8,{d.class_name},{where}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest(capsys, tmp_path: Path, csv_path: Path, *, width: int = 1280, hfov: float = 100.0) -> tuple[list, list, str]:
    config = tmp_path / "edge.toml"
    config.write_text(f"[camera]\nhfov_deg = {hfov}\nimage_width = {width}\n[state]\nstate_dir = \"{tmp_path / 'state'}\"\n")
    objects = tmp_path / "objects.jsonl"
    code = main(["ingest-csv", str(csv_path), "--config", str(config), "--dry-run", "--full", "-q",
                 "--session", "20250101-abcdef", "--objects-out", str(objects)])
    out, err = capsys.readouterr()
    assert code == 0, f"ingest should succeed: {err[-1500:]}"
    assert "Traceback" not in err, err
    events = [json.loads(line) for line in out.splitlines()]
    return events, [json.loads(line) for line in objects.read_text().splitlines()], err


def test_splice_track_id_replaces_the_null():
    line = b'{"a":1,"track_id":null,"schema_version":2}'
    assert splice_track_id(line, 17) == b'{"a":1,"track_id":17,"schema_version":2}', "the null becomes the id"
    with pytest.raises(ValueError, match="no track_id null"):
        splice_track_id(b'{"a":1}', 3)


@pytest.mark.parametrize("make", [sim.straight_road, sim.turn_drive], ids=["straight", "turn"])
def test_a_simulated_drive_as_csv_gives_one_located_object_per_sign(capsys, tmp_path, make):
    drive = make(seed=1)
    events, objects, err = ingest(capsys, tmp_path, drive_csv(tmp_path / "drive.csv", drive))
    seen = [s for s in drive.signs if len(drive.observations(s.sign_id)) >= 2]
    assert len(objects) == len(seen), f"one object per sign seen ({len(seen)}): {[o['track_id'] for o in objects]}"
    validator = jsonschema.Draft202012Validator(object_schema(), format_checker=jsonschema.FormatChecker())
    errors = {}
    for sign in seen:
        mine = [o for o in objects if o["class_name"] == sign.class_name and o["lat"] is not None]
        best = min(mine, key=lambda o: geo.distance_m(o["lat"], o["lon"], sign.lat, sign.lon))
        errors[sign.sign_id] = (round(geo.distance_m(best["lat"], best["lon"], sign.lat, sign.lon), 2), best["position_error_m"])
    assert float(np.median([d for d, _ in errors.values()])) < 3.0, f"signs placed within a few metres: {errors}"
    assert all(d < 3 * e + 1.0 for d, e in errors.values()), f"within 3 × position_error_m + 1 m: {errors}"
    for o in objects:
        assert not [e.message for e in validator.iter_errors(o)], f"object matches its schema: {o}"
        mine = [e for e in events if e["track_id"] == o["track_id"]]
        assert o["detections"] == len(mine), f"object {o['track_id']} counts its rows: {o['detections']} vs {len(mine)}"
        assert o["model"] == "" and o["source"] == "drive.csv", f"CSV objects: no model, the file as source: {o}"
    assert all(isinstance(e["track_id"], int) for e in events), "every row's event carries a track id"
    assert all(e["bbox"] is None for e in events), "CSV rows are point detections: no box"
    assert re.search(rf"objects\s+{len(objects)}\s+located {len(objects)}", err), f"the summary counts them: {err[-800:]}"


def test_track_ids_are_first_lines_and_the_same_on_a_rerun(capsys, tmp_path):
    path = drive_csv(tmp_path / "drive.csv", sim.straight_road(seed=2))
    first, objects1, _ = ingest(capsys, tmp_path, path)
    second, objects2, _ = ingest(capsys, tmp_path, path)
    assert [e["track_id"] for e in first] == [e["track_id"] for e in second], "same track ids on a rerun"
    assert [o["object_id"] for o in objects1] == [o["object_id"] for o in objects2], "same object ids on a rerun"
    lines = {e["detection_id"]: n for n, e in enumerate(first, 2)}  # line 1 is the header
    for o in objects1:
        firsts = [lines[e["detection_id"]] for e in first if e["track_id"] == o["track_id"]]
        assert o["track_id"] == min(firsts), f"a CSV track is named by the line of its first row: {o['track_id']} vs {min(firsts)}"


def test_without_image_width_or_gps_objects_have_no_position_and_say_why(capsys, tmp_path):
    drive = sim.straight_road(seed=3)
    _, objects, _ = ingest(capsys, tmp_path, drive_csv(tmp_path / "a.csv", drive), width=0)
    assert objects and all(o["position_status"] == "no_image_width" and o["lat"] is None for o in objects), objects
    _, objects, _ = ingest(capsys, tmp_path, drive_csv(tmp_path / "b.csv", drive, gps=False))
    assert objects and all(o["position_status"] == "no_gps" and o["lat"] is None for o in objects), objects
