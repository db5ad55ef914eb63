"""Writes tests/data/spool-v1/spool.db: a format-1 spool as edge-detector f780565 left it (kept to prove upgrades).

    .venv/bin/python tests/data/spool-v1/make_fixture.py   # only with the version that wrote the committed file

120 events pending (three vehicles, the seq order the flusher must keep) and 2 dead letters, written by the
real Spool and closed cleanly (the WAL checkpointed into the file). `tests/integration/test_spool_upgrade.py`
opens a copy with the current code and delivers it to a real broker.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from edge.spool import FORMAT_VERSION, Spool, SpoolItem  # noqa: E402
from edge.types import DetectionEvent  # noqa: E402

EVENTS, DEAD = 120, 2


def event(i: int) -> DetectionEvent:
    return DetectionEvent(
        detection_id=str(uuid.UUID(int=0xF1 << 120 | i)), vehicle_id=f"vehicle-{i % 3:03d}", session_id="20261203-fixture",
        ingested_at="2026-12-03T13:45:00.000Z", frame_number=i, timestamp_sec=round(i / 5, 3), pixel_u=612.5,
        pixel_v=402.25, confidence=0.8731, class_name="stop sign", vehicle_lat=37.774929, vehicle_lon=-122.419416,
        heading=271.5, camera_id="cam-front", class_id=11, bbox=(580.0, 350.5, 645.0, 402.25),
        inference_latency_ms=51.2, captured_at="2026-12-03T13:45:00.000Z", model="yolov8n.onnx", source="fixture",
        gps_source="gpsd", gps_status="ok", gps_age_ms=120,
    )


def main() -> None:
    assert FORMAT_VERSION == 1, "this fixture is format 1: write it only with the version that wrote it"
    path = HERE / "spool.db"
    for suffix in ("", "-wal", "-shm", ".mark", ".lock", ".reserve"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with Spool.open(path, max_bytes=16 << 20, when_full="block") as spool:
        spool.append([SpoolItem.from_event(event(i), 1796305500.0 + i) for i in range(EVENTS + DEAD)])
        for rec in spool.lease(DEAD):  # the two oldest become dead letters, with their error
            spool.dead_letter(rec.seq, "fixture: MSG_SIZE_TOO_LARGE (a dead letter kept across the upgrade)")
        spool.flush()
    for suffix in (".mark", ".lock", ".reserve"):  # state of one machine, not part of the format
        Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
