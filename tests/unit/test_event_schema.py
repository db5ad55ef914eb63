"""edge/event.schema.json checked against the one definition of an event: `edge.types.DetectionEvent`."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.cli import main
from edge.events import build_events, event_schema
from edge.types import (
    SCHEMA_VERSION,
    DetectionEvent,
    Detections,
    Frame,
    GpsFix,
    GpsSource,
    GpsStatus,
)

FIELDS = [f.name for f in dataclasses.fields(DetectionEvent)]
HINTS = typing.get_type_hints(DetectionEvent)
SCHEMA = event_schema()
PY_TO_JSON = {str: "string", int: "integer", float: "number", bool: "boolean", tuple: "array", list: "array", type(None): "null"}


def _hint_types(hint: object) -> set[str]:
    """JSON types a field of this Python type is written as (to_json)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_hint_types(a) for a in typing.get_args(hint)))
    if origin is typing.Literal:
        return set().union(*(_hint_types(type(a)) for a in typing.get_args(hint)))
    return {PY_TO_JSON[origin or hint]}


def _schema_types(prop: dict) -> set[str]:
    """JSON types a property of the schema allows (by `type`, else by the values of `enum` / `const`)."""
    if "type" in prop:
        return {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
    values = prop["enum"] if "enum" in prop else [prop["const"]]
    return {PY_TO_JSON[type(v)] for v in values}


def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def _assert_valid(events: list[dict], what: str) -> None:
    validator = _validator()
    assert events, f"{what}: no events to check"
    for e in events:
        errors = [f"{'/'.join(map(str, err.path))}: {err.message}" for err in validator.iter_errors(e)]
        assert not errors, f"{what} should match edge/event.schema.json: {errors}\n{e}"


def test_properties_are_exactly_the_dataclass_fields():
    props = list(SCHEMA["properties"])
    assert set(props) == set(FIELDS), (
        f"schema properties vs DetectionEvent fields: only in the schema {sorted(set(props) - set(FIELDS))}, "
        f"only in the dataclass {sorted(set(FIELDS) - set(props))}"
    )
    assert props == FIELDS, f"schema properties should be listed in the dataclass's field order:\n{props}\n{FIELDS}"
    assert SCHEMA["additionalProperties"] is False, "an event carries no field outside DetectionEvent"


def test_every_field_is_required():
    # to_json() writes every field, null where there is no value: a consumer can rely on each key
    assert SCHEMA["required"] == FIELDS, f"required should be every field in field order, got {SCHEMA['required']}"


@pytest.mark.parametrize("name", FIELDS)
def test_property_types_follow_the_annotation(name: str):
    want, got = _hint_types(HINTS[name]), _schema_types(SCHEMA["properties"][name])
    assert got == want, f"{name}: the schema allows JSON types {sorted(got)}, the annotation {HINTS[name]} gives {sorted(want)}"


@pytest.mark.parametrize(("name", "literal"), [("gps_source", GpsSource), ("gps_status", GpsStatus)])
def test_enums_equal_the_literal_types(name: str, literal: object):
    assert HINTS[name] == literal, f"DetectionEvent.{name} should be annotated {literal}"
    enum = SCHEMA["properties"][name]["enum"]
    assert enum == list(typing.get_args(literal)), f"{name}: schema enum {enum} vs {typing.get_args(literal)}"


def test_schema_version_matches():
    assert SCHEMA["properties"]["schema_version"] == {"const": SCHEMA_VERSION}, \
        f"schema_version should be the const {SCHEMA_VERSION}, got {SCHEMA['properties']['schema_version']}"
    default = next(f.default for f in dataclasses.fields(DetectionEvent) if f.name == "schema_version")
    assert default == SCHEMA_VERSION, f"DetectionEvent.schema_version defaults to {default}, not SCHEMA_VERSION"
    assert SCHEMA["$id"].endswith(f"/{SCHEMA_VERSION}"), f"the schema's $id names its version: {SCHEMA['$id']}"


def test_detector_events_validate():
    # given events of a frame with and without a GPS fix, one with every optional value set
    frame = Frame(index=12, timestamp_sec=0.4, captured_at=1_700_000_000.4, image=np.zeros((4, 4, 3), np.uint8), source="drive.mp4")
    dets = Detections(np.array([[10, 20, 30, 60], [100, 100, 140, 180]], np.float32), np.array([0.91, 0.42], np.float32),
                      np.array([11, 9], np.int64), tuple(f"c{i}" for i in range(80)))
    args = dict(vehicle_id="v1", camera_id="c1", session_id="20260101-abcdef", model="m.onnx", now=1_700_000_001.0)
    events = build_events(frame, dets, inference_latency_ms=12.3, **args)
    events += build_events(frame, dets, inference_latency_ms=None,
                           gps=GpsFix(-33.9, 151.2, 359.9, 12.5, "gpsd", "ok", 120, 1_700_000_000.3), **args)
    events += build_events(frame, dets, inference_latency_ms=1.0, gps=GpsFix(source="gpsd", status="stale", age_ms=9000), **args)
    # then each one's JSON matches the schema
    _assert_valid([json.loads(e.to_json()) for e in events], "build_events output")


def test_ingest_csv_events_validate(tmp_path: Path, capsys):
    # given a CSV with a positioned row, a row without a position, a class outside COCO, a file without GPS columns
    gps = tmp_path / "drive.csv"
    gps.write_text("frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading\n"
                   "75,2.500,1737.28,630.06,0.5249,stop sign,43.7900,-79.3140,45.0\n"
                   "77,2.567,1745.00,633.50,1,traffic light,,,\n"
                   "78,3,5,6,0,pothole,-90,180,0\n")
    bare = tmp_path / "bare.csv"
    bare.write_text("frame_number,timestamp_sec,u,v,confidence,class_name\n0,0.0,1.5,2.5,0.9,stop sign\n")
    events = []
    for path in (gps, bare):
        # when `edge ingest-csv` prints them
        code = main(["ingest-csv", str(path), "--dry-run", "--full", "-q", "--vehicle", "v9"])
        out, err = capsys.readouterr()
        assert code == 0, f"ingest-csv {path.name} should succeed: {err[-1500:]}"
        events += [json.loads(line) for line in out.splitlines()]
    # then each one matches the schema
    assert len(events) == 4, f"every row is an event: {events}"
    _assert_valid(events, "ingest-csv output")
