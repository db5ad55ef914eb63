"""Config model: defaults, the shipped file, environment overrides, every error named by key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_equals_defaults():
    shipped = load_config(REPO / "config" / "edge.toml", env={})
    defaults = load_config(None, env={})
    assert shipped.model_dump() == defaults.model_dump(), "config/edge.toml should document exactly the defaults"


@pytest.mark.parametrize(
    ("env", "section", "key", "expected"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092"}, "kafka", "bootstrap_servers", "b1:9092,b2:9092"),
        ({"KAFKA_TOPIC": "dets"}, "kafka", "topic", "dets"),
        ({"KAFKA_COMPRESSION_TYPE": "lz4"}, "kafka", "compression_type", "lz4"),
        ({"KAFKA_BATCH_SIZE": "500"}, "kafka", "batch_size", 500),
        ({"KAFKA_SASL_USERNAME": "key"}, "kafka", "sasl_username", "key"),
        ({"INFERENCE_FPS": "2.5"}, "source", "inference_fps", 2.5),
        ({"VEHICLE_ID": "truck-7"}, "vehicle", "vehicle_id", "truck-7"),
        ({"CAMERA_ID": "rear"}, "vehicle", "camera_id", "rear"),
        ({"EDGE_MODEL": "/m.onnx"}, "detector", "model", "/m.onnx"),
    ],
)
def test_environment_overrides(env, section, key, expected):
    cfg = load_config(None, env=env)
    got = getattr(getattr(cfg, section), key)
    assert got == expected, f"{next(iter(env))} should set {section}.{key} to {expected!r}, got {got!r}"


def test_password_from_env_and_credentials_never_shown(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_sasl_password").write_text("s3cret\n")
    cfg = load_config(None, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.kafka.sasl_password.get_secret_value() == "s3cret", "systemd credential should supply the password"
    assert "s3cret" not in repr(cfg), "the password must not appear in the config's repr"
    cfg = load_config(None, env={"KAFKA_SASL_PASSWORD": "pw"})
    assert cfg.kafka.sasl_password.get_secret_value() == "pw", "KAFKA_SASL_PASSWORD should supply the password"


def test_every_error_has_its_key_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[source]\ninference_fps = -1\nkind = "webcam"\n'
        '[kafka]\ncompression_type = "brotli"\nlinger = 5\n'
        '[detector]\nconfidence = 1.5\n'
        '[colour]\nx = 1\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    keys = {key for key, _ in info.value.problems}
    expected = {"source.inference_fps", "source.kind", "kafka.compression_type", "kafka.linger", "detector.confidence", "colour"}
    assert expected <= keys, f"every bad key should be reported, expected {expected}, got {keys}"


def test_env_value_that_does_not_parse_names_the_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"INFERENCE_FPS": "fast"})
    assert info.value.problems[0][0] == "source.inference_fps", f"got {info.value.problems}"


def test_guarantees_cannot_be_overridden(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[kafka.properties]\nacks = "1"\n')
    with pytest.raises(ConfigError) as info:
        load_config(f, env={})
    assert info.value.problems[0][0] == "kafka.properties", f"got {info.value.problems}"


def test_toml_syntax_error_is_reported(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[source\n")
    with pytest.raises(ConfigError) as info:
        load_config(f, env={})
    assert "line 1" in str(info.value), f"the TOML error should give its line: {info.value}"


def test_config_check_command(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[vehicle]\nvehicle_id = "v9"\n')
    assert main(["config", "check", str(good)]) == 0, "a valid file should pass"
    bad = tmp_path / "bad.toml"
    bad.write_text('[spool]\nwhen_full = "explode"\nmax_bytes = 10\n')
    assert main(["config", "check", str(bad)]) == 2, "an invalid file should exit 2"
    err = capsys.readouterr().err
    assert "spool.when_full" in err and "spool.max_bytes" in err, f"both keys should be named: {err}"
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2, "a missing file should exit 2"
