"""Magnetic bearings to true north with the World Magnetic Model (NOAA/BGS coefficients shipped by pygeomag)."""

from __future__ import annotations

import datetime as dt
import functools
import math
import threading

from pygeomag import GeoMag, decimal_year_from_date
from pygeomag.wmm.wmm_2010 import WMM_2010
from pygeomag.wmm.wmm_2015v2 import WMM_2015v2
from pygeomag.wmm.wmm_2020 import WMM_2020
from pygeomag.wmm.wmm_2025 import WMM_2025

from edge.gps.base import norm_heading

# Each WMM release is valid for five years from its epoch; 2015v2 is NOAA's out-of-cycle correction of 2015.
_MODELS = ((2010.0, WMM_2010), (2015.0, WMM_2015v2), (2020.0, WMM_2020), (2025.0, WMM_2025))
_LIFE_YEARS = 5.0
FIRST_YEAR, LAST_YEAR = _MODELS[0][0], _MODELS[-1][0] + _LIFE_YEARS
# GeoMag.calculate writes scratch arrays on the instance (a port of C statics): one caller at a time
_LOCK = threading.Lock()


class DeclinationUnavailable(ValueError):
    """WMM cannot give a trustworthy declination for this place and date; str() says why."""


@functools.cache
def _model(epoch: float) -> GeoMag:
    data = dict(_MODELS)[epoch]
    return GeoMag(coefficients_data=data)


def decimal_year(when: float) -> float:
    """Unix epoch seconds → decimal year (2016.69…), UTC."""
    try:
        day = dt.datetime.fromtimestamp(when, dt.timezone.utc).date()
    except (OverflowError, OSError, ValueError):
        raise DeclinationUnavailable(f"time {when!r} is not a date") from None
    return decimal_year_from_date(day)


def declination(lat: float, lon: float, when: float, alt_m: float = 0.0) -> float:
    """Degrees east of true north that a compass points at (lat, lon) on `when` (Unix seconds).

    Raises DeclinationUnavailable outside the models' years (2010.0 to 2030.0), and in the blackout zones
    around the magnetic poles, where WMM's own documentation says compass readings are meaningless."""
    if not all(math.isfinite(x) for x in (lat, lon, when, alt_m)) or abs(lat) > 90.0 or abs(lon) > 180.0:
        raise DeclinationUnavailable(f"no valid position and time ({lat!r}, {lon!r}, {when!r})")
    year = decimal_year(when)
    epoch = next((e for e, _ in _MODELS if e <= year < e + _LIFE_YEARS), None)
    if epoch is None:
        raise DeclinationUnavailable(
            f"date {year:.2f} outside the World Magnetic Model's validity ({FIRST_YEAR:.0f}.0 to {LAST_YEAR:.0f}.0)"
        )
    with _LOCK:
        result = _model(epoch).calculate(lat, lon, alt_m / 1000.0, year)
    if result.in_blackout_zone:
        raise DeclinationUnavailable(
            f"compass unreliable near a magnetic pole (horizontal field {result.h:.0f} nT < 2000 nT)"
        )
    return float(result.d)


def true_bearing(magnetic_deg: float, lat: float, lon: float, when: float, alt_m: float = 0.0) -> float:
    """A magnetic bearing turned to true north, in [0, 360); raises DeclinationUnavailable."""
    return norm_heading(magnetic_deg + declination(lat, lon, when, alt_m))
