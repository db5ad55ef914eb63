"""Simulated drives for tests: signs at known places, a vehicle along waypoints, a pinhole dashcam, seeded noise.

Ground truth is built in metres east/north of an origin and placed on the globe with the spherical
helpers of edge.gps.geo (azimuthal, not the tangent plane edge.objects.geometry uses), so a test of
the geometry does not check the code against itself. Each frame carries the NOISY vehicle fix and
heading (what the daemon would see), the true ones, and every sign in view as a box.

    signs = [sign_at(ORIGIN, 4.0, 60.0, "stop sign")]
    drive = simulate(route([(0, 0), (0, 200)], speed_mps=10.0), signs, Camera(), Noise(seed=3))
    for frame in drive.frames: ...

GPS and heading noise are independent from frame to frame by default (a tau of 0); a tau in seconds
makes them a first-order Gauss-Markov process, as a real receiver's slowly wandering error is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.gps import geo

ORIGIN = (52.5200, 13.4050)  # somewhere in Berlin; any mid-latitude point does


@dataclass(frozen=True)
class SimSign:
    """A sign on the map: its class, where its pole stands, how big its face is and how high it hangs."""

    sign_id: int
    class_name: str
    lat: float
    lon: float
    height_m: float = 0.75  # the face's height; a European stop sign is 0.6-0.9 m across
    aspect: float = 1.0  # width / height of the face (a traffic light is about 0.35)
    bottom_m: float = 2.0  # the face's lower edge above the road


@dataclass(frozen=True)
class Camera:
    """A pinhole dashcam: square pixels, principal point at the image centre, `mount_yaw_deg` from the heading."""

    width: int = 1280
    height: int = 720
    hfov_deg: float = 100.0
    mount_yaw_deg: float = 0.0  # 180 for a rear camera
    height_m: float = 1.4  # lens above the road

    @property
    def focal_px(self) -> float:
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)


@dataclass(frozen=True)
class Noise:
    """Seeded sensor noise: 1-sigma per axis, and correlation times (0 = independent every frame)."""

    seed: int = 0
    gps_sigma_m: float = 1.5
    heading_sigma_deg: float = 1.0
    pixel_sigma: float = 2.0
    gps_tau_s: float = 0.0
    heading_tau_s: float = 0.0


NO_NOISE = Noise(gps_sigma_m=0.0, heading_sigma_deg=0.0, pixel_sigma=0.0)


@dataclass(frozen=True)
class Pose:
    """Where the vehicle truly is at `time`: metres east/north of the origin and its heading."""

    time: float
    east: float
    north: float
    heading_deg: float


@dataclass(frozen=True)
class SimDetection:
    """A sign in view: box xyxy in pixels (noisy), its bottom-centre (u, v), and the true distance."""

    sign_id: int
    class_name: str
    u: float
    v: float
    box: tuple[float, float, float, float]
    distance_m: float


@dataclass(frozen=True)
class SimFrame:
    """One frame: the noisy fix and heading the daemon sees, the truth, and the signs in view."""

    index: int
    time: float
    lat: float
    lon: float
    heading_deg: float
    true_lat: float
    true_lon: float
    true_heading_deg: float
    detections: tuple[SimDetection, ...]


@dataclass(frozen=True)
class SimDrive:
    """A whole simulated drive: the camera, the ground-truth signs, and every frame in time order."""

    camera: Camera
    signs: tuple[SimSign, ...]
    frames: tuple[SimFrame, ...]

    def sign(self, sign_id: int) -> SimSign:
        return next(s for s in self.signs if s.sign_id == sign_id)

    def observations(self, sign_id: int) -> list[tuple[SimFrame, SimDetection]]:
        """Every frame that saw `sign_id`, with its detection, in time order."""
        return [(f, d) for f in self.frames for d in f.detections if d.sign_id == sign_id]


def place(origin: tuple[float, float], east_m: float, north_m: float) -> tuple[float, float]:
    """(lat, lon) of the point east_m/north_m from origin (azimuthal equidistant, via geo.destination)."""
    dist = math.hypot(east_m, north_m)
    if dist == 0.0:
        return origin
    return geo.destination(origin[0], origin[1], math.degrees(math.atan2(east_m, north_m)), dist)


def sign_at(origin: tuple[float, float], east_m: float, north_m: float, class_name: str = "stop sign",
            sign_id: int = 0, **size: float) -> SimSign:
    """A sign `east_m`/`north_m` from origin; `size` passes height_m, aspect, bottom_m through."""
    lat, lon = place(origin, east_m, north_m)
    return SimSign(sign_id=sign_id, class_name=class_name, lat=lat, lon=lon, **size)


def _fillet(waypoints: Sequence[tuple[float, float]], radius_m: float, step_deg: float = 3.0) -> list[np.ndarray]:
    """The polyline with each interior corner replaced by a circular arc of `radius_m` (where the legs allow)."""
    pts = [np.asarray(p, dtype=float) for p in waypoints]
    if radius_m <= 0.0 or len(pts) < 3:
        return pts
    out = [pts[0]]
    for a, b, c in zip(pts, pts[1:], pts[2:]):
        d1, d2 = (b - a) / np.linalg.norm(b - a), (c - b) / np.linalg.norm(c - b)
        turn = math.atan2(d1[0] * d2[1] - d1[1] * d2[0], float(d1 @ d2))  # signed, counter-clockwise positive
        if abs(turn) < 1e-9:
            out.append(b)
            continue
        # tangent length from the corner; capped so consecutive arcs do not overlap
        t = min(radius_m * math.tan(abs(turn) / 2.0), np.linalg.norm(b - a) / 2, np.linalg.norm(c - b) / 2)
        r = t / math.tan(abs(turn) / 2.0)
        start = b - d1 * t
        left = np.array([-d1[1], d1[0]])  # unit normal to the left of travel
        centre = start + left * r * math.copysign(1.0, turn)
        a0 = math.atan2(*(start - centre)[::-1])
        steps = max(2, int(math.ceil(abs(math.degrees(turn)) / step_deg)))
        for k in range(steps + 1):
            ang = a0 + turn * k / steps
            out.append(centre + r * np.array([math.cos(ang), math.sin(ang)]))
    out.append(pts[-1])
    return out


def route(waypoints: Sequence[tuple[float, float]], speed_mps: float, fps: float = 5.0,
          turn_radius_m: float = 0.0, start_time: float = 0.0) -> list[Pose]:
    """Poses at `fps` along waypoints (metres east/north of the origin) at constant speed, corners rounded."""
    pts = _fillet(waypoints, turn_radius_m)
    seg = [(p, q) for p, q in zip(pts, pts[1:]) if np.linalg.norm(q - p) > 1e-9]
    cum = np.concatenate([[0.0], np.cumsum([np.linalg.norm(q - p) for p, q in seg])])
    poses = []
    for k in range(int(cum[-1] / speed_mps * fps) + 1):
        s = k * speed_mps / fps
        i = min(bisect.bisect_right(cum, s) - 1, len(seg) - 1)
        p, q = seg[i]
        d = (q - p) / np.linalg.norm(q - p)
        e, n = p + d * (s - cum[i])
        heading = math.degrees(math.atan2(d[0], d[1])) % 360.0
        poses.append(Pose(start_time + k / fps, float(e), float(n), heading))
    return poses


def stationary(east_m: float, north_m: float, heading_deg: float, duration_s: float, fps: float = 5.0,
               start_time: float = 0.0) -> list[Pose]:
    """A parked vehicle: the same pose at every frame for `duration_s`."""
    return [Pose(start_time + k / fps, east_m, north_m, heading_deg) for k in range(int(duration_s * fps) + 1)]


def _gauss_markov(rng: np.random.Generator, n: int, sigma: float, dt: np.ndarray, tau: float, dims: int) -> np.ndarray:
    """n samples of zero-mean noise with stationary 1-sigma `sigma`, correlated over `tau` s (0 = white)."""
    out = np.zeros((n, dims))
    if n == 0 or sigma == 0.0:
        return out
    out[0] = rng.normal(0.0, sigma, dims)
    for k in range(1, n):
        a = math.exp(-dt[k - 1] / tau) if tau > 0.0 else 0.0
        out[k] = a * out[k - 1] + math.sqrt(1.0 - a * a) * rng.normal(0.0, sigma, dims)
    return out


def _project(sign: SimSign, lat: float, lon: float, heading: float, cam: Camera,
             rng: np.random.Generator, noise: Noise, ranges: tuple[float, float]) -> SimDetection | None:
    """The sign's box as the camera at (lat, lon, heading) sees it, or None when out of view or range."""
    dist = geo.distance_m(lat, lon, sign.lat, sign.lon)
    if not ranges[0] <= dist <= ranges[1]:
        return None
    rel = math.radians(geo.angle_diff(heading + cam.mount_yaw_deg, geo.bearing(lat, lon, sign.lat, sign.lon)))
    z, x = dist * math.cos(rel), dist * math.sin(rel)  # forward and rightward of the lens
    if z <= 0.0:
        return None
    f, cx, cy = cam.focal_px, cam.width / 2.0, cam.height / 2.0
    u = cx + f * x / z
    if not 0.0 <= u <= cam.width:
        return None
    half_w = f * sign.height_m * sign.aspect / (2.0 * z)
    height = f * sign.height_m / z
    bottom = cy + f * (cam.height_m - sign.bottom_m) / z  # image y grows downwards
    # the box moves by pixel_sigma and its size wobbles by as much, but never turns inside out
    du, dv, dw, dh = rng.normal(0.0, noise.pixel_sigma, 4) if noise.pixel_sigma > 0 else np.zeros(4)
    half_w, height = max(0.5, half_w + dw / 2.0), max(1.0, height + dh)
    u, bottom = u + du, bottom + dv
    x1, x2 = max(0.0, u - half_w), min(float(cam.width), u + half_w)
    y1, y2 = max(0.0, bottom - height), min(float(cam.height), bottom)
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:  # pushed off the image by the noise
        return None
    box = (float(x1), float(y1), float(x2), float(y2))  # clipped at the edges, as a detector's would be
    return SimDetection(sign.sign_id, sign.class_name, (box[0] + box[2]) / 2.0, box[3], box, dist)


def simulate(poses: Sequence[Pose], signs: Sequence[SimSign], camera: Camera = Camera(), noise: Noise = Noise(),
             origin: tuple[float, float] = ORIGIN, min_range_m: float = 5.0, max_range_m: float = 60.0) -> SimDrive:
    """Runs the vehicle along `poses` and records what the noisy GPS, compass and camera report at each frame.

    The sign boxes come from the TRUE pose (that is what the lens saw); the fix and heading beside
    them carry the GPS and heading noise. Same arguments and seed → the same drive.
    """
    rng = np.random.default_rng(noise.seed)
    times = np.array([p.time for p in poses], dtype=float)
    dt = np.diff(times) if len(times) > 1 else np.zeros(0)
    gps = _gauss_markov(rng, len(poses), noise.gps_sigma_m, dt, noise.gps_tau_s, 2)
    hdg = _gauss_markov(rng, len(poses), noise.heading_sigma_deg, dt, noise.heading_tau_s, 1)[:, 0]
    frames = []
    for k, pose in enumerate(poses):
        true_lat, true_lon = place(origin, pose.east, pose.north)
        lat, lon = place(origin, pose.east + gps[k, 0], pose.north + gps[k, 1])
        seen = (_project(s, true_lat, true_lon, pose.heading_deg, camera, rng, noise, (min_range_m, max_range_m))
                for s in signs)
        frames.append(SimFrame(
            index=k, time=pose.time, lat=lat, lon=lon, heading_deg=(pose.heading_deg + hdg[k]) % 360.0,
            true_lat=true_lat, true_lon=true_lon, true_heading_deg=pose.heading_deg,
            detections=tuple(d for d in seen if d is not None),
        ))
    return SimDrive(camera=camera, signs=tuple(signs), frames=tuple(frames))


def straight_road(seed: int = 0, camera: Camera = Camera(), noise: Noise | None = None) -> SimDrive:
    """280 m on a bearing of 40° at 12 m/s, 5 fps; four signs 3-8 m off the road on both sides, one traffic light."""
    b = math.radians(40.0)
    along, right = (math.sin(b), math.cos(b)), (math.cos(b), -math.sin(b))

    def at(s: float, off: float) -> tuple[float, float]:  # `off` metres right of the road at `s` along it
        return along[0] * s + right[0] * off, along[1] * s + right[1] * off

    layout = [(70.0, 4.0, "stop sign"), (110.0, -6.0, "stop sign"), (150.0, 8.0, "stop sign"),
              (190.0, -3.0, "stop sign"), (230.0, 5.0, "traffic light")]
    signs = [sign_at(ORIGIN, *at(s, off), class_name=name, sign_id=i,
                     **({"height_m": 1.0, "aspect": 0.35, "bottom_m": 3.5} if name == "traffic light" else {}))
             for i, (s, off, name) in enumerate(layout)]
    poses = route([at(0.0, 0.0), at(280.0, 0.0)], speed_mps=12.0)
    return simulate(poses, signs, camera, Noise(seed=seed) if noise is None else noise)


def turn_drive(seed: int = 0, camera: Camera = Camera(), noise: Noise | None = None) -> SimDrive:
    """North 120 m, a right turn of radius 12 m, east 150 m at 9 m/s; signs before, at and after the corner."""
    layout = [(4.0, 60.0), (-5.0, 100.0), (-5.0, 125.0), (60.0, 126.0), (110.0, 113.0), (140.0, 114.0)]
    signs = [sign_at(ORIGIN, e, n, sign_id=i) for i, (e, n) in enumerate(layout)]
    poses = route([(0.0, 0.0), (0.0, 120.0), (150.0, 120.0)], speed_mps=9.0, turn_radius_m=12.0)
    return simulate(poses, signs, camera, Noise(seed=seed) if noise is None else noise)
