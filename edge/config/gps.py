"""The GPS section: one settings model per provider, told apart by `provider` (a discriminated union)."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.config.sections import Section
from edge.types import GpsSource


class _GpsProvider(Section):
    """The settings of one GPS provider (`[gps] provider = ...`); a key of another provider is refused, naming
    the provider it belongs to. Earlier shipped files listed every provider's key at its default: such a key, at
    its default or empty, is not a setting and is left out."""

    @model_validator(mode="before")
    @classmethod
    def _leave_out_unset_keys_of_other_providers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items() if key in cls.model_fields or not _unset_elsewhere(key, value)}


def _unset_elsewhere(key: str, value: Any) -> bool:
    """`key` is another provider's setting, at its default (or empty text)."""
    for model in GPS_PROVIDERS.values():
        field = model.model_fields.get(key)
        if field is not None:
            return value == "" or (not field.is_required() and value == field.default)
    return False


class NoGpsConfig(_GpsProvider):
    """No GPS: events have null positions, gps_source none."""

    provider: Literal["none"] = "none"


class GpsdConfig(_GpsProvider):
    """Live fixes from gpsd."""

    provider: Literal["gpsd"] = "gpsd"
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = Field(2947, ge=1, le=65535)
    max_age_s: float = Field(2.0, gt=0, description="older fixes are stale")

    @field_validator("gpsd_host")
    @classmethod
    def _host_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty: give gpsd's host name or address")
        return v


class ExifGpsConfig(_GpsProvider):
    """The GPS tags of each image's EXIF (image folders)."""

    provider: Literal["exif"] = "exif"
    max_age_s: float = Field(2.0, gt=0, description="older fixes are stale")


class TrackGpsConfig(_GpsProvider):
    """A recorded NMEA or GPX track, for replays; whether the file exists is an input, checked at start."""

    provider: Literal["track"] = "track"
    track: str = Field(description="an NMEA or GPX file")
    track_max_gap_s: float = Field(5.0, gt=0, description="no invented positions across longer gaps")

    @field_validator("track")
    @classmethod
    def _track_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty: give an NMEA or GPX file")
        return v


class FixedGpsConfig(_GpsProvider):
    """A stationary camera at a configured position."""

    provider: Literal["fixed"] = "fixed"
    fixed_lat: float = Field(ge=-90, le=90, description="degrees, north positive")
    fixed_lon: float = Field(ge=-180, le=180, description="degrees, east positive")
    fixed_heading: float | None = Field(None, ge=0, lt=360, description="degrees clockwise from true north")


# One settings model per edge.types.GpsSource, told apart by `provider`.
GpsConfig = Annotated[
    GpsdConfig | ExifGpsConfig | TrackGpsConfig | FixedGpsConfig | NoGpsConfig, Field(discriminator="provider")
]
GPS_PROVIDERS: dict[GpsSource, type[_GpsProvider]] = {
    model.model_fields["provider"].default: model for model in typing.get_args(typing.get_args(GpsConfig)[0])
}
