"""Frozen value types that flow between pipeline stages: Frame, Detections, GpsFix, DetectionEvent, ObjectRecord."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SCHEMA_VERSION = 2  # of DetectionEvent (edge/event.schema.json); the change list from 1 is in the README
OBJECT_SCHEMA_VERSION = 1  # of ObjectRecord (edge/object.schema.json)

GpsSource = Literal["gpsd", "exif", "track", "fixed", "none"]
GpsStatus = Literal["ok", "stale", "no_fix"]
# why an object has no position: no GPS with heading in its sightings, the vehicle did not move, the bearings
# barely differ, the rays do not meet in front of the camera, or the image width is unknown (CSV input)
PositionStatus = Literal["ok", "no_gps", "stationary", "low_parallax", "no_intersection", "no_image_width"]
QueuePolicy = Literal["drop_oldest", "block"]  # a full queue or spool: evict the oldest, or wait for room
BrokerState = Literal["none", "connected", "unreachable"]  # no broker configured, or whether it is reachable


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame and where/when it came from."""

    index: int  # frame number in the source (0-based, counts every decoded frame)
    timestamp_sec: float  # media time for files, seconds since the source opened for live
    captured_at: float  # Unix epoch seconds: wall clock for live, recording start + media time for files
    image: np.ndarray = field(repr=False)  # BGR, HxWx3 uint8
    source: str = ""  # display name of the source (file name or URL without credentials)
    path: str | None = None  # file the frame was read from, for image folders (EXIF lives there)
    # time.monotonic() when the decoder handed the frame over: where the "capture" stage latency starts
    decoded_at: float = field(default_factory=time.monotonic, repr=False)


@dataclass(frozen=True, slots=True)
class Detections:
    """Columnar detections of one frame, boxes in original image pixels."""

    xyxy: np.ndarray  # (n, 4) float32
    confidence: np.ndarray  # (n,) float32
    class_id: np.ndarray  # (n,) int64
    names: tuple[str, ...] = ()  # class names of the model, indexed by class_id

    def __len__(self) -> int:
        return int(self.class_id.shape[0])

    @classmethod
    def empty(cls, names: tuple[str, ...] = ()) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64), names
        )

    def class_name(self, i: int) -> str:
        c = int(self.class_id[i])
        return self.names[c] if 0 <= c < len(self.names) else str(c)


@dataclass(frozen=True, slots=True)
class GpsFix:
    """Vehicle position and heading for one instant, with where it came from and how fresh it is."""

    lat: float | None = None
    lon: float | None = None
    heading: float | None = None  # degrees clockwise from true North, [0, 360)
    speed_mps: float | None = None
    source: GpsSource = "none"
    status: GpsStatus = "no_fix"
    age_ms: int | None = None  # capture time minus fix time
    time: float | None = None  # Unix epoch seconds of the fix

    @classmethod
    def none(cls) -> GpsFix:
        return cls()


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """One detected object, the unit that is spooled and sent to Kafka (schema in edge/event.schema.json)."""

    detection_id: str
    vehicle_id: str
    session_id: str
    ingested_at: str  # ISO 8601 UTC, when the event was created
    frame_number: int
    timestamp_sec: float
    pixel_u: float  # bottom-centre of the box
    pixel_v: float
    confidence: float
    class_name: str
    vehicle_lat: float | None
    vehicle_lon: float | None
    heading: float | None
    camera_id: str
    class_id: int | None  # None: the class name is not one of the model's (CSV rows)
    bbox: tuple[float, float, float, float] | None  # None: a point detection (CSV rows carry only u, v)
    inference_latency_ms: float | None
    captured_at: str  # ISO 8601 UTC, when the frame was captured
    model: str
    source: str
    gps_source: GpsSource = "none"
    gps_status: GpsStatus = "no_fix"
    gps_age_ms: int | None = None
    track_id: int | None = None  # the object this detection belongs to (ObjectRecord.track_id); None: not tracked
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bbox"] = None if self.bbox is None else list(self.bbox)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """One physical object (a sign), tracked over the frames of one source, and where it stands
    (schema in edge/object.schema.json): made once, when its track ends."""

    object_id: str  # UUIDv5 of session, camera, source and track id: stable across retries and replays
    vehicle_id: str
    session_id: str
    camera_id: str
    source: str
    track_id: int
    class_name: str
    first_seen: str  # ISO 8601 UTC capture time of its first detection
    last_seen: str
    detections: int  # detection events that carry its track_id
    best_confidence: float
    best_detection_id: str
    lat: float | None  # where the object stands, estimated from the bearings of its sightings
    lon: float | None
    position_error_m: float | None  # 1-sigma radius of the estimate along its worst axis
    position_status: PositionStatus
    sightings: int  # detections with a position and heading that the estimate used
    model: str
    ingested_at: str  # ISO 8601 UTC, when the record was made
    schema_version: int = OBJECT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
