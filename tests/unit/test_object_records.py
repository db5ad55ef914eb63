"""ObjectTracking over simulated drives: one record per physical sign, where it stands, and why not when it cannot."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from edge.config.objects import CameraConfig, TrackingConfig
from edge.events import build_events, object_schema
from edge.gps import geo
from edge.objects.records import ObjectTracking, frame_columns
from edge.types import Detections, Frame, GpsFix
from tests import sim_drive as sim

NAMES = ("traffic light", "stop sign")
T0 = 1_700_000_000.0  # the drive's start, epoch seconds


def run_drive(drive: sim.SimDrive, *, gps: bool = True, image_width: int | None = None):
    """Every frame of `drive` through build_events and ObjectTracking, as the emit stage does: (events, records)."""
    cam = drive.camera
    tracking = ObjectTracking(TrackingConfig(), CameraConfig(hfov_deg=cam.hfov_deg, mount_yaw_deg=cam.mount_yaw_deg),
                              vehicle_id="veh-1", camera_id="cam-1", session_id="20231114-abcdef", model="m.onnx",
                              clock=lambda: T0)
    events, records = [], []
    image = np.zeros((1, 1, 3), np.uint8)  # the width is passed on its own: no need for a real picture
    for f in drive.frames:
        n = len(f.detections)
        dets = Detections(np.array([d.box for d in f.detections], np.float32).reshape(n, 4),
                          np.full(n, 0.8, np.float32), np.array([NAMES.index(d.class_name) for d in f.detections]),
                          NAMES)
        frame = Frame(f.index, f.time, T0 + f.time, image, source="sim.mp4")
        u, v = frame_columns(dets.xyxy)
        ids = tracking.assign(frame.captured_at, [dets.class_name(i) for i in range(n)], dets.confidence, u, v,
                              dets.xyxy, cam.width if image_width is None else image_width)
        fix = GpsFix(f.lat, f.lon, f.heading_deg, 10.0, "gpsd", "ok", 0) if gps else GpsFix.none()
        built = build_events(frame, dets, vehicle_id="veh-1", camera_id="cam-1", session_id="20231114-abcdef",
                             model="m.onnx", inference_latency_ms=1.0, gps=fix, now=T0, track_ids=ids) if n else []
        events += built
        records += tracking.observe(built)
    return events, records + tracking.finish()


def seen_signs(drive: sim.SimDrive) -> list[sim.SimSign]:
    """Signs the camera saw in at least two frames (min_hits): each must become exactly one object."""
    return [s for s in drive.signs if len(drive.observations(s.sign_id)) >= 2]


def match(drive: sim.SimDrive, records) -> dict[int, tuple[object, float]]:  # noqa: ANN001 - ObjectRecords
    """Each seen sign's record (the nearest of its class) and its distance from the truth, metres."""
    out = {}
    for sign in seen_signs(drive):
        mine = [r for r in records if r.class_name == sign.class_name and r.lat is not None]
        assert mine, f"sign {sign.sign_id} ({sign.class_name}) has no located record among {records}"
        best = min(mine, key=lambda r: geo.distance_m(r.lat, r.lon, sign.lat, sign.lon))
        out[sign.sign_id] = (best, geo.distance_m(best.lat, best.lon, sign.lat, sign.lon))
    return out


@pytest.mark.parametrize("make", [sim.straight_road, sim.turn_drive], ids=["straight", "turn"])
def test_one_record_per_sign_within_a_few_metres(make):
    # given drives with GPS noise 1.5 m, heading noise 1 degree, pixel noise 2 px, five seeds
    errors = []
    for seed in range(5):
        drive = make(seed=seed)
        _, records = run_drive(drive)
        # then there is one record per sign the camera saw, each near the sign
        assert len(records) == len(seen_signs(drive)), f"seed {seed}: one object per sign seen: " \
            f"{len(seen_signs(drive))} signs, records {[(r.class_name, r.track_id) for r in records]}"
        found = match(drive, records)
        assert len({r.object_id for r, _ in found.values()}) == len(found), f"no two signs share a record: {found}"
        assert all(r.position_status == "ok" and r.position_error_m is not None for r in records), records
        errors += [(seed, i, round(d, 2), r.position_error_m) for i, (r, d) in found.items()]
    # 300 signs of these drives over 20 seeds: median 1.6-1.8 m, p90 3-4.7 m, worst 9.4 m (a sign at a corner)
    assert float(np.median([d for *_, d, _ in errors])) < 2.5, f"most signs within 2.5 m, (seed, sign, error, error_m) {errors}"
    # a sign at the corner, seen head-on while the vehicle turns, is placed worst (up to 9.3 m), and says so: its
    # position_error_m is 6.5-7 m where the others' is about 2 m
    assert all(d < 3 * e + 1.0 for *_, d, e in errors), \
        f"every sign within 3 × its position_error_m + 1 m: (seed, sign, error, error_m) {errors}"
    assert all(d < 7.0 for *_, d, e in errors if e < 4.0), \
        f"every sign placed with position_error_m < 4 m within 7 m: (seed, sign, error, error_m) {errors}"


def test_two_signs_of_one_class_15_m_apart_stay_two_objects():
    # given two stop signs on the same side of a straight road, 15 m apart
    signs = [sim.sign_at(sim.ORIGIN, 4.0, 60.0, sign_id=0), sim.sign_at(sim.ORIGIN, 4.0, 75.0, sign_id=1)]
    drive = sim.simulate(sim.route([(0.0, 0.0), (0.0, 120.0)], speed_mps=10.0), signs, noise=sim.Noise(seed=4))
    _, records = run_drive(drive)
    # then two objects, each at its own sign
    assert len(records) == 2, f"two signs, two objects: {records}"
    found = match(drive, records)
    assert found[0][0].object_id != found[1][0].object_id, f"each sign its own record: {found}"
    assert max(d for _, d in found.values()) < 7.0, f"both within a few metres: {found}"


def test_events_carry_the_track_id_of_their_record_and_records_match_the_schema():
    drive = sim.straight_road(seed=5)
    events, records = run_drive(drive)
    validator = jsonschema.Draft202012Validator(object_schema(), format_checker=jsonschema.FormatChecker())
    for r in records:
        mine = [e for e in events if e.track_id == r.track_id]
        assert r.detections == len(mine), f"record {r.track_id} counts the events of its track: {r.detections} vs {len(mine)}"
        assert r.best_detection_id == max(mine, key=lambda e: e.confidence).detection_id, "best is the most confident"
        assert (r.first_seen, r.last_seen) == (mine[0].captured_at, mine[-1].captured_at), "seen from first to last"
        errors = [e.message for e in validator.iter_errors(r.to_dict())]
        assert not errors, f"a record matches edge/object.schema.json: {errors}"
    assert all(e.track_id is not None for e in events), "every detection event has a track id"


def test_same_drive_same_ids():
    first, second = run_drive(sim.turn_drive(seed=1)), run_drive(sim.turn_drive(seed=1))
    assert [r.to_dict() for r in first[1]] == [r.to_dict() for r in second[1]], "object records are deterministic"
    assert [e.track_id for e in first[0]] == [e.track_id for e in second[0]], "track ids are deterministic"


def test_a_stationary_vehicle_gives_no_position_and_says_why():
    sign = sim.sign_at(sim.ORIGIN, 3.0, 20.0)
    drive = sim.simulate(sim.stationary(0.0, 0.0, 0.0, duration_s=10.0), [sign], noise=sim.Noise(seed=6))
    _, records = run_drive(drive)
    assert len(records) == 1, f"one sign seen from a parked vehicle: {records}"
    r = records[0]
    assert (r.lat, r.lon, r.position_error_m, r.position_status) == (None, None, None, "stationary"), r


def test_without_gps_the_object_is_kept_without_position():
    _, records = run_drive(sim.straight_road(seed=0), gps=False)
    assert records and all(r.position_status == "no_gps" and r.lat is None and r.sightings == 0 for r in records), \
        f"no fix: objects still made, no position, status no_gps: {records}"


def test_an_unknown_image_width_gives_no_position():
    _, records = run_drive(sim.straight_road(seed=0), image_width=0)
    assert records and all(r.position_status == "no_image_width" and r.lat is None for r in records), records


def test_a_rear_camera_locates_signs_behind():
    # given a rear camera (mount yaw 180) on a vehicle driving away from the signs
    drive = sim.simulate(sim.route([(0.0, 0.0), (0.0, 150.0)], speed_mps=10.0),
                         [sim.sign_at(sim.ORIGIN, 4.0, 10.0, sign_id=0), sim.sign_at(sim.ORIGIN, -5.0, 40.0, sign_id=1)],
                         camera=sim.Camera(mount_yaw_deg=180.0), noise=sim.Noise(seed=7))
    _, records = run_drive(drive)
    found = match(drive, records)
    assert len(records) == len(found) == 2, f"two signs behind, two objects: {records}"
    assert max(d for _, d in found.values()) < 7.0, f"located through the rear camera: {found}"
