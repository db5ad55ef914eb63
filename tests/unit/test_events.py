"""Detection events: stable ids, session ids, bottom-centre pixels, JSON Schema."""

from __future__ import annotations

import json
import os
import re

import jsonschema
import numpy as np

from edge.events import (
    build_events,
    derived_session_id,
    detection_id,
    event_schema,
    new_session_id,
    recording_session_id,
)
from edge.types import Detections, Frame, GpsFix

NAMES = ("person", "traffic light", "stop sign")


def _frame(index=12):
    return Frame(index=index, timestamp_sec=0.4, captured_at=1_700_000_000.4, image=np.zeros((4, 4, 3), np.uint8), source="drive.mp4")


def _dets():
    return Detections(
        np.array([[10, 20, 30, 60], [100, 100, 140, 180]], np.float32),
        np.array([0.91, 0.42], np.float32),
        np.array([2, 1], np.int64),
        NAMES,
    )


def _build(**kw):
    args = dict(vehicle_id="v1", camera_id="c1", session_id="20260101-abcdef", model="m.onnx", inference_latency_ms=12.3, now=1_700_000_001.0)
    args.update(kw)
    return build_events(_frame(), _dets(), **args)


def test_ids_are_stable_and_distinct():
    a, b = _build(), _build(now=1_800_000_000.0)
    assert [e.detection_id for e in a] == [e.detection_id for e in b], "same session/source/frame/index must give the same ids"
    assert a[0].detection_id != a[1].detection_id, "two detections of a frame need different ids"
    other = _build(session_id="20260101-000000")
    assert other[0].detection_id != a[0].detection_id, "another session must give other ids"
    assert detection_id("s", "src", 1, 0) == detection_id("s", "src", 1, 0), "detection_id is a pure function"


def test_event_fields():
    e = _build()[0]
    assert (e.pixel_u, e.pixel_v) == (20.0, 60.0), f"pixel_u/v should be the bottom-centre, got {(e.pixel_u, e.pixel_v)}"
    assert e.class_name == "stop sign" and e.class_id == 2, f"class taken from the model names, got {e.class_name}/{e.class_id}"
    assert e.captured_at == "2023-11-14T22:13:20.400Z", f"captured_at ISO UTC, got {e.captured_at}"
    assert e.vehicle_lat is None and e.gps_source == "none" and e.gps_status == "no_fix", "no GPS → nulls"


def test_gps_fields_flow_into_event():
    fix = GpsFix(lat=43.79, lon=-79.31, heading=45.0, source="gpsd", status="ok", age_ms=120)
    e = _build(gps=fix)[0]
    assert (e.vehicle_lat, e.vehicle_lon, e.heading, e.gps_source, e.gps_age_ms) == (43.79, -79.31, 45.0, "gpsd", 120), "GPS fix copied"


def test_events_validate_against_shipped_schema():
    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for e in _build() + _build(gps=GpsFix(lat=-33.9, lon=151.2, heading=359.9, source="track", status="ok", age_ms=0)):
        errors = list(validator.iter_errors(json.loads(e.to_json())))
        assert not errors, f"event should match the schema: {[err.message for err in errors]}"
    assert set(schema["required"]) == set(json.loads(_build()[0].to_json())), "schema and event must list the same fields"


def test_session_ids():
    assert re.fullmatch(r"\d{8}-[0-9a-f]{6}", new_session_id()), "live session ids are YYYYMMDD-<6 hex>"
    a = derived_session_id(1_700_000_000, "drive.mp4", 123)
    assert a == derived_session_id(1_700_000_000, "drive.mp4", 123), "derived session id must be stable"
    assert a.startswith("20231114-"), f"derived session id starts with the recording date, got {a}"
    assert a != derived_session_id(1_700_000_000, "drive.mp4", 124), "another file gives another session"


def test_recording_session_id_is_one_rule_for_files_and_folders(tmp_path):
    # given a file and a folder of two images, both modified on 2023-11-14
    video = tmp_path / "drive.mp4"
    video.write_bytes(b"x" * 123)
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"")
    for p in (video, folder):
        os.utime(p, (1_700_000_000, 1_700_000_000))
    # then without a start the modification time dates the session, with one the start does
    assert recording_session_id(video, None, "v1", "c1") == derived_session_id(1_700_000_000, "drive.mp4", 123, "v1", "c1"), \
        "a file: mtime, name, size, vehicle, camera"
    assert recording_session_id(video, 1_735_689_600.0, "v1", "c1") == derived_session_id(1_735_689_600.0, "drive.mp4", 123, "v1", "c1"), \
        "an explicit start wins over the modification time"
    assert recording_session_id(video, 1_735_689_600.0, "v1", "c1").startswith("20250101-"), "dated by the explicit start"
    assert recording_session_id(folder, None, "v1", "c1") == derived_session_id(1_700_000_000, "frames", 2, "v1", "c1"), \
        "a folder: its number of entries instead of a size"
    assert recording_session_id(video, None, "v2", "c1") != recording_session_id(video, None, "v1", "c1"), "another vehicle, another session"
    assert recording_session_id(video, None, "v1", "c2") != recording_session_id(video, None, "v1", "c1"), "another camera, another session"


def test_readme_shows_the_shipped_schema():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == event_schema(), "the README's JSON Schema must equal edge/event.schema.json"
    for field in event_schema()["required"]:
        assert f"| `{field}` |" in readme, f"README's field table should list {field}"
