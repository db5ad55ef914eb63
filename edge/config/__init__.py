"""The one typed configuration model: TOML file + environment + systemd credentials, validated at start.

Split by concern: `sections` (every section but GPS), `gps` (one model per provider, a discriminated union),
`model` (the root `Config`, reloadable keys), `loading` (file, environment, credentials, command line, errors).
Everything public is re-exported here: `from edge.config import X` is the way in.
"""

from edge.config.gps import (
    GPS_PROVIDERS,
    ExifGpsConfig,
    FixedGpsConfig,
    GpsConfig,
    GpsdConfig,
    NoGpsConfig,
    TrackGpsConfig,
)
from edge.config.loading import (
    CREDENTIALS,
    DEFAULT_CONFIG_PATHS,
    ENV_OVERRIDES,
    ConfigError,
    find_config_file,
    load_config,
    load_for_command,
)
from edge.config.model import Config, reloadable_fields
from edge.config.sections import (
    RELOAD,
    DetectorConfig,
    FieldProblems,
    KafkaConfig,
    LatencyConfig,
    LogConfig,
    SourceConfig,
    SpoolConfig,
    StateConfig,
    VehicleConfig,
)

__all__ = [
    "CREDENTIALS",
    "DEFAULT_CONFIG_PATHS",
    "ENV_OVERRIDES",
    "GPS_PROVIDERS",
    "RELOAD",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "ExifGpsConfig",
    "FieldProblems",
    "FixedGpsConfig",
    "GpsConfig",
    "GpsdConfig",
    "KafkaConfig",
    "LatencyConfig",
    "LogConfig",
    "NoGpsConfig",
    "SourceConfig",
    "SpoolConfig",
    "StateConfig",
    "TrackGpsConfig",
    "VehicleConfig",
    "find_config_file",
    "load_config",
    "load_for_command",
    "reloadable_fields",
]
