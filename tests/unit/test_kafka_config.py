"""producer_config: delivery guarantees, Confluent Cloud security settings, passthrough, secrets kept out of logs."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr, ValidationError

from edge.backoff import Backoff
from edge.config import KafkaConfig, load_config
from edge.sinks.kafka import KafkaFlusher, producer_config, redact
from edge.sinks.kafka.config import stream_topics
from edge.spool import Stream


def test_defaults_are_idempotent_acks_all_zstd():
    conf = producer_config(KafkaConfig(bootstrap_servers="b:9092"))
    assert conf["enable.idempotence"] is True, "idempotence is the no-duplicate guarantee per session"
    assert conf["acks"] == "all", "acks=all is required by idempotence"
    assert conf["compression.type"] == "zstd", "zstd is the default compression"
    assert conf["linger.ms"] == 0.0 and conf["batch.num.messages"] == 10_000, f"batching: {conf}"
    assert conf["message.timeout.ms"] == 30_000, "undelivered events must come back to the spool in bounded time"
    assert conf["security.protocol"] == "PLAINTEXT" and "sasl.username" not in conf, f"no SASL by default: {conf}"


def test_batch_linger_compression_and_passthrough():
    cfg = KafkaConfig(
        bootstrap_servers="b:9092", compression_type="lz4", batch_size=500, linger_ms=5,
        properties={"message.max.bytes": 100_000, "message.timeout.ms": 5000},
    )
    conf = producer_config(cfg)
    assert (conf["compression.type"], conf["batch.num.messages"], conf["linger.ms"]) == ("lz4", 500, 5), f"{conf}"
    assert conf["message.max.bytes"] == 100_000, "properties pass through"
    assert conf["message.timeout.ms"] == 5000, "properties override the defaults"


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_for_confluent_cloud(protocol):
    cfg = KafkaConfig(
        bootstrap_servers="pkc-x.confluent.cloud:9092", security_protocol=protocol,
        sasl_mechanism="PLAIN", sasl_username="KEY", sasl_password=SecretStr("s3cr3t"),
    )
    conf = producer_config(cfg)
    assert conf["security.protocol"] == protocol, f"{conf['security.protocol']}"
    assert (conf["sasl.mechanisms"], conf["sasl.username"], conf["sasl.password"]) == ("PLAIN", "KEY", "s3cr3t"), "SASL settings"


def test_ssl_without_sasl_has_no_credentials():
    conf = producer_config(KafkaConfig(bootstrap_servers="b:9093", security_protocol="SSL"))
    assert conf["security.protocol"] == "SSL" and "sasl.password" not in conf, f"{conf}"


def test_sasl_without_credentials_is_refused():
    with pytest.raises(ValueError, match="sasl_username"):
        producer_config(KafkaConfig(bootstrap_servers="b:9092", security_protocol="SASL_SSL"))


def test_guarantees_cannot_be_overridden_by_properties():
    with pytest.raises(ValueError):
        KafkaConfig(properties={"acks": "1"})


def test_password_never_logged(caplog):
    # given a SASL config, when the flusher is built (it logs its producer config)
    cfg = KafkaConfig(bootstrap_servers="b:9092", security_protocol="SASL_SSL", sasl_username="KEY",
                      sasl_password=SecretStr("hunter2-very-secret"), properties={"ssl.key.password": "kp-secret"})
    with caplog.at_level(logging.DEBUG):
        KafkaFlusher(cfg, spool=None, producer_factory=lambda conf: None)
    # then the config was logged, without secrets
    assert "sasl.username" in caplog.text, "the producer config is logged"
    assert "hunter2" not in caplog.text and "kp-secret" not in caplog.text, "a secret reached the log"
    assert redact({"sasl.password": "x", "ssl.key.password": "y", "acks": "all"}) == {
        "sasl.password": "***", "ssl.key.password": "***", "acks": "all"}, "redact hides passwords only"


def test_backoff_doubles_with_jitter_caps_and_resets():
    high = Backoff(0.1, 1.0, rng=lambda: 1.0)
    assert [round(high.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], "doubling, capped"
    high.reset()
    assert high.next() == pytest.approx(0.1), "reset on success"
    low = Backoff(0.1, 30.0, rng=lambda: 0.0)
    assert low.next() == pytest.approx(0.05), "jitter takes at most half off"


def test_objects_topic_default_environment_and_stream_order():
    assert KafkaConfig().objects_topic == "events.objects", "object records go to events.objects by default"
    got = load_config(None, env={"KAFKA_OBJECTS_TOPIC": "objs"}).kafka.objects_topic
    assert got == "objs", f"KAFKA_OBJECTS_TOPIC should set kafka.objects_topic, got {got!r}"
    with pytest.raises(ValidationError, match="objects_topic"):
        KafkaConfig(objects_topic="no spaces allowed")
    topics = stream_topics(KafkaConfig(topic="dets", objects_topic="objs"))
    assert (topics[Stream.DETECTIONS], topics[Stream.OBJECTS]) == ("dets", "objs"), \
        f"the topic tuple is indexed by the spool's stream values: {topics}"
    assert len(topics) == len(Stream), f"one topic per stream: {topics}"
