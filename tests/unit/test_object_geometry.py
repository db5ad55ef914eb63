"""Object geometry: bearings from image columns; signs located from simulated drives with GPS, heading, pixel noise."""

from __future__ import annotations

import math

import pytest

from edge.gps import geo
from edge.objects.geometry import (
    Location,
    Sighting,
    bearing_to,
    focal_px,
    from_local,
    locate,
    to_local,
)
from tests import sim_drive as sd

W, HFOV = 1280, 90.0
F = W / 2.0  # at a 90° field of view the focal length is half the width


def u_at(offset_deg: float) -> float:
    """The image column of an object `offset_deg` right of the optical axis (W, HFOV above)."""
    return W / 2.0 + F * math.tan(math.radians(offset_deg))


def sightings_of(drive: sd.SimDrive, sign_id: int) -> list[Sighting]:
    """What the daemon would feed locate: the noisy fix, and the bearing from the noisy heading and box."""
    cam = drive.camera
    return [
        Sighting(f.lat, f.lon, bearing_to(d.u, cam.width, cam.hfov_deg, f.heading_deg, cam.mount_yaw_deg), f.time)
        for f, d in drive.observations(sign_id)
    ]


def error_m(loc: Location, sign: sd.SimSign) -> float:
    assert loc.status == "ok", f"expected sign {sign.sign_id} located, got {loc}"
    return geo.distance_m(loc.lat, loc.lon, sign.lat, sign.lon)


# --- bearings ---------------------------------------------------------------------------------------


def test_focal_length_is_half_width_over_tan_half_fov():
    assert focal_px(W, 90.0) == pytest.approx(640.0), "at 90° the focal length should be W/2"
    assert focal_px(1920, 60.0) == pytest.approx(960.0 / math.tan(math.radians(30.0))), "(W/2)/tan(hfov/2)"
    with pytest.raises(ValueError, match="hfov_deg"):
        focal_px(W, 180.0)


@pytest.mark.parametrize(
    "u, heading, yaw, expected, why",
    [
        (W / 2, 30.0, 0.0, 30.0, "centre column is straight ahead"),
        (W, 30.0, 0.0, 30.0 + HFOV / 2, "right edge is heading + hfov/2"),
        (0.0, 30.0, 0.0, 30.0 - HFOV / 2, "left edge is heading - hfov/2"),
        (W / 2, 30.0, 180.0, 210.0, "a rear camera looks the other way"),
        (W, 30.0, 180.0, 255.0, "a rear camera's right edge is behind-right of the heading + 180"),
        (u_at(2.0), 359.0, 0.0, 1.0, "2° right of heading 359 wraps past north to 1"),
        (u_at(-2.0), 1.0, 0.0, 359.0, "2° left of heading 1 wraps back to 359"),
        (W / 2, 0.0, 0.0, 0.0, "north stays 0, not 360"),
        (W / 2, 350.0, 180.0, 170.0, "heading plus yaw past 360 wraps"),
    ],
)
def test_bearing_from_image_column(u, heading, yaw, expected, why):
    got = bearing_to(u, W, HFOV, heading, yaw)
    assert abs(geo.angle_diff(got, expected)) < 1e-9, f"{why}: expected {expected}, got {got}"
    assert 0.0 <= got < 360.0, f"bearing should be in [0, 360), got {got}"


def test_bearing_is_always_in_range():
    for heading in (-720.0, -1e-15, 0.0, 359.999999, 360.0, 725.5):
        for u in (0.0, W / 2, W, u_at(-1e-13)):
            b = bearing_to(u, W, HFOV, heading, 180.0)
            assert 0.0 <= b < 360.0, f"bearing for heading {heading}, u {u} should be in [0, 360), got {b}"


def test_tangent_plane_round_trip():
    lat0, lon0 = sd.ORIGIN
    lat, lon = geo.destination(lat0, lon0, 123.0, 140.0)
    east, north = to_local(lat, lon, lat0, lon0)
    assert math.hypot(east, north) == pytest.approx(140.0, abs=0.01), "a point 140 m away should be 140 m in the plane"
    back = from_local(east, north, lat0, lon0)
    assert geo.distance_m(*back, lat, lon) < 1e-6, f"from_local(to_local(p)) should be p, got {back} for {(lat, lon)}"
    assert to_local(10.0, 179.9999, 10.0, -179.9999)[0] == pytest.approx(-21.9, abs=0.1), "across the antimeridian"


# --- locate: exact rays ---------------------------------------------------------------------------------


def test_exact_rays_recover_the_point_within_centimetres():
    # given a sign 5 m east of a road running north, and exact great-circle bearings from 20 points on it
    sign = geo.destination(*sd.ORIGIN, 0.0, 50.0)
    sign = geo.destination(*sign, 90.0, 5.0)
    fixes = [geo.destination(*sd.ORIGIN, 0.0, 2.0 * k) for k in range(20)]
    rays = [Sighting(lat, lon, geo.bearing(lat, lon, *sign), time=0.2 * k) for k, (lat, lon) in enumerate(fixes)]
    # when the rays are intersected
    loc = locate(rays)
    # then the point is the sign, with a few metres of error_m from the GPS prior
    assert loc.status == "ok" and loc.sightings == 20, f"expected ok from 20 sightings, got {loc}"
    assert geo.distance_m(loc.lat, loc.lon, *sign) < 0.02, f"expected within 2 cm of {sign}, got {loc}"
    assert 0.1 < loc.error_m < 5.0, f"error_m should reflect the 1.5 m GPS prior, got {loc.error_m}"


@pytest.mark.parametrize("make", [sd.straight_road, sd.turn_drive], ids=["straight", "turn"])
def test_noise_free_drive_recovers_every_sign(make):
    drive = make(0, noise=sd.NO_NOISE)
    for sign in drive.signs:
        err = error_m(locate(sightings_of(drive, sign.sign_id)), sign)
        assert err < 0.05, f"noise-free sign {sign.sign_id} should be found within 5 cm, was {err:.3f} m off"


def test_same_input_same_output():
    rays = sightings_of(sd.turn_drive(4), 3)
    assert locate(rays) == locate(list(rays)), "locate should be deterministic"


# --- locate: simulated drives with noise ---------------------------------------------------------------

SCENARIOS = {
    "straight": sd.straight_road,
    "turn": sd.turn_drive,
    "straight-rear-camera": lambda seed: sd.straight_road(seed, camera=sd.Camera(mount_yaw_deg=180.0)),
}
SEEDS = range(6)


@pytest.mark.parametrize("name", SCENARIOS)
def test_noisy_drives_locate_every_sign_within_its_error(name):
    # given GPS sigma 1.5 m per fix, heading sigma 1°, 2 px box noise, signs 3-8 m off the road
    errors = []
    for seed in SEEDS:
        drive = SCENARIOS[name](seed)
        for sign in drive.signs:
            loc = locate(sightings_of(drive, sign.sign_id))
            err = error_m(loc, sign)
            errors.append(err)
            # then every sign is where its error_m says (the along-road axis is the weak one: ~2 m)
            assert err < 3.0 * loc.error_m + 1.0, (
                f"{name} seed {seed} sign {sign.sign_id}: {err:.2f} m off, more than 3 × error_m {loc.error_m:.2f} + 1"
            )
    errors.sort()
    within_4 = sum(e < 4.0 for e in errors) / len(errors)
    assert errors[len(errors) // 2] < 2.5, f"{name}: median error should be under 2.5 m, errors {errors}"
    assert within_4 >= 0.8, f"{name}: at least 80 % of signs should be within 4 m, got {within_4:.0%}: {errors}"
    assert errors[-1] < 9.0, f"{name}: no sign should be 9 m or more off, errors {errors}"


@pytest.mark.parametrize("make", [sd.straight_road, sd.turn_drive], ids=["straight", "turn"])
@pytest.mark.parametrize("which", ["first", "third", "middle"])
def test_one_bearing_30_degrees_off_moves_the_sign_little(make, which):
    # a bearing 30 m or more out, 30° off, misses by 15 m or more: ten sigmas, so the fit drops it.
    # (At 5-10 m a 30° error misses by 3-5 m, which 1.5 m GPS noise alone explains: it is kept.)
    for seed in range(3):
        drive = make(seed)
        for sign in drive.signs:
            rays = sightings_of(drive, sign.sign_id)
            j = {"first": 0, "third": len(rays) // 3, "middle": len(rays) // 2}[which]
            bad = list(rays)
            bad[j] = Sighting(rays[j].lat, rays[j].lon, (rays[j].bearing_deg + 30.0) % 360.0, rays[j].time)
            clean, spoiled = locate(rays), locate(bad)
            assert spoiled.status == "ok", f"seed {seed} sign {sign.sign_id}: one outlier should still be ok: {spoiled}"
            moved = geo.distance_m(clean.lat, clean.lon, spoiled.lat, spoiled.lon)
            assert moved < 2.0, f"seed {seed} sign {sign.sign_id}: outlier {which} moved the sign {moved:.2f} m"


# --- locate: the statuses ------------------------------------------------------------------------------


def test_stationary_vehicle_is_stationary():
    # given a parked car with a sign 20 m ahead, its GPS wandering 1.5 m from fix to fix
    sign = sd.sign_at(sd.ORIGIN, 4.0, 20.0)
    drive = sd.simulate(sd.stationary(0.0, 0.0, 0.0, duration_s=10.0), [sign], noise=sd.Noise(seed=1))
    rays = sightings_of(drive, sign.sign_id)
    assert len(rays) == 51, f"the parked car should see the sign in all 51 frames, saw it in {len(rays)}"
    for n in (2, 5, 51):
        loc = locate(rays[:n])
        assert loc.status == "stationary", f"{n} sightings from a parked car should be stationary, got {loc}"
        assert (loc.lat, loc.lon, loc.error_m) == (None, None, None), f"stationary should carry nulls, got {loc}"


def test_sightings_without_a_fix_are_no_gps():
    lost = [Sighting(math.nan, math.nan, 10.0, 0.0), Sighting(None, None, 12.0, 0.2)]  # type: ignore[arg-type]
    loc = locate(lost)
    assert loc == Location(None, None, None, "no_gps", 0), f"no positions should give no_gps, got {loc}"
    assert locate([]).status == "no_gps", "no sightings at all should give no_gps"


def test_sightings_without_a_fix_or_weight_are_left_out():
    rays = sightings_of(sd.straight_road(0), 0)
    noise = [Sighting(math.nan, math.nan, 0.0, 1.0), Sighting(rays[0].lat, rays[0].lon, 200.0, 1.0, weight=0.0)]
    assert locate(rays + noise) == locate(rays), "sightings without a fix or with weight 0 should change nothing"


def two_rays(bearing0: float, bearing1: float) -> list[Sighting]:
    """Two sightings 20 m apart on a road going north, one second apart."""
    lat1, lon1 = geo.destination(*sd.ORIGIN, 0.0, 20.0)
    return [Sighting(*sd.ORIGIN, bearing0, 0.0), Sighting(lat1, lon1, bearing1, 1.0)]


@pytest.mark.parametrize(
    "b0, b1, expected, why",
    [
        (45.0, 45.0, "low_parallax", "parallel rays: the normal equations are singular"),
        (45.0, 46.0, "low_parallax", "they meet ~400 m ahead, where the 20 m baseline spans 1° < min_parallax 2°"),
        (46.0, 45.0, "no_intersection", "they diverge: the lines meet behind both cameras"),
        (45.0, 50.0, "no_intersection", "they meet ~176 m ahead (5° parallax, enough) beyond max_range_m 150"),
    ],
)
def test_nearly_parallel_rays(b0, b1, expected, why):
    loc = locate(two_rays(b0, b1))
    assert loc.status == expected, f"{why}: expected {expected}, got {loc}"
    assert loc.lat is None and loc.error_m is None, f"a failed location should carry nulls, got {loc}"


def test_two_rays_that_meet_give_a_point_and_a_large_error():
    loc = locate(two_rays(45.0, 60.0))
    assert loc.status == "ok", f"rays 15° apart meeting 50 m ahead should intersect, got {loc}"
    assert loc.error_m > 2.0, f"two rays with 1.5 m GPS noise cannot place a point to under 2 m, error_m {loc.error_m}"


# --- the simulator the other tests share ---------------------------------------------------------------


def test_simulator_is_seeded_and_boxes_are_plausible():
    a, b = sd.straight_road(7), sd.straight_road(7)
    assert a == b, "the same seed should give the same drive"
    assert a != sd.straight_road(8), "another seed should give another drive"
    cam = a.camera
    for sign in a.signs:
        seen = a.observations(sign.sign_id)
        assert len(seen) > 10, f"sign {sign.sign_id} should be seen in many frames, was in {len(seen)}"
        for frame, det in seen:
            x1, y1, x2, y2 = det.box
            assert 0 <= x1 < x2 <= cam.width and 0 <= y1 < y2 <= cam.height, f"box {det.box} should be in the image"
            assert 5.0 <= det.distance_m <= 60.0, f"sign seen at {det.distance_m:.1f} m, outside 5-60 m"
        near, far = min(seen, key=lambda fd: fd[1].distance_m), max(seen, key=lambda fd: fd[1].distance_m)
        width = [d.box[2] - d.box[0] for _, d in (near, far)]
        assert width[0] > 3 * width[1], f"a sign's box should shrink with distance, widths near/far {width}"


def test_turn_route_turns_smoothly():
    poses = sd.route([(0.0, 0.0), (0.0, 100.0), (100.0, 100.0)], speed_mps=10.0, turn_radius_m=10.0)
    steps = [abs(geo.angle_diff(p.heading_deg, q.heading_deg)) for p, q in zip(poses, poses[1:])]
    assert poses[0].heading_deg == 0.0 and poses[-1].heading_deg == pytest.approx(90.0), "north, then east"
    assert max(steps) < 25.0, f"a 10 m radius turn at 10 m/s and 5 fps turns ~11° a frame, max step {max(steps):.1f}"
