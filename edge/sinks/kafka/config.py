"""How the flusher's producer is set up: librdkafka settings, a redacted copy for logs, its log lines, the tunables."""

from __future__ import annotations

import logging
from typing import Any

from edge.config import KafkaConfig

LOGGER = "edge.sinks.kafka"  # every module of the flusher logs under this one name (journal filters, tests)

SECRET_WORDS = ("password", "secret", "token", "key.pem", "private")
DEFAULT_MESSAGE_TIMEOUT_MS = 30_000
PROBE_WINDOW = 100  # events in flight while the broker is unreachable
LEASE_CHUNK = 2000  # leased and produced at a time: the broker gets work while the next chunk is read
IDLE_WAIT_S = 0.1  # longest wait between looks at the spool; a delivery report ends it early
STATS_INTERVAL_MS = 1000  # librdkafka statistics: the idempotent producer's epoch is watched through them
# On "unknown producer id" librdkafka bumps the producer epoch and retries without telling the client; a broker
# that lost every producer id (replaced, or restarted without its data) answers the same again, about twenty
# times a second, and no delivery report comes until message.timeout.ms. This many bumps without a single report
# means that producer is stuck. A bump after message timeouts comes with their reports, which reset the count.
EPOCH_BUMPS_MAX = 5


CONTENT_TYPE_HEADER = ("content-type", b"application/json")
_VERSION_HEADERS = {v: ("schema_version", str(v)) for v in range(1, 8)}  # built once, not per event


def event_headers(detection_id: str, schema_version: int) -> list[tuple[str, Any]]:
    """The headers of every event message (flusher and ingest-csv alike): its id, its schema version, JSON."""
    version = _VERSION_HEADERS.get(schema_version) or ("schema_version", str(schema_version))
    return [("detection_id", detection_id), version, CONTENT_TYPE_HEADER]


def stream_topics(cfg: KafkaConfig) -> tuple[str, str]:
    """The topic of each spool stream, indexed by SpoolRecord.stream (edge.spool.Stream): a tuple, so that the
    produce loop pays one index per record. DETECTIONS (0) -> kafka.topic, OBJECTS (1) -> kafka.objects_topic."""
    return (cfg.topic, cfg.objects_topic)


def producer_config(cfg: KafkaConfig) -> dict[str, Any]:
    """librdkafka settings for `cfg`: idempotent, acks=all, bounded retries, SASL/SSL; `properties` last."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": "edge-detector",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": cfg.compression_type,
        "linger.ms": cfg.linger_ms,
        "batch.num.messages": cfg.batch_size,
        "queue.buffering.max.messages": max(100_000, cfg.max_in_flight + cfg.batch_size),
        "message.timeout.ms": DEFAULT_MESSAGE_TIMEOUT_MS,  # undelivered events come back to the spool
        "request.timeout.ms": 15_000,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 1_000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": max(100, int(min(10.0, cfg.backoff_max_s) * 1000)),
        "socket.connection.setup.timeout.ms": 10_000,
        "socket.keepalive.enable": True,
        "partitioner": "murmur2_random",  # same partition for a key as the Java client
        "log.connection.close": False,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "security.protocol": cfg.security_protocol,
    }
    if cfg.security_protocol.startswith("SASL_"):  # KafkaConfig refuses SASL without credentials
        conf["sasl.mechanisms"] = cfg.sasl_mechanism
        conf["sasl.username"] = cfg.sasl_username
        conf["sasl.password"] = cfg.sasl_password.get_secret_value()
    conf.update(cfg.properties)
    return conf


def redact(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for logs: secrets replaced, callables named."""
    out: dict[str, Any] = {}
    for k, v in conf.items():
        if any(w in k.lower() for w in SECRET_WORDS):
            out[k] = "***"
        elif callable(v) or hasattr(v, "log"):
            out[k] = f"<{type(v).__name__}>"
        else:
            out[k] = v
    return out


class ClientLog:
    """librdkafka's log lines into Python logging; connection failures go to DEBUG because the
    flusher reports an outage once ("broker unreachable since ...") instead of once per reconnect,
    and so does a fatal error: the flusher reports it once, with what it does about it."""

    QUIET = frozenset({"FAIL", "BROKERFAIL", "CONNECT", "ERROR", "FATAL"})

    def __init__(self, logger: logging.Logger):
        self._log = logger

    def log(self, level: int, msg: str, *args: Any) -> None:
        if args and args[0] in self.QUIET:
            level = min(level, logging.DEBUG)
        self._log.log(level, msg, *args)
