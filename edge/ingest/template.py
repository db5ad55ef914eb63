"""The fast path's event template, derived from `DetectionEvent`: where each field comes from, as segments.

The segments are not written by hand: they are compiled from DetectionEvent's fields (their order, their keys
as `to_json()` writes them) and `_WRITTEN_AS`, which says where each field's value comes from. A field added
to or renamed in DetectionEvent without an entry there fails at import, and so does a template that, filled
with sample rows by the fast path, differs from `DetectionEvent.to_json()` of the exact path
(`check_template`, which `edge.ingest.fast` calls at import with its FastPath).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from typing import Any

from edge.ingest.rows import (
    FileContext,
    Header,
    Row,
    build_event,
    class_id_for,
    parse_header,
    parse_row,
)
from edge.types import SCHEMA_VERSION, DetectionEvent

# Where the value of each DetectionEvent field comes from, in the fast path (the values are those of
# rows.build_event; `check_template` proves it at import):
#   id     the row's detection id            file   a FileContext attribute (JSON of it)
#   chunk  ingested_at of the chunk          text   a CSV column's number text (null when empty or absent)
#   texts  a JSON array of column texts      class  a value per distinct class name (class_name, class_id)
#   iso    captured_at (start + timestamp)   gps    a value per "positioned or not" (taken from build_event)
#   value  this constant
_WRITTEN_AS: dict[str, tuple[str, object]] = {
    "detection_id": ("id", None),
    "vehicle_id": ("file", "vehicle_id"),
    "session_id": ("file", "session_id"),
    "ingested_at": ("chunk", None),
    "frame_number": ("text", "frame_number"),
    "timestamp_sec": ("text", "timestamp_sec"),
    "pixel_u": ("text", "u"),
    "pixel_v": ("text", "v"),
    "confidence": ("text", "confidence"),
    "class_name": ("class", None),
    "vehicle_lat": ("text", "vehicle_lat"),
    "vehicle_lon": ("text", "vehicle_lon"),
    "heading": ("text", "heading"),
    "camera_id": ("file", "camera_id"),
    "class_id": ("class", None),
    "bbox": ("value", None),  # a point detection
    "inference_latency_ms": ("value", None),
    "captured_at": ("iso", None),
    "model": ("file", "model"),
    "source": ("file", "source"),
    "gps_source": ("gps", None),
    "gps_status": ("gps", None),
    "gps_age_ms": ("value", None),
    "track_id": ("value", None),
    "schema_version": ("value", SCHEMA_VERSION),
}
_FIELDS = tuple(f.name for f in dataclasses.fields(DetectionEvent))
if set(_WRITTEN_AS) != set(_FIELDS):
    raise ImportError(
        "edge.ingest.template: DetectionEvent's fields and the fast path's _WRITTEN_AS disagree "
        f"(fields without an entry: {sorted(set(_FIELDS) - set(_WRITTEN_AS))}, entries without a field: "
        f"{sorted(set(_WRITTEN_AS) - set(_FIELDS))}): say in _WRITTEN_AS where each field's value comes from"
    )
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # as DetectionEvent.to_json()


def _gps_values() -> dict[bool, dict[str, bytes]]:
    """The "gps" fields of an event with and without a position, as rows.build_event writes them (JSON text),
    checked against the Literal types of DetectionEvent."""
    ctx = FileContext("s", "v", "c", "f.csv", 0.0)
    hints = typing.get_type_hints(DetectionEvent)
    out = {}
    for positioned in (False, True):
        lat_lon = (0.0, 0.0) if positioned else (None, None)
        ev = build_event(Row(0, 0.0, 0.0, 0.0, 0.0, "x", *lat_lon, None), ctx, 2, "")
        values = {}
        for name, (how, _) in _WRITTEN_AS.items():
            if how == "gps":
                value = getattr(ev, name)
                allowed = typing.get_args(hints[name])
                if allowed and value not in allowed:
                    raise ImportError(f"edge.ingest.template: {name}={value!r} is not one of DetectionEvent's {allowed}")
                values[name] = _JSON(value).encode()
        out[positioned] = values
    return out


GPS_VALUES = _gps_values()  # positioned or not -> JSON texts of the "gps" fields


def class_values(name: str) -> dict[str, bytes]:
    """JSON texts of the "class" fields (class_name, class_id) of a valid class name."""
    values = {"class_name": name, "class_id": class_id_for(name)}
    return {f: _JSON(values[f]).encode() for f, (how, _) in _WRITTEN_AS.items() if how == "class"}


def _pieces(ctx: FileContext, ingested_at: str) -> list:
    """An event line as pieces in DetectionEvent's field order: bytes, or (kind, what) filled per row, kind
    one of "fixed" (what: "id" or "iso"), "text" (a column), "class" or "gps" (a field name)."""
    out: list = [b"{"]
    for i, name in enumerate(_FIELDS):
        how, arg = _WRITTEN_AS[name]
        out.append((b"," if i else b"") + _JSON(name).encode() + b":")
        if how in ("id", "iso"):
            out += [b'"', ("fixed", how), b'"']
        elif how == "file":
            out.append(_JSON(getattr(ctx, arg)).encode())
        elif how == "chunk":
            out.append(_JSON(ingested_at).encode())
        elif how == "text":
            out.append(("text", arg))
        elif how == "texts":
            out.append(b"[")
            for j, col in enumerate(arg):
                if j:
                    out.append(b",")
                out.append(("text", col))
            out.append(b"]")
        elif how in ("class", "gps"):
            out.append((how, name))
        else:
            out.append(_JSON(arg).encode())
    out.append(b"}\n")
    return out


def segments(ctx: FileContext, ingested_at: str) -> list[tuple[str, object]]:
    """The event line of a file's chunk as few segments: runs of constants joined to the per-row piece next to
    them when that piece is not a number text. A segment is ("const", bytes), ("text", column), or
    ("fixed" | "class" | "gps", [bytes or what, ...])."""
    segs: list[list] = []
    for p in _pieces(ctx, ingested_at):
        kind = "const" if isinstance(p, bytes) else p[0]
        part = p if isinstance(p, bytes) else p[1]
        last = segs[-1] if segs else None
        if kind == "text":
            segs.append(["text", part])
        elif last is not None and last[0] != "text" and (kind == "const" or last[0] in ("const", kind)):
            last[0] = kind if kind != "const" else last[0]
            last[1].append(part)
        else:
            segs.append([kind, [part]])
    out: list[tuple[str, object]] = []
    for kind, parts in segs:
        if kind == "text":
            out.append((kind, parts))
            continue
        merged: list = []
        for part in parts:  # adjacent bytes in one piece
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += part
            else:
                merged.append(part)
        out.append((kind, merged[0] if kind == "const" else merged))
    return out


def check_template(fast_path: Callable[[Header, FileContext], Any]) -> None:
    """Sample rows through `fast_path(header, ctx).run(...)` must give `DetectionEvent.to_json()` of the exact
    path byte for byte: a field reordered, retyped or written differently by rows.build_event fails here, at
    import (of edge.ingest.fast, which passes its FastPath: this module does not import it)."""
    header = parse_header("frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading")
    ctx = FileContext("20250101-abcdef", "veh-1", "cam \\ é", "drive.csv", 1_700_000_000.25)
    chunk = "12,1.5,640.25,480.0,0.875,stop sign,37.5,-122.25,90.5\n13,2,100,200,0.5,Zébra\\x,,,\n".encode()
    ingested_at = "2026-01-01T00:00:00.000Z"
    fast = fast_path(header, ctx).run(chunk, 2, ingested_at)
    got = [] if fast is None or fast.flagged.size else bytes(fast.data).splitlines()
    lines = chunk.decode().splitlines()
    want = [build_event(parse_row(t.split(","), header), ctx, 2 + i, ingested_at).to_json().encode()
            for i, t in enumerate(lines)]
    if got != want:
        diff = next((f"{g!r}\n   exact path: {w!r}" for g, w in zip(got, want) if g != w), f"{len(got)} lines, not {len(want)}")
        raise ImportError(f"edge.ingest.template: the event template differs from DetectionEvent.to_json(): {diff}")
