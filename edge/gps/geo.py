"""Spherical geometry for tracks: great-circle interpolation, bearings, distances, angle interpolation."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


def _vec(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def _latlon(x: float, y: float, z: float) -> tuple[float, float]:
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def central_angle(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Angle between two points seen from the Earth's centre, radians (haversine, good at short range)."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dp, dl = p1 - p0, math.radians(lon1 - lon0)
    a = math.sin(dp / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 2.0 * math.asin(min(1.0, math.sqrt(a)))


def distance_m(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Great-circle distance in metres."""
    return EARTH_RADIUS_M * central_angle(lat0, lon0, lat1, lon1)


def bearing(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Initial great-circle bearing from point 0 to point 1, degrees clockwise from true North, [0, 360)."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dl = math.radians(lon1 - lon0)
    y = math.sin(dl) * math.cos(p1)
    x = math.cos(p0) * math.sin(p1) - math.sin(p0) * math.cos(p1) * math.cos(dl)
    h = math.degrees(math.atan2(y, x)) % 360.0
    return 0.0 if h >= 360.0 else h


def interpolate(lat0: float, lon0: float, lat1: float, lon1: float, f: float) -> tuple[float, float]:
    """The point a fraction `f` of the way from point 0 to point 1 along the great circle (slerp)."""
    a, b = _vec(lat0, lon0), _vec(lat1, lon1)
    omega = central_angle(lat0, lon0, lat1, lon1)
    if omega < 1e-12:
        return lat0 + (lat1 - lat0) * f, lon0 + (lon1 - lon0) * f
    s = math.sin(omega)
    w0, w1 = math.sin((1.0 - f) * omega) / s, math.sin(f * omega) / s
    return _latlon(*(w0 * ai + w1 * bi for ai, bi in zip(a, b)))


def destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point `dist_m` metres from (lat, lon) along the initial bearing."""
    d = dist_m / EARTH_RADIUS_M
    p, lo, th = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(math.sin(p) * math.cos(d) + math.cos(p) * math.sin(d) * math.cos(th))
    l2 = lo + math.atan2(math.sin(th) * math.sin(d) * math.cos(p), math.cos(d) - math.sin(p) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def angle_diff(a: float, b: float) -> float:
    """Signed smallest rotation from a to b, degrees in (-180, 180]."""
    d = (b - a) % 360.0
    return d - 360.0 if d > 180.0 else d


def interpolate_angle(a: float, b: float, f: float) -> float:
    """Heading a fraction `f` of the way from a to b the short way round (359 → 1 passes through 0)."""
    h = (a + angle_diff(a, b) * f) % 360.0
    return 0.0 if h >= 360.0 else h
