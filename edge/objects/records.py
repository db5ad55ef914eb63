"""One source's detections → track ids on its events, and one ObjectRecord, with where it stands, per ended track."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.clock import iso_utc, parse_iso_time
from edge.config.objects import CameraConfig, TrackingConfig
from edge.events import object_id
from edge.objects.geometry import Location, Sighting, bearing_to, locate
from edge.objects.tracker import Track, Tracker
from edge.types import DetectionEvent, ObjectRecord

log = logging.getLogger(__name__)

_PRUNE_AT = 4096  # names of CSV tracks kept before those of dropped tracks are forgotten
_EDGE_PX = 1.0  # a box this close to the image's left or right side is taken as cut by it
ObjectSink = Callable[[Sequence[ObjectRecord]], None]


@dataclass(slots=True)
class _Seen:
    """A detection as the tracker holds it (its payload): the event is filled in once built, after the ids."""

    event: DetectionEvent | None = None
    image_width: int = 0


class ObjectTracking:
    """Tracks the detections of one source (edge.objects.tracker) and makes the object record of each track
    that ends: its detections, its best one, and where it stands (edge.objects.geometry).

    Two calls per analysed frame, because an event carries its track id and the tracker needs the frame's
    detections first: `assign` (before the events are built) and `observe` (with the built events). Frames
    without detections are passed too (with empty arrays): tracks end by time, and time moves only with frames.
    Not thread-safe: the stage that builds events owns it. What is not ended is made into records by `finish`
    (the end of the input, or a stop); a crash loses the records of open tracks, never their events."""

    def __init__(self, tracking: TrackingConfig, camera: CameraConfig, *, vehicle_id: str, camera_id: str,
                 session_id: str, model: str, image_width: int | None = None, clock: Callable[[], float] = time.time,
                 log_records: bool = True):
        self.camera = camera
        # the image width scales point matching (CSV rows); boxes carry their own scale
        self.tracker = Tracker(max_age_s=tracking.max_age_s, high_confidence=tracking.high_confidence,
                               min_hits=tracking.min_hits, image_width=image_width)
        self._public: dict[int, int] = {}  # tracker id -> the id its events carry, when `assign` is given keys
        self._prune_at = _PRUNE_AT
        self.vehicle_id, self.camera_id, self.session_id = vehicle_id, camera_id, session_id
        self.model, self.clock, self.log_records = model, clock, log_records
        self.made = 0  # object records made
        self.located = 0  # of them, with a position
        self._pending: list[_Seen] = []
        self._ended: list[Track] = []
        self._last_t = -math.inf

    def assign(self, t: float, classes: Sequence[str], confidence: np.ndarray, u: np.ndarray, v: np.ndarray,
               xyxy: np.ndarray | None, image_width: int, keys: Sequence[int] | None = None) -> list[int]:
        """The track id of each detection of the frame at capture time `t` (epoch seconds). With `keys`, one per
        detection, a track is named by the key of its first detection instead of 1, 2, 3... (CSV: its line)."""
        self._pending = [_Seen(None, image_width) for _ in range(len(classes))]
        # a live source's capture time is the wall clock, which an NTP step can move back: tracks age forward only
        self._last_t = t = max(t, self._last_t)
        ids, ended = self.tracker.update(t, classes, confidence, u, v, xyxy, payloads=self._pending)
        self._ended.extend(ended)
        if keys is None:
            return ids
        public = self._public
        for tid, key in zip(ids, keys):
            public.setdefault(tid, int(key))
        out = [public[tid] for tid in ids]
        if len(public) > self._prune_at:
            # tracks dropped for too few hits make no record that would pop their entry: keep the open and the
            # just-ended ones (their records are made by the next `observe`)
            keep = self.tracker.live_ids() | {track.track_id for track in self._ended}
            self._public = {tid: key for tid, key in public.items() if tid in keep}
            self._prune_at = max(_PRUNE_AT, 2 * len(self._public))
        return out

    def observe(self, events: Sequence[DetectionEvent]) -> list[ObjectRecord]:
        """Hands the frame's built events (in the order of `assign`) to their tracks; returns the records of the
        tracks that ended at this frame."""
        for seen, event in zip(self._pending, events):
            seen.event = event
        self._pending = []
        ended, self._ended = self._ended, []
        return [self._record(track) for track in ended]

    def finish(self) -> list[ObjectRecord]:
        """The records of every track still open (end of input, or a stop), in track order."""
        return [self._record(track) for track in self.tracker.finish()]

    def _record(self, track: Track) -> ObjectRecord:
        events = [s.event for s in track.members if s.event is not None]
        track_id = self._public.pop(track.track_id, track.track_id)
        best = max(events, key=lambda e: e.confidence)  # the first of equals: max keeps the earliest
        where = self._locate(track)
        self.made += 1
        self.located += where.status == "ok"
        record = ObjectRecord(
            object_id=object_id(self.session_id, self.camera_id, best.source, track_id),
            vehicle_id=self.vehicle_id,
            session_id=self.session_id,
            camera_id=self.camera_id,
            source=best.source,
            track_id=track_id,
            class_name=track.class_name,
            first_seen=min(e.captured_at for e in events),
            last_seen=max(e.captured_at for e in events),
            detections=len(events),
            best_confidence=best.confidence,
            best_detection_id=best.detection_id,
            lat=None if where.lat is None else round(where.lat, 7),
            lon=None if where.lon is None else round(where.lon, 7),
            position_error_m=None if where.error_m is None else round(where.error_m, 2),
            position_status=where.status,
            sightings=where.sightings,
            model=self.model,
            ingested_at=iso_utc(self.clock()),
        )
        if self.log_records:
            _log_record(record)
        return record

    def _locate(self, track: Track) -> Location:
        sightings: list[Sighting] = []
        no_width = False
        for seen in track.members:
            e = seen.event
            if e is None or e.vehicle_lat is None or e.vehicle_lon is None or e.heading is None:
                continue
            if seen.image_width <= 0:
                no_width = True
                continue
            if e.bbox is not None and (e.bbox[0] <= _EDGE_PX or e.bbox[2] >= seen.image_width - _EDGE_PX):
                continue  # cut by the image's side: its bottom-centre, and so its bearing, is off towards the middle
            bearing = bearing_to(e.pixel_u, seen.image_width, self.camera.hfov_deg, e.heading, self.camera.mount_yaw_deg)
            sightings.append(Sighting(e.vehicle_lat, e.vehicle_lon, bearing, parse_iso_time(e.captured_at), e.confidence))
        if not sightings and no_width:
            return Location(None, None, None, "no_image_width", 0)
        return locate(sightings)


def frame_columns(events_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bottom-centre (u, v) of boxes (n, 4): where an object meets the road, as the events' pixel_u, pixel_v."""
    return (events_xyxy[:, 0] + events_xyxy[:, 2]) / 2, events_xyxy[:, 3]


def _log_record(r: ObjectRecord) -> None:
    """One INFO line per object record, with its OBJECT_ID journal field."""
    extra = {"OBJECT_ID": r.object_id}  # a journal field (uppercase attributes go to the journal as they are)
    if r.lat is None:
        log.info("object %s: %s track %d, %d detections, best %.2f, no position (%s)", r.object_id, r.class_name,
                 r.track_id, r.detections, r.best_confidence, r.position_status, extra=extra)
    else:
        log.info("object %s: %s track %d, %d detections, best %.2f, at %.6f,%.6f ± %.1f m", r.object_id,
                 r.class_name, r.track_id, r.detections, r.best_confidence, r.lat, r.lon,
                 r.position_error_m if r.position_error_m is not None else math.nan, extra=extra)
