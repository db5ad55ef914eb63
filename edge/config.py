"""The one typed configuration model: TOML file + environment + systemd credentials, validated at start."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VehicleConfig(_Section):
    vehicle_id: str = Field("vehicle-001", min_length=1, description="Kafka key; VEHICLE_ID")
    camera_id: str = Field("cam-front", min_length=1, description="CAMERA_ID")
    session_id: str = Field("", description="empty: YYYYMMDD-<6 hex>, derived from the recording for replays")


class SourceConfig(_Section):
    uri: str = Field("0", description="camera index, /dev/videoN, rtsp/http URL, video file, image folder, GStreamer pipeline")
    kind: Literal["auto", "file", "folder", "camera", "stream", "gstreamer"] = "auto"
    inference_fps: float = Field(5.0, gt=0, le=240, description="frames per second sent to the detector; INFERENCE_FPS")
    queue_size: int = Field(8, ge=1, le=1024, description="frames buffered between capture and inference")
    stall_timeout_s: float = Field(5.0, gt=0, description="live source: no frame for this long -> reopen")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    start_time: str = Field("", description="ISO 8601 start of a recording; empty: file modification time")


class DetectorConfig(_Section):
    model: str = Field("/var/lib/edge-detector/models/yolov8n.onnx", min_length=1, description="ONNX file; EDGE_MODEL")
    providers: list[Literal["tensorrt", "cuda", "cpu"]] = Field(
        default_factory=lambda: ["tensorrt", "cuda", "cpu"], min_length=1
    )
    intra_op_threads: int = Field(0, ge=0, le=256, description="0: onnxruntime's default")
    spin_wait: bool = Field(False, description="onnxruntime threads busy-wait between ops; off leaves CPU to capture")
    confidence: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.7, gt=0, le=1)
    classes: list[str] = Field(default_factory=list, description="empty: stop sign + traffic light if known, else all")
    max_detections: int = Field(300, ge=1, le=10000)
    tensorrt_fp16: bool = True


class StateConfig(_Section):
    state_dir: str = Field("/var/lib/edge-detector", min_length=1, description="spool, TensorRT engine cache")
    runtime_dir: str = Field("/run/edge-detector", min_length=1, description="status file")
    prometheus_textfile: str = Field("", description="node_exporter textfile collector file (.prom); empty: off")


class SpoolConfig(_Section):
    path: str = Field("", description="empty: <state_dir>/spool.db")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    when_full: Literal["drop_oldest", "block"] = "drop_oldest"
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


class GpsConfig(_Section):
    provider: Literal["gpsd", "exif", "track", "fixed", "none"] = "none"
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = Field(2947, ge=1, le=65535)
    max_age_s: float = Field(2.0, gt=0, description="older fixes are stale")
    fixed_lat: float | None = Field(None, ge=-90, le=90)
    fixed_lon: float | None = Field(None, ge=-180, le=180)
    fixed_heading: float | None = Field(None, ge=0, lt=360)
    track: str = Field("", description="NMEA or GPX file for replays")
    track_max_gap_s: float = Field(5.0, gt=0)


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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
    gps: GpsConfig = Field(default_factory=GpsConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    def spool_path(self) -> Path:
        return Path(self.spool.path) if self.spool.path else Path(self.state.state_dir) / "spool.db"


class ConfigError(Exception):
    """A configuration that cannot run; `problems` holds (key path, message) pairs."""

    def __init__(self, origin: str, problems: list[tuple[str, str]]):
        self.origin = origin
        self.problems = problems
        super().__init__("\n".join(f"{origin}: {key}: {msg}" for key, msg in problems))


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
    for name, (section, key) in ENV_OVERRIDES.items():
        if env.get(name, "") != "":
            _set(tree, section, key, env[name])
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for name, (section, key) in CREDENTIALS.items():
            cred = Path(cred_dir) / name
            if cred.is_file():
                _set(tree, section, key, cred.read_text().strip())
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _set(tree, section, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            value = err.get("input")
            shown = "" if "password" in key or isinstance(value, dict) else f" (got {value!r})"
            problems.append((key, f"{err['msg']}{shown}"))
        raise ConfigError(origin, problems) from None


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
