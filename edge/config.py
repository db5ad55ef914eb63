"""The one typed configuration model: TOML file + environment + systemd credentials, validated at start."""

from __future__ import annotations

import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.clock import parse_iso_time
from edge.types import GpsSource, QueuePolicy

DEFAULT_CONFIG_PATHS = (Path("/etc/edge-detector/edge.toml"),)

# Environment variable -> (section, key). These are the names the seed programs used.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "KAFKA_TOPIC": ("kafka", "topic"),
    "KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "KAFKA_COMPRESSION_TYPE": ("kafka", "compression_type"),
    "KAFKA_BATCH_SIZE": ("kafka", "batch_size"),
    "INFERENCE_FPS": ("source", "inference_fps"),
    "VEHICLE_ID": ("vehicle", "vehicle_id"),
    "CAMERA_ID": ("vehicle", "camera_id"),
    "EDGE_MODEL": ("detector", "model"),
    "EDGE_STATE_DIR": ("state", "state_dir"),
    "EDGE_LOG_LEVEL": ("log", "level"),
}
# systemd LoadCredential= names read from $CREDENTIALS_DIRECTORY -> (section, key)
CREDENTIALS: dict[str, tuple[str, str]] = {
    "kafka_sasl_password": ("kafka", "sasl_password"),
    "kafka_sasl_username": ("kafka", "sasl_username"),
}


# json_schema_extra of a key that SIGHUP applies without a restart (see reloadable_fields)
RELOAD: dict[str, Any] = {"reload": True}


class FieldProblems(ValueError):
    """Raised by a section's cross-field validator: (field, message) pairs, so that each names its own key."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in problems))


class _Section(BaseModel):
    # a rule across keys fails on the whole section, password included: inputs stay out of the error's text
    # (load_config reports them itself, never a password). Strict: `batch_size = true` or `inference_fps = "7"`
    # in TOML is a mistake to report, not a value to guess; environment strings are converted by _from_env.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True, strict=True)


class VehicleConfig(_Section):
    vehicle_id: str = Field("vehicle-001", min_length=1, description="Kafka key; VEHICLE_ID")
    camera_id: str = Field("cam-front", min_length=1, description="CAMERA_ID")
    session_id: str = Field("", description="empty: YYYYMMDD-<6 hex>, derived from the recording for replays")


class SourceConfig(_Section):
    uri: str = Field("0", description="camera index, /dev/videoN, rtsp/http URL, video file, image folder, GStreamer pipeline")
    kind: Literal["auto", "file", "folder", "camera", "stream", "gstreamer"] = "auto"
    inference_fps: float = Field(5.0, gt=0, le=240, description="frames per second sent to the detector; INFERENCE_FPS",
                                 json_schema_extra=RELOAD)
    queue_size: int = Field(8, ge=1, le=1024, description="frames buffered between capture and inference")
    stall_timeout_s: float = Field(5.0, gt=0, description="live source: no frame for this long -> reopen")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    start_time: str = Field("", description="ISO 8601 start of a recording; empty: file modification time")

    @field_validator("uri")
    @classmethod
    def _uri_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty: give a camera index, /dev/videoN, URL, video file or folder")
        return v

    @field_validator("start_time")
    @classmethod
    def _start_time_is_iso(cls, v: str) -> str:
        if v.strip():
            try:
                parse_iso_time(v)
            except ValueError:
                raise ValueError("not an ISO 8601 date-time (e.g. 2024-05-01T08:30:00Z)") from None
        return v


class DetectorConfig(_Section):
    model: str = Field("/var/lib/edge-detector/models/yolov8n.onnx", min_length=1, description="ONNX file; EDGE_MODEL")
    providers: list[Literal["tensorrt", "cuda", "cpu"]] = Field(
        default_factory=lambda: ["tensorrt", "cuda", "cpu"], min_length=1
    )
    intra_op_threads: int = Field(0, ge=0, le=256, description="0: onnxruntime's default")
    spin_wait: bool = Field(False, description="onnxruntime threads busy-wait between ops; off leaves CPU to capture")
    confidence: float = Field(0.25, ge=0, le=1, json_schema_extra=RELOAD)
    iou: float = Field(0.7, gt=0, le=1, json_schema_extra=RELOAD)
    classes: list[str] = Field(default_factory=list, description="empty: stop sign + traffic light if known, else all",
                               json_schema_extra=RELOAD)
    max_detections: int = Field(300, ge=1, le=10000)
    tensorrt_fp16: bool = True

    @field_validator("classes")
    @classmethod
    def _class_names_given(cls, v: list[str]) -> list[str]:
        # no model has a class without a name: `edge run` would refuse it when the model is loaded
        blank = [i for i, name in enumerate(v, 1) if not name.strip()]
        if blank:
            raise ValueError(f"entry {blank[0]} is empty: give the model's class names (e.g. \"stop sign\")")
        return v


class StateConfig(_Section):
    state_dir: str = Field("/var/lib/edge-detector", min_length=1, description="spool, TensorRT engine cache")
    runtime_dir: str = Field("/run/edge-detector", min_length=1, description="status file")
    prometheus_textfile: str = Field("", description="node_exporter textfile collector file (.prom); empty: off")


class SpoolConfig(_Section):
    path: str = Field("", description="empty: <state_dir>/spool.db")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    when_full: QueuePolicy = "drop_oldest"
    block_timeout_s: float = Field(
        30.0, gt=0, le=86_400,
        description="replay and ingest-csv (policy block): how long spooling may find no room (disk full, or "
        "max_bytes with nothing delivered) before the command stops, keeps what it spooled and exits 1",
    )
    commit_interval_ms: float = Field(5.0, gt=0, le=10_000)
    commit_batch: int = Field(500, ge=1, le=100_000)


class KafkaConfig(_Section):
    bootstrap_servers: str = Field("", description="empty: offline (spool only); KAFKA_BOOTSTRAP_SERVERS")
    topic: str = Field("events.detections", min_length=1, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    batch_size: int = Field(10_000, ge=1, le=1_000_000, description="messages per batch (batch.num.messages)")
    linger_ms: float = Field(20.0, ge=0, le=900_000)
    max_in_flight: int = Field(10_000, ge=1, le=1_000_000, description="events taken from the spool, not yet acked")
    backoff_initial_ms: float = Field(100.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict, description="librdkafka passthrough")

    @field_validator("properties")
    @classmethod
    def _no_overrides_of_guarantees(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("enable.idempotence", "acks"):
            if key in v:
                raise ValueError(f"'{key}' is fixed by the delivery guarantee and cannot be overridden")
        return v

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> KafkaConfig:
        # checked on the merged tree: the secrets usually come from the environment or systemd credentials
        if not self.security_protocol.startswith("SASL_"):
            return self
        where = {"sasl_username": "KAFKA_SASL_USERNAME or the systemd credential kafka_sasl_username",
                 "sasl_password": "KAFKA_SASL_PASSWORD or the systemd credential kafka_sasl_password"}
        given = {"sasl_username": self.sasl_username, "sasl_password": self.sasl_password.get_secret_value()}
        missing = [(name, f"required when kafka.security_protocol is {self.security_protocol} ({where[name]})")
                   for name, value in given.items() if not value]
        if missing:
            raise FieldProblems(missing)
        return self


class _GpsProvider(_Section):
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


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", json_schema_extra=RELOAD)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Config(_Section):
    vehicle: VehicleConfig = Field(default_factory=VehicleConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    gps: GpsConfig = Field(default_factory=NoGpsConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("gps", mode="before")
    @classmethod
    def _gps_provider_defaults_to_none(cls, v: Any) -> Any:
        default = NoGpsConfig.model_fields["provider"].default
        return {"provider": default, **v} if isinstance(v, dict) and "provider" not in v else v

    def spool_path(self) -> Path:
        return Path(self.spool.path) if self.spool.path else Path(self.state.state_dir) / "spool.db"


def _section_models(section: str) -> tuple[type[BaseModel], ...]:
    """The model of a section, or the models of a union section (gps: one per provider)."""
    ann: Any = Config.model_fields[section].annotation
    return typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)


def _variants(section: str) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """For a union section told apart by one key (gps: provider): that key and {its value: model}; else None."""
    field = Config.model_fields.get(section)
    if field is None or not isinstance(field.discriminator, str):
        return None
    key = field.discriminator
    return key, {model.model_fields[key].default: model for model in _section_models(section)}


def reloadable_fields() -> dict[str, tuple[str, ...]]:
    """What SIGHUP applies without a restart, section -> keys: the fields declared with `json_schema_extra=RELOAD`."""
    marked: dict[str, tuple[str, ...]] = {}
    for section in Config.model_fields:
        keys = dict.fromkeys(key for model in _section_models(section) for key, field in model.model_fields.items()
                             if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("reload"))
        if keys:
            marked[section] = tuple(keys)
    return marked


class ConfigError(Exception):
    """A configuration that cannot run; `problems` holds (key path, message) pairs.

    `origins` maps the key paths whose value came from elsewhere than `origin` (an environment variable, a
    systemd credential) to where it came from. When every problem has the same origin, that is `origin`
    (what printers show before each key); when they are mixed, the messages of the others say where their
    value came from."""

    def __init__(self, origin: str, problems: list[tuple[str, str]], origins: Mapping[str, str] | None = None):
        where = {key: (origins or {}).get(key, origin) for key, _ in problems}
        distinct = set(where.values())
        if len(distinct) == 1:
            self.origin = distinct.pop()
        elif all(o.startswith("environment ") for o in distinct):
            self.origin = "environment"
        else:
            self.origin = origin
        self.origins = where
        self.problems = [(k, m if where[k] == self.origin else f"{m} (from {where[k]})") for k, m in problems]
        super().__init__("\n".join(f"{where[key]}: {key}: {msg}" for key, msg in problems))


_ENV_INT = re.compile(r"[+-]?\d+", re.ASCII)
_ENV_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ENV_BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _field_type(section: str, key: str) -> Any:
    """The annotation of a config field, with `| None` taken off."""
    model = Config.model_fields[section].annotation
    ann = model.model_fields[key].annotation  # type: ignore[union-attr]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    return ann


def _from_env(section: str, key: str, raw: str) -> Any:
    """An environment string as its field's type (environment variables are text by nature); ValueError says
    what was expected. Strings, literals and secrets are passed on for the model to judge."""
    ann, text = _field_type(section, key), raw.strip()
    if ann is bool:
        if text.lower() not in _ENV_BOOL:
            raise ValueError(f"not true or false (got {raw!r})")
        return _ENV_BOOL[text.lower()]
    if ann is int:
        if not _ENV_INT.fullmatch(text):
            raise ValueError(f"not an integer (got {raw!r})")
        return int(text)
    if ann is float:
        if not _ENV_FLOAT.fullmatch(text) or not math.isfinite(float(text)):
            raise ValueError(f"not a number (got {raw!r})")
        return float(text)
    return raw


def _set(tree: dict[str, Any], section: str, key: str, value: Any) -> None:
    sub = tree.setdefault(section, {})
    if isinstance(sub, dict):
        sub[key] = value


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read FILE (or defaults), apply environment, credentials, then `overrides` ("section.key": value).

    Raises ConfigError naming every bad key.
    """
    env = os.environ if env is None else env
    origin = str(path) if path else "<defaults>"
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                tree = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(origin, [("<file>", "no such file")]) from None
        except OSError as exc:
            raise ConfigError(origin, [("<file>", f"cannot read: {exc.strerror}")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(origin, [("<toml>", str(exc))]) from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition: a Latin-1 file is unusable, not a crash
            raise ConfigError(origin, [("<file>", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                                                  f"{exc.start}): save the file as UTF-8")]) from None
    origins, problems = _merge_environment(tree, env)
    for dotted, value in (overrides or {}).items():  # first: a variant chosen here drops the others' keys
        section, _, key = dotted.partition(".")
        _choose_variant(tree, section, key, value)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _set(tree, section, key, value)
        origins[dotted] = "command line"
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        problems += _problems(exc)
    if problems:
        raise ConfigError(origin, problems, origins)
    return cfg


def _merge_environment(tree: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Environment variables and systemd credentials into `tree`: {key path: origin} of what they set, and the
    (key path, problem) of environment values that are not of their key's type (those keys are left out)."""
    origins: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for name, (section, key) in ENV_OVERRIDES.items():
        if env.get(name, "") == "":
            continue
        origins[f"{section}.{key}"] = f"environment {name}"
        try:
            _set(tree, section, key, _from_env(section, key, env[name]))
        except ValueError as exc:
            problems.append((f"{section}.{key}", str(exc)))
            _unset(tree, section, key)  # the file's value would be blamed on the environment otherwise
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for name, (section, key) in CREDENTIALS.items():
            cred = Path(cred_dir) / name
            if cred.is_file():
                _set(tree, section, key, cred.read_text().strip())
                origins[f"{section}.{key}"] = f"systemd credential {name}"
    return origins, problems


def _choose_variant(tree: dict[str, Any], section: str, key: str, value: Any) -> None:
    """The command line chose the variant of a union section (`replay --gps-track`: gps.provider track): the
    settings the file (or environment) gave for other variants no longer apply and are left out."""
    variants = _variants(section)
    sub = tree.get(section)
    if variants is None or key != variants[0] or not isinstance(sub, dict) or not isinstance(value, str) \
            or value not in variants[1]:
        return
    models = variants[1].values()
    tree[section] = {k: v for k, v in sub.items()  # a key of no variant stays, to be reported
                     if k in variants[1][value].model_fields or not any(k in m.model_fields for m in models)}


def _unset(tree: dict[str, Any], section: str, key: str) -> None:
    sub = tree.get(section)
    if isinstance(sub, dict):
        sub.pop(key, None)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(key path, message) for every error; a section's FieldProblems are spread over the keys they name. In a
    union section pydantic's path names the variant (gps.fixed.fixed_lat): the user's key path does not."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        variants = _variants(loc[0]) if loc else None
        variant = loc.pop(1) if variants is not None and len(loc) > 1 else None
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblems):
            problems += [(".".join([*loc, name]), msg) for name, msg in cause.problems]
            continue
        if variants is not None and (named := _variant_problem(err, loc, variant, *variants)):
            problems.append(named)
            continue
        key = ".".join(loc) or "<root>"
        value = err.get("input")
        shown = "" if "password" in key or isinstance(value, dict) else f" (got {value!r})"
        problems.append((key, f"{err['msg']}{shown}"))
    return problems


def _variant_problem(err: Any, loc: list[str], variant: str | None, by: str,
                     models: dict[str, type[BaseModel]]) -> tuple[str, str] | None:
    """An error of a union section (gps, told apart `by` provider) in the user's terms: an unknown provider, a key
    the chosen provider needs, a key of another provider; None for the others (worded as usual)."""
    section, chosen = loc[0], f"{loc[0]}.{by}"
    if err["type"] == "union_tag_invalid" and isinstance(err.get("input"), dict):
        names = [repr(name) for name in models]
        return chosen, f"Input should be {', '.join(names[:-1])} or {names[-1]} (got {err['input'][by]!r})"
    if variant is None or len(loc) != 2:
        return None
    key = loc[1]
    if err["type"] == "missing":
        about = models[variant].model_fields[key].description
        return f"{section}.{key}", f"required when {chosen} is {variant!r}" + (f" ({about})" if about else "")
    owners = [repr(name) for name, model in models.items() if key in model.model_fields]
    if err["type"] == "extra_forbidden" and owners:
        return f"{section}.{key}", f"belongs to {chosen} {' or '.join(owners)} ({chosen} is {variant!r})"
    return None


def load_for_command(args: object, options: Mapping[str, str], **fixed: object) -> Config:
    """The configuration a command runs with: its --config file (or the default), with every command-line
    option in `options` (attribute name → "section.key") that was given, plus `fixed` ("section__key")."""
    overrides: dict[str, Any] = {key.replace("__", "."): value for key, value in fixed.items()}
    for name, dotted in options.items():
        value = getattr(args, name, None)
        if value is not None and value != "":
            overrides[dotted] = value
    return load_config(find_config_file(getattr(args, "config", None)), overrides=overrides)


def find_config_file(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: explicit argument, $EDGE_CONFIG, then /etc/edge-detector/edge.toml if present."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("EDGE_CONFIG"):
        return Path(env["EDGE_CONFIG"])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None
