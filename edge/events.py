"""Detection events: stable ids, session ids, and turning Detections of a Frame into DetectionEvents."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edge.clock import iso_utc
from edge.types import DetectionEvent, Detections, Frame, GpsFix

# Fixed namespace for UUIDv5 detection ids: changing it changes every id ever emitted.
DETECTION_NAMESPACE = uuid.UUID("6b1f7c52-3f0e-5c1a-9d8e-2f4a0c3e9b71")


def detection_id(*parts: object) -> str:
    """Stable UUIDv5 from the parts (session, source, frame, index): a retry or a replay gives the same id."""
    return str(uuid.uuid5(DETECTION_NAMESPACE, "/".join(str(p) for p in parts)))


def object_id(session_id: str, camera_id: str, source: str, track_id: int) -> str:
    """Stable UUIDv5 of a tracked object: a replay or an ingest of the same input gives the same id."""
    return detection_id("object", session_id, camera_id, source, track_id)


def new_session_id(now: dt.datetime | None = None) -> str:
    """`YYYYMMDD-<6 hex>`, random: for live runs."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d}-{secrets.token_hex(3)}"


def derived_session_id(start: float, *identity: object) -> str:
    """`YYYYMMDD-<6 hex>` derived from the recording, so a second replay of the same drive has the same ids."""
    day = dt.datetime.fromtimestamp(start, dt.timezone.utc)
    digest = hashlib.sha1("/".join(str(p) for p in identity).encode()).hexdigest()[:6]
    return f"{day:%Y%m%d}-{digest}"


def recording_session_id(path: Path, start: float | None, vehicle_id: str, camera_id: str) -> str:
    """The session of a recording (a video or CSV file, an image folder), the one rule for replay and ingest-csv:
    derived from the start time the command knows (an explicit start, else the file's modification time), the
    name, the size (a file) or the number of entries (a folder), the vehicle and the camera; so the same
    recording gives the same session, and the same ids, every time. A configured session id wins over this:
    callers check it first."""
    st = path.stat()
    size = st.st_size if path.is_file() else sum(1 for _ in path.iterdir())
    return derived_session_id(st.st_mtime if start is None else start, path.name, size, vehicle_id, camera_id)


def build_events(
    frame: Frame,
    detections: Detections,
    *,
    vehicle_id: str,
    camera_id: str,
    session_id: str,
    model: str,
    inference_latency_ms: float | None,
    gps: GpsFix | None = None,
    now: float,
    track_ids: Sequence[int] | None = None,
) -> list[DetectionEvent]:
    """One event per detection; detection index is the position in `detections` (sorted by confidence);
    `track_ids`, one per detection, from the source's tracker (None: not tracked)."""
    gps = gps or GpsFix.none()
    ingested = iso_utc(now)
    captured = iso_utc(frame.captured_at)
    out = []
    boxes = detections.xyxy.astype(float).round(2)
    confs = detections.confidence.astype(float).round(4)
    for i in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        out.append(
            DetectionEvent(
                detection_id=detection_id(session_id, frame.source, frame.index, i),
                vehicle_id=vehicle_id,
                session_id=session_id,
                ingested_at=ingested,
                frame_number=frame.index,
                timestamp_sec=round(frame.timestamp_sec, 3),
                pixel_u=round((x1 + x2) / 2, 2),
                pixel_v=y2,
                confidence=float(confs[i]),
                class_name=detections.class_name(i),
                vehicle_lat=gps.lat,
                vehicle_lon=gps.lon,
                heading=gps.heading,
                camera_id=camera_id,
                class_id=int(detections.class_id[i]),
                bbox=(x1, y1, x2, y2),
                inference_latency_ms=None if inference_latency_ms is None else round(inference_latency_ms, 2),
                captured_at=captured,
                model=model,
                source=frame.source,
                gps_source=gps.source,
                gps_status=gps.status,
                gps_age_ms=gps.age_ms,
                track_id=None if track_ids is None else int(track_ids[i]),
            )
        )
    return out


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a detection event, as shipped in the package."""
    return json.loads(resources.files("edge").joinpath("event.schema.json").read_text())


def object_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an object record (the objects topic), as shipped in the package."""
    return json.loads(resources.files("edge").joinpath("object.schema.json").read_text())
