"""The root model `Config` (every section together) and what it says about itself: union sections, reloadable keys."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from edge.config.gps import GpsConfig, NoGpsConfig
from edge.config.objects import CameraConfig, TrackingConfig
from edge.config.sections import (
    DetectorConfig,
    KafkaConfig,
    LatencyConfig,
    LogConfig,
    Section,
    SourceConfig,
    SpoolConfig,
    StateConfig,
    VehicleConfig,
)


class Config(Section):
    vehicle: VehicleConfig = Field(default_factory=VehicleConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    gps: GpsConfig = Field(default_factory=NoGpsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("gps", mode="before")
    @classmethod
    def _gps_provider_defaults_to_none(cls, v: Any) -> Any:
        default = NoGpsConfig.model_fields["provider"].default
        return {"provider": default, **v} if isinstance(v, dict) and "provider" not in v else v

    def spool_path(self) -> Path:
        return Path(self.spool.path) if self.spool.path else Path(self.state.state_dir) / "spool.db"


def section_models(section: str) -> tuple[type[BaseModel], ...]:
    """The model of a section, or the models of a union section (gps: one per provider)."""
    ann: Any = Config.model_fields[section].annotation
    return typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)


def union_variants(section: str) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """For a union section told apart by one key (gps: provider): that key and {its value: model}; else None."""
    field = Config.model_fields.get(section)
    if field is None or not isinstance(field.discriminator, str):
        return None
    key = field.discriminator
    return key, {model.model_fields[key].default: model for model in section_models(section)}


def reloadable_fields() -> dict[str, tuple[str, ...]]:
    """What SIGHUP applies without a restart, section -> keys: the fields declared with `json_schema_extra=RELOAD`."""
    marked: dict[str, tuple[str, ...]] = {}
    for section in Config.model_fields:
        keys = dict.fromkeys(key for model in section_models(section) for key, field in model.model_fields.items()
                             if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("reload"))
        if keys:
            marked[section] = tuple(keys)
    return marked
