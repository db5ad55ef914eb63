"""CSV rows tracked as point detections: a track id spliced into each row's event, one ObjectRecord per ended track.

The rows of one file are tracked in line order, in the writer's thread (a tracker is sequential; conversion
runs ahead in workers): consecutive rows with the same frame number and time are one frame. A row carries no
box, so association is by class, image position and time (edge.objects.tracker's point mode). A track's id
is the line of its first row: unique within the file's session and the same on a rerun, also after a resume
from a checkpoint, where the tracker starts afresh (a track open across the resume point is then continued
as a new track from its first row after it: its object record is made from those rows only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.clock import iso_utc
from edge.config.objects import CameraConfig, TrackingConfig
from edge.ingest.convert import Batch
from edge.ingest.rows import FileContext
from edge.objects.records import ObjectTracking
from edge.types import ObjectRecord


@dataclass(slots=True)
class RowSeen:
    """A CSV row as ObjectTracking reads a detection (the DetectionEvent attributes it uses)."""

    detection_id: str
    source: str
    confidence: float
    pixel_u: float
    vehicle_lat: float | None
    vehicle_lon: float | None
    heading: float | None
    epoch: float
    bbox: None = None  # a point detection

    @property
    def captured_at(self) -> str:
        return iso_utc(self.epoch)


def _opt(x: float) -> float | None:
    return None if x != x else x  # NaN: the column was empty


class CsvTracking:
    """Tracks the accepted rows of one file, batch after batch; `apply` sets each row's track_id in the batch."""

    def __init__(self, tracking: TrackingConfig, camera: CameraConfig, ctx: FileContext):
        self.ctx = ctx
        self.width = camera.image_width
        self.objects = ObjectTracking(tracking, camera, vehicle_id=ctx.vehicle_id, camera_id=ctx.camera_id,
                                      session_id=ctx.session_id, model=ctx.model, image_width=self.width or None,
                                      log_records=False)  # a file holds thousands: the summary counts them

    def apply(self, batch: Batch) -> list[ObjectRecord]:
        """Tracks the batch's rows (line order) and writes their track ids into its events; returns the object
        records of the tracks that ended."""
        cols = batch.points()
        n = cols["line"].size
        if n == 0:
            return []
        track = np.zeros(n, np.int64)
        records: list[ObjectRecord] = []
        key = np.stack([cols["frame"], cols["time"]], axis=1)
        cut = np.flatnonzero((key[1:] != key[:-1]).any(axis=1)) + 1  # a new frame where frame or time changes
        bounds = np.concatenate([[0], cut, [n]]).tolist()
        names, u, v, conf = cols["class"], cols["u"], cols["v"], cols["confidence"]
        lat, lon, hdg, epoch = (cols[k].tolist() for k in ("lat", "lon", "heading", "time"))
        ids, lines = cols["id"], cols["line"].tolist()
        for a, b in zip(bounds, bounds[1:]):
            ids_ = self.objects.assign(epoch[a], names[a:b], conf[a:b], u[a:b], v[a:b], None, self.width,
                                       keys=lines[a:b])
            track[a:b] = ids_
            seen = [RowSeen(ids[i], self.ctx.source, float(conf[i]), float(u[i]), _opt(lat[i]), _opt(lon[i]),
                            _opt(hdg[i]), epoch[i]) for i in range(a, b)]
            records += self.objects.observe(seen)
        batch.set_track_ids(dict(zip(lines, track.tolist())))
        return records

    def finish(self) -> list[ObjectRecord]:
        """The records of the tracks still open at the end of the file."""
        return self.objects.finish()
