"""Config model: defaults, the shipped file, environment overrides, every error named by key path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from edge.cli import main
from edge.config import (
    ENV_OVERRIDES,
    GPS_PROVIDERS,
    ConfigError,
    GpsdConfig,
    KafkaConfig,
    NoGpsConfig,
    TrackGpsConfig,
    load_config,
    reloadable_fields,
)
from edge.types import GpsSource, QueuePolicy

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


# --- rules that span keys: what `edge run` would refuse at start, `edge config check` refuses too -------------

SASL_MISSING = ["kafka.sasl_username", "kafka.sasl_password"]


@pytest.mark.parametrize(
    ("toml", "env", "keys"),
    [
        pytest.param('[gps]\nprovider = "fixed"\n', {}, ["gps.fixed_lat", "gps.fixed_lon"], id="fixed-no-position"),
        pytest.param('[gps]\nprovider = "fixed"\nfixed_lat = 52.1\n', {}, ["gps.fixed_lon"], id="fixed-no-lon"),
        pytest.param('[gps]\nprovider = "track"\n', {}, ["gps.track"], id="track-no-file"),
        pytest.param('[gps]\nprovider = "track"\ntrack = "  "\n', {}, ["gps.track"], id="track-blank"),
        pytest.param('[gps]\nprovider = "gpsd"\ngpsd_host = ""\n', {}, ["gps.gpsd_host"], id="gpsd-no-host"),
        pytest.param('[kafka]\nsecurity_protocol = "SASL_SSL"\n', {}, SASL_MISSING, id="sasl-ssl-no-credentials"),
        pytest.param('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nbootstrap_servers = "b:9092"\n', {},
                     SASL_MISSING, id="sasl-plaintext-no-credentials"),
        pytest.param('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "KEY"\n', {},
                     ["kafka.sasl_password"], id="sasl-no-password"),
        pytest.param('[kafka]\nsecurity_protocol = "SASL_SSL"\n', {"KAFKA_SASL_PASSWORD": "pw"},
                     ["kafka.sasl_username"], id="sasl-password-from-env-only"),
        pytest.param("", {"KAFKA_SASL_USERNAME": "KEY"}, [], id="plaintext-ignores-credentials"),
        pytest.param('[source]\nuri = " "\n', {}, ["source.uri"], id="source-uri-blank"),
        pytest.param('[source]\nstart_time = "yesterday"\n', {}, ["source.start_time"], id="start-time-not-iso"),
        pytest.param('[gps]\nprovider = "fixed"\nfixed_lat = 52.1\nfixed_lon = 4.9\ngpsd_port = 3000\n', {},
                     ["gps.gpsd_port"], id="setting-of-another-provider"),
        pytest.param('[gps]\nprovider = "gpsd"\nfixed_lat = 52.1\n', {}, ["gps.fixed_lat"], id="fixed-setting-with-gpsd"),
        pytest.param('[gps]\nprovider = "satellite"\n', {}, ["gps.provider"], id="unknown-provider"),
        pytest.param('[detector]\nclasses = ["stop sign", " "]\n', {}, ["detector.classes"], id="class-name-blank"),
    ],
)
def test_rules_across_keys_name_the_key(tmp_path, toml, env, keys):
    # given a file (and environment) that `edge run` could not start with
    path = tmp_path / "edge.toml"
    path.write_text(toml)
    # when it is loaded, then every offending key is named, and nothing else
    if not keys:
        load_config(path, env=env)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    named = [key for key, _ in info.value.problems]
    assert named == keys, f"expected exactly the key paths {keys}, got {info.value.problems}"
    assert all(msg for _, msg in info.value.problems), f"every key has a message: {info.value.problems}"


@pytest.mark.parametrize(
    "toml",
    [
        '[gps]\nprovider = "fixed"\nfixed_lat = 52.1\nfixed_lon = 4.9\n',
        '[gps]\nprovider = "track"\ntrack = "/nonexistent/drive.nmea"\n',  # the file is an input, checked by run
        '[source]\nstart_time = "2024-05-01T08:30:00Z"\n',
    ],
)
def test_complete_settings_are_accepted(tmp_path, toml):
    path = tmp_path / "edge.toml"
    path.write_text(toml)
    cfg = load_config(path, env={})
    assert cfg is not None, f"a complete configuration should load: {toml!r}"


def test_sasl_credentials_merged_from_environment_and_systemd(tmp_path):
    # given SASL in the file, the user name in the environment, the password as a systemd credential
    path = tmp_path / "edge.toml"
    path.write_text('[kafka]\nbootstrap_servers = "b:9092"\nsecurity_protocol = "SASL_SSL"\n')
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_sasl_password").write_text("s3cret\n")
    env = {"KAFKA_SASL_USERNAME": "KEY", "CREDENTIALS_DIRECTORY": str(creds)}
    # then the merged configuration is valid
    cfg = load_config(path, env=env)
    assert (cfg.kafka.sasl_username, cfg.kafka.sasl_password.get_secret_value()) == ("KEY", "s3cret"), (
        "user name from KAFKA_SASL_USERNAME, password from the credential")
    # and without the credential only the password is missing, and it is not echoed
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"KAFKA_SASL_USERNAME": "KEY"})
    assert [k for k, _ in info.value.problems] == ["kafka.sasl_password"], f"got {info.value.problems}"
    assert "kafka_sasl_password" in str(info.value), f"the message says where the password comes from: {info.value}"


def test_sasl_error_never_shows_the_password():
    # given a password but no user name, when the section is refused as a whole
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"KAFKA_SASL_PASSWORD": "hunter2", "KAFKA_BOOTSTRAP_SERVERS": "b:9092"},
                    overrides={"kafka.security_protocol": "SASL_SSL"})
    assert "hunter2" not in str(info.value), f"the password must not appear in the config error: {info.value}"
    with pytest.raises(ValidationError) as direct:
        KafkaConfig(security_protocol="SASL_SSL", sasl_password="hunter2")
    assert "hunter2" not in str(direct.value), f"nor in the model's own error text: {direct.value}"


ISSUE_CONFIGS = [
    ('[gps]\nprovider = "fixed"\n', "gps.fixed_lat"),
    ('[gps]\nprovider = "track"\n', "gps.track"),
    ('[kafka]\nbootstrap_servers = "b:9092"\nsecurity_protocol = "SASL_SSL"\n', "kafka.sasl_username"),
]


@pytest.mark.parametrize(("toml", "key"), ISSUE_CONFIGS, ids=["fixed", "track", "sasl"])
def test_config_check_cli_refuses_what_run_would(tmp_path, toml, key):
    # given one of the configurations `edge config check` used to pass and `edge run` refused
    path = tmp_path / "edge.toml"
    path.write_text(toml)
    drop = {*ENV_OVERRIDES, "CREDENTIALS_DIRECTORY", "EDGE_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # when the real command checks it
    proc = subprocess.run([sys.executable, "-m", "edge", "config", "check", str(path)],
                          env=env, capture_output=True, text=True, timeout=60)
    # then it exits 2 and names the key, without a traceback
    assert proc.returncode == 2, f"config check should exit 2, got {proc.returncode}: {proc.stderr}"
    assert f"config error: {path}: {key}: " in proc.stderr, f"stderr should name {key}: {proc.stderr}"
    assert "Traceback" not in proc.stderr, f"no traceback expected: {proc.stderr}"
    assert "OK" not in proc.stdout, f"nothing should be reported OK: {proc.stdout}"


def test_reload_refuses_what_start_would(tmp_path, caplog):
    # given a running daemon, when its file is changed to a GPS provider without its settings and reloaded
    from edge.daemon import Daemon

    path = tmp_path / "edge.toml"
    path.write_text("")
    daemon = Daemon(load_config(path, env={}), path)
    path.write_text('[gps]\nprovider = "fixed"\n[detector]\nconfidence = 0.6\n')
    caplog.set_level(logging.ERROR, logger="edge.daemon")
    daemon._apply_reload(_NoDetector(), object())
    # then the reload is rejected with the key, and the running configuration is kept
    assert "gps.fixed_lat" in caplog.text, f"the rejection should name gps.fixed_lat: {caplog.text}"
    assert daemon.cfg.detector.confidence == 0.25, "the running configuration should be kept"


class _NoDetector:
    def set_thresholds(self, *args):
        raise AssertionError("a rejected reload must not reach the detector")


# --- issue 11: strict types in the file, typed environment values blamed on their variable -------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[kafka]\nbatch_size = true\n", "kafka.batch_size"),
        ('[source]\ninference_fps = "7"\n', "source.inference_fps"),
        ("[kafka]\nbatch_size = 10.0\n", "kafka.batch_size"),
        ('[gps]\ngpsd_port = "2947"\n', "gps.gpsd_port"),
        ("[detector]\ntensorrt_fp16 = 1\n", "detector.tensorrt_fp16"),
        ("[vehicle]\nvehicle_id = 7\n", "vehicle.vehicle_id"),
    ],
)
def test_file_values_must_have_their_type(tmp_path, toml, key):
    # given a TOML value of the wrong type that lax validation would have coerced (true -> 1, "7" -> 7.0)
    path = tmp_path / "edge.toml"
    path.write_text(toml)
    # then it is an error on that key, blamed on the file
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [k for k, _ in info.value.problems] == [key], f"{toml!r}: {info.value.problems}"
    assert info.value.origin == str(path), f"the file is the origin: {info.value.origin}"


def test_integers_are_still_accepted_for_floats(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text("[source]\ninference_fps = 7\n[gps]\nfixed_lat = 52\nfixed_lon = 4\nprovider = \"fixed\"\n")
    cfg = load_config(path, env={})
    assert cfg.source.inference_fps == 7.0 and cfg.gps.fixed_lat == 52.0, "an integer is a valid float in TOML"


@pytest.mark.parametrize(
    ("env", "key", "message"),
    [
        ({"INFERENCE_FPS": "-3"}, "source.inference_fps", "greater than 0"),
        ({"INFERENCE_FPS": "fast"}, "source.inference_fps", "not a number"),
        ({"INFERENCE_FPS": "nan"}, "source.inference_fps", "not a number"),
        ({"KAFKA_BATCH_SIZE": "1.5"}, "kafka.batch_size", "not an integer"),
        ({"KAFKA_BATCH_SIZE": "true"}, "kafka.batch_size", "not an integer"),
        ({"KAFKA_COMPRESSION_TYPE": "brotli"}, "kafka.compression_type", "Input should be"),
    ],
)
def test_bad_environment_value_is_blamed_on_its_variable(tmp_path, env, key, message):
    path = tmp_path / "edge.toml"
    path.write_text("[source]\ninference_fps = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    name = next(iter(env))
    assert info.value.problems[0][0] == key and message in info.value.problems[0][1], f"{info.value.problems}"
    assert info.value.origin == f"environment {name}", f"the variable is the origin, not the file: {info.value.origin}"
    assert str(path) not in str(info.value), f"the file is not blamed: {info.value}"


def test_environment_strings_become_typed_values():
    cfg = load_config(None, env={"INFERENCE_FPS": " 7 ", "KAFKA_BATCH_SIZE": "+500"})
    assert (cfg.source.inference_fps, cfg.kafka.batch_size) == (7.0, 500), f"{cfg.source}, {cfg.kafka.batch_size}"


def test_file_and_environment_problems_each_say_where(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text("[kafka]\nbatch_size = true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"INFERENCE_FPS": "-3"})
    text = str(info.value).splitlines()
    assert f"{path}: kafka.batch_size: Input should be a valid integer (got True)" in text, text
    assert "environment INFERENCE_FPS: source.inference_fps: Input should be greater than 0 (got -3.0)" in text, text


def test_config_check_names_the_environment_variable(tmp_path, capsys, monkeypatch):
    path = tmp_path / "edge.toml"
    path.write_text("")
    monkeypatch.setenv("INFERENCE_FPS", "-3")
    assert main(["config", "check", str(path)]) == 2, "an invalid environment value is a configuration error"
    err = capsys.readouterr().err
    assert "config error: environment INFERENCE_FPS: source.inference_fps: " in err, err


def test_non_utf8_file_is_a_configuration_error(tmp_path, capsys):
    # given a Latin-1 file (é as the byte 0xe9)
    path = tmp_path / "edge.toml"
    path.write_bytes('[vehicle]\nvehicle_id = "café"\n'.encode("latin-1"))
    # then config check exits 2 (not 1 with a UnicodeDecodeError) and says what is wrong
    assert main(["config", "check", str(path)]) == 2, "a file that is not UTF-8 is a configuration error"
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "0xe9" in err and "Traceback" not in err, err


# --- issue 12: each rule declared where its setting is; one definition of each list -----------------------------


def test_setting_of_another_provider_says_whose_it_is(tmp_path):
    # given a fixed position with a gpsd port and a staleness bound, which only gpsd (and exif) use
    path = tmp_path / "edge.toml"
    path.write_text('[gps]\nprovider = "fixed"\nfixed_lat = 52.1\nfixed_lon = 4.9\ngpsd_port = 3000\nmax_age_s = 5.0\n')
    # then each is named by the user's key path (not pydantic's gps.fixed.gpsd_port), with its provider
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    problems = dict(info.value.problems)
    assert list(problems) == ["gps.gpsd_port", "gps.max_age_s"], f"{info.value.problems}"
    assert "'gpsd'" in problems["gps.gpsd_port"] and "'fixed'" in problems["gps.gpsd_port"], problems
    assert "'gpsd' or 'exif'" in problems["gps.max_age_s"], problems


def test_keys_of_other_providers_at_their_defaults_are_left_out(tmp_path):
    # given a file written from an earlier shipped edge.toml: every provider's key, at its default
    path = tmp_path / "edge.toml"
    path.write_text('[gps]\nprovider = "fixed"\nfixed_lat = 52.1\nfixed_lon = 4.9\ngpsd_host = "127.0.0.1"\n'
                    'gpsd_port = 2947\nmax_age_s = 2.0\ntrack = ""\ntrack_max_gap_s = 5.0\n')
    # then it still loads, and the configuration holds only the fixed provider's settings
    cfg = load_config(path, env={})
    assert cfg.gps.model_dump() == {"provider": "fixed", "fixed_lat": 52.1, "fixed_lon": 4.9, "fixed_heading": None}, (
        f"{cfg.gps!r}")


def test_gps_without_provider_is_none(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text("[gps]\ntrack_max_gap_s = 5.0\n")
    assert load_config(path, env={}).gps == NoGpsConfig(), "no provider key: provider none, as by default"


def test_unknown_provider_lists_the_providers(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[gps]\nprovider = "satellite"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    expected = "Input should be " + ", ".join(repr(p) for p in get_args(GpsSource)[:-1]) + f" or {get_args(GpsSource)[-1]!r}"
    assert info.value.problems == [("gps.provider", f"{expected} (got 'satellite')")], f"{info.value.problems}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"gps.provider": "track", "gps.track": "drive.nmea"},
                     TrackGpsConfig(track="drive.nmea"), id="replay --gps-track"),
        pytest.param({"gps.gpsd_port": 3000, "gps.provider": "gpsd"}, GpsdConfig(gpsd_port=3000), id="gps watch --port"),
    ],
)
def test_provider_from_the_command_line_replaces_the_files(tmp_path, overrides, expected):
    # given a file that names another provider, with that provider's settings
    path = tmp_path / "edge.toml"
    path.write_text('[gps]\nprovider = "fixed"\nfixed_lat = 52.1\nfixed_lon = 4.9\n')
    # when a command chooses its own provider, then the file's fixed settings do not get in the way
    cfg = load_config(path, env={}, overrides=overrides)
    assert cfg.gps == expected, f"{overrides}: {cfg.gps!r}"


def test_provider_from_the_command_line_keeps_the_files_settings_of_it(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[gps]\nprovider = "none"\ngpsd_host = "10.0.0.5"\n')
    with pytest.raises(ConfigError):
        load_config(path, env={})  # edge run: a gpsd setting while the provider is none
    cfg = load_config(path, env={}, overrides={"gps.provider": "gpsd"})  # edge gps watch
    assert cfg.gps == GpsdConfig(gpsd_host="10.0.0.5"), f"the file's gpsd host is watched: {cfg.gps!r}"


def test_one_settings_model_per_gps_source():
    assert sorted(GPS_PROVIDERS) == sorted(get_args(GpsSource)), f"{sorted(GPS_PROVIDERS)} vs edge.types.GpsSource"


def test_reloadable_fields_are_those_marked_on_the_model():
    assert reloadable_fields() == {
        "source": ("inference_fps",), "detector": ("confidence", "iou", "classes"), "log": ("level",),
        "latency": ("budget_ms",),
    }, f"{reloadable_fields()}"


@pytest.mark.parametrize("policy", get_args(QueuePolicy))
def test_spool_when_full_takes_each_queue_policy(tmp_path, policy):
    path = tmp_path / "edge.toml"
    path.write_text(f'[spool]\nwhen_full = "{policy}"\n')
    assert load_config(path, env={}).spool.when_full == policy, f"spool.when_full = {policy!r} should load"
