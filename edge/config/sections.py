"""The configuration sections other than GPS: their keys, defaults, bounds and the rules across keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from edge.clock import parse_iso_time
from edge.types import QueuePolicy

# json_schema_extra of a key that SIGHUP applies without a restart (see edge.config.model.reloadable_fields)
RELOAD: dict[str, Any] = {"reload": True}


class FieldProblems(ValueError):
    """Raised by a section's cross-field validator: (field, message) pairs, so that each names its own key."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in problems))


class Section(BaseModel):
    """The base of every section: unknown keys refused, values checked on assignment, inputs kept out of errors."""

    # a rule across keys fails on the whole section, password included: inputs stay out of the error's text
    # (load_config reports them itself, never a password). Strict: `batch_size = true` or `inference_fps = "7"`
    # in TOML is a mistake to report, not a value to guess; environment strings are converted by
    # edge.config.loading._from_env.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True, strict=True)


class VehicleConfig(Section):
    vehicle_id: str = Field("vehicle-001", min_length=1, description="Kafka key; VEHICLE_ID")
    camera_id: str = Field("cam-front", min_length=1, description="CAMERA_ID")
    session_id: str = Field("", description="empty: YYYYMMDD-<6 hex>, derived from the recording for replays")


class SourceConfig(Section):
    uri: str = Field("0", description="camera index, /dev/videoN, rtsp/http URL, video file, image folder, GStreamer pipeline")
    kind: Literal["auto", "file", "folder", "camera", "stream", "gstreamer"] = "auto"
    inference_fps: float = Field(5.0, gt=0, le=240, description="frames per second sent to the detector; INFERENCE_FPS",
                                 json_schema_extra=RELOAD)
    queue_size: int = Field(8, ge=1, le=1024, description="frames buffered between capture and inference")
    stall_timeout_s: float = Field(5.0, gt=0, description="live source: no frame for this long -> reopen")
    decode_threads: int = Field(
        1, ge=0, le=64, description="stream: FFmpeg decoder threads; 0: FFmpeg's choice. Frame threads hand each "
        "frame over that many frames late and decode in bursts that take the cores inference and events need")
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


class DetectorConfig(Section):
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


class StateConfig(Section):
    state_dir: str = Field("/var/lib/edge-detector", min_length=1, description="spool, TensorRT engine cache")
    runtime_dir: str = Field("/run/edge-detector", min_length=1, description="status file")
    prometheus_textfile: str = Field("", description="node_exporter textfile collector file (.prom); empty: off")


class SpoolConfig(Section):
    path: str = Field("", description="empty: <state_dir>/spool.db")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    when_full: QueuePolicy = "drop_oldest"
    block_timeout_s: float = Field(
        30.0, gt=0, le=86_400,
        description="replay and ingest-csv (policy block): how long spooling may find no room (disk full, or "
        "max_bytes with nothing delivered) before the command stops, keeps what it spooled and exits 1",
    )
    commit_interval_ms: float = Field(
        0.0, ge=0, le=10_000,
        description="how long a commit waits for more appends to join it; 0: at once (appends that come during a "
        "commit join the next one). Each writer appends and waits, so a wait adds latency and batches nothing",
    )
    commit_batch: int = Field(500, ge=1, le=100_000)


class KafkaConfig(Section):
    bootstrap_servers: str = Field("", description="empty: offline (spool only); KAFKA_BOOTSTRAP_SERVERS")
    topic: str = Field("events.detections", min_length=1, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    objects_topic: str = Field(
        "events.objects", min_length=1, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="object records (one per tracked physical sign), from the same spool; KAFKA_OBJECTS_TOPIC",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    batch_size: int = Field(10_000, ge=1, le=1_000_000, description="messages per batch (batch.num.messages)")
    linger_ms: float = Field(
        0.0, ge=0, le=900_000, description="librdkafka linger.ms: part of every event's latency. 0: batches still "
        "form from what queues while a request is in flight (queue flush measured 29k/s at 0, 23k/s at 5 ms)")
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


class LatencyConfig(Section):
    budget_ms: float = Field(
        200.0, gt=0, le=3_600_000, json_schema_extra=RELOAD,
        description="capture → broker ack p99 over the window above which the service logs one WARNING naming the "
        "slowest stage and flags `edge status` (and one record when it is back under)",
    )
    window_s: float = Field(60.0, ge=5, le=3600, description="sliding window of the stage percentiles and the budget")
    report_interval_s: float = Field(
        60.0, ge=0, le=86_400, description="a journal record of every stage's p50/p99 this often; 0: none")


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", json_schema_extra=RELOAD)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

