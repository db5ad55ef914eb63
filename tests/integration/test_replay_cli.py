"""`edge replay` / `edge detect` through the real CLI on real recordings: golden events, determinism, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from edge.events import event_schema, object_schema
from tests.model_factory import coco_metadata, make_model

VOLATILE = {"ingested_at", "inference_latency_ms"}  # measurements of this run, not properties of the drive


def edge(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "EDGE_", "INFERENCE_", "VEHICLE_", "CAMERA_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_replays(tmp_path_factory, data_dir: Path, yolov8n: Path):
    out = tmp_path_factory.mktemp("replay")
    video = data_dir / "video" / "stop_sign_approach.mp4"
    runs = []
    for i in (1, 2):
        target, objects = out / f"run{i}.jsonl", out / f"objects{i}.jsonl"
        proc = edge("replay", str(video), "--model", str(yolov8n), "--out", str(target), "--objects-out", str(objects),
                    "--quiet", "--state-dir", str(out))
        assert proc.returncode == 0, f"replay {i} should succeed: {proc.stderr[-2000:]}"
        runs.append((_events(target), proc.stderr, _events(objects)))
    return runs


@pytest.mark.slow
def test_golden_replay_of_a_real_stop_sign_approach(two_replays):
    events, stderr, _ = two_replays[0]
    frames = {e["frame_number"] for e in events}
    assert {e["class_name"] for e in events} == {"stop sign"}, f"only stop signs in this drive: {set(e['class_name'] for e in events)}"
    assert len(frames) >= 25, f"the stop sign is seen in most of the 43 analysed frames, got {len(frames)}"
    assert all(f % 6 == 0 for f in frames), "30 fps sampled at 5 fps analyses every 6th frame"
    assert events[0]["captured_at"].startswith("2021-12-08T10:07:16"), "capture time from the container's creation time"
    assert "frames 43" in stderr and "detections" in stderr, f"summary printed: {stderr[-500:]}"
    validator = jsonschema.Draft202012Validator(event_schema(), format_checker=jsonschema.FormatChecker())
    for e in events:
        errors = [err.message for err in validator.iter_errors(e)]
        assert not errors, f"emitted event should match the shipped schema: {errors}"


@pytest.mark.slow
def test_two_replays_give_identical_events(two_replays):
    (first, _, objects1), (second, _, objects2) = two_replays
    assert [e["detection_id"] for e in first] == [e["detection_id"] for e in second], "same ids on a second replay"
    strip = lambda evs: [{k: v for k, v in e.items() if k not in VOLATILE} for e in evs]  # noqa: E731
    assert strip(first) == strip(second), "every field but the run's own timings must be identical"
    assert len({e["detection_id"] for e in first}) == len(first), "ids are unique within a replay"
    assert strip(objects1) == strip(objects2), "the same object records, ids and track ids on a second replay"


@pytest.mark.slow
def test_the_stop_sign_drive_gives_exactly_one_stop_sign_object(two_replays):
    events, stderr, objects = two_replays[0]
    signs = [o for o in objects if o["class_name"] == "stop sign"]
    assert len(signs) == 1, f"one physical stop sign in the drive (35 detections, two boxes at frame 12): {objects}"
    sign = signs[0]
    ids = {e["track_id"] for e in events}
    assert ids == {sign["track_id"]}, f"every detection of the drive belongs to the one sign's track: {ids}"
    assert sign["detections"] == len(events), f"the object counts its {len(events)} detections: {sign}"
    best = max(events, key=lambda e: e["confidence"])
    assert (sign["best_detection_id"], sign["best_confidence"]) == (best["detection_id"], best["confidence"]), sign
    assert (sign["first_seen"], sign["last_seen"]) == (events[0]["captured_at"], events[-1]["captured_at"]), sign
    assert (sign["lat"], sign["position_status"]) == (None, "no_gps"), f"no GPS in this replay: {sign}"
    validator = jsonschema.Draft202012Validator(object_schema(), format_checker=jsonschema.FormatChecker())
    errors = [err.message for err in validator.iter_errors(sign)]
    assert not errors, f"the object record should match the shipped object schema: {errors}"
    assert "objects: 1, located 0" in stderr, f"summary counts the objects: {stderr[-600:]}"


@pytest.mark.slow
def test_the_highway_clip_gives_no_object(tmp_path, data_dir, yolov8n):
    objects = tmp_path / "objects.jsonl"
    proc = edge("replay", str(data_dir / "video" / "highway_dashcam.mp4"), "--model", str(yolov8n), "--out",
                str(tmp_path / "events.jsonl"), "--objects-out", str(objects), "--quiet", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, f"replay should succeed: {proc.stderr[-2000:]}"
    assert _events(objects) == [], f"no sign stands by this highway (one stray one-frame detection): {objects.read_text()}"
    assert "objects: 0" in proc.stderr, f"summary says none: {proc.stderr[-600:]}"


@pytest.mark.slow
def test_replay_with_a_gps_track(tmp_path, data_dir, yolov8n):
    out = tmp_path / "gps.jsonl"
    proc = edge("replay", str(data_dir / "video" / "stop_sign_approach.mp4"), "--model", str(yolov8n), "--limit", "10",
                "--gps-track", str(data_dir / "nmea" / "bt451.log"), "--gps-offset", "60", "--out", str(out), "--quiet",
                "--state-dir", str(tmp_path))
    assert proc.returncode == 0, f"replay with a track should succeed: {proc.stderr[-1500:]}"
    events = _events(out)
    assert events, "stop signs in the first 10 frames"
    assert all(e["gps_source"] == "track" for e in events), "positions come from the track"
    located = [e for e in events if e["gps_status"] == "ok"]
    for e in located:
        assert 55.7 < e["vehicle_lat"] < 55.9 and 23.4 < e["vehicle_lon"] < 23.7, f"bt451 was recorded in Lithuania: {e}"


def test_replay_of_an_image_folder_with_a_stray_file(tmp_path, data_dir, yolov8n):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("stop_sign_street.jpg", "dashcam_stop_sign.jpg"):
        (folder / name).write_bytes((data_dir / "images" / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "ev.jsonl"
    proc = edge("replay", str(folder), "--model", str(yolov8n), "--out", str(out), "--quiet", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, f"a folder with stray files still replays: {proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr, "no traceback for stray files"
    assert "notes.txt" in proc.stderr and "zz_broken.jpg" in proc.stderr, f"each skipped file named: {proc.stderr[-1500:]}"
    assert {e["class_name"] for e in _events(out)} == {"stop sign"}, "both photos give stop signs"


@pytest.mark.parametrize(
    ("case", "expected_code", "expected_text"),
    [
        ("missing_model", 3, "model file not found"),
        ("wrong_shape_model", 3, "expected output shape (1, 84, 8400)"),
        ("unreadable_video", 3, "notavideo.mp4"),
        ("truncated_video", 3, "truncated.mp4"),
        ("missing_video", 3, "nothere.mp4"),
        ("empty_folder", 3, "empty"),
        ("bad_config", 2, "detector.confidence"),
    ],
)
def test_bad_inputs_give_a_clear_message_and_no_traceback(tmp_path, data_dir, yolov8n, case, expected_code, expected_text):
    video, model, extra = str(data_dir / "video" / "stop_sign_approach.mp4"), str(yolov8n), []
    if case == "missing_model":
        model = str(tmp_path / "nope.onnx")
    elif case == "wrong_shape_model":
        model = str(make_model(tmp_path / "wrong.onnx", out_channels=10, metadata=coco_metadata(80)))
    elif case == "unreadable_video":
        video = str(tmp_path / "notavideo.mp4")
        Path(video).write_text("this is text, not a video\n" * 100)
    elif case == "truncated_video":
        video = str(data_dir / "video" / "truncated.mp4")
    elif case == "missing_video":
        video = str(tmp_path / "nothere.mp4")
    elif case == "empty_folder":
        video = str(tmp_path / "empty")
        Path(video).mkdir()
    elif case == "bad_config":
        cfg = tmp_path / "bad.toml"
        cfg.write_text("[detector]\nconfidence = 7\n")
        extra = ["--config", str(cfg)]
    proc = edge("replay", video, "--model", model, "--out", str(tmp_path / "o.jsonl"), "--quiet",
                "--state-dir", str(tmp_path), *extra)
    assert proc.returncode == expected_code, f"{case}: exit {expected_code} expected, got {proc.returncode}: {proc.stderr[-1500:]}"
    assert expected_text in proc.stderr, f"{case}: message should mention {expected_text!r}: {proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr, f"{case}: no traceback: {proc.stderr[-1500:]}"


def test_detect_prints_detections_and_reports_unreadable_images(tmp_path, data_dir, yolov8n):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    proc = edge("detect", str(data_dir / "images" / "stop_sign_closeup.jpg"), str(bad), "--model", str(yolov8n), "--json")
    assert proc.returncode == 3, f"one unreadable image → exit 3: {proc.stderr[-800:]}"
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["class_name"] for d in lines] == ["stop sign"], f"the close-up has one stop sign: {lines}"
    assert "bad.jpg: cannot read" in proc.stderr, f"the bad image is named: {proc.stderr}"


def test_model_info(data_dir):
    proc = edge("model", "info", str(data_dir / "models" / "fall-yolov8s.onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["names"] == ["Normal", "Fall"] and info["output_shape"] == [1, 6, 8400], f"read from metadata: {info}"
    assert "CPUExecutionProvider" in info["providers_available"], "providers listed"


def test_every_command_has_help():
    for cmd in (["replay"], ["detect"], ["model", "info"], ["model", "export"], ["config", "check"], ["demo"], ["run"],
                ["status"], ["queue", "stats"], ["gps", "watch"], ["gps", "inspect"], ["ingest-csv"]):
        proc = edge(*cmd, "--help", timeout=60)
        assert proc.returncode == 0 and "usage: edge" in proc.stdout, f"{cmd} --help: {proc.stderr[-300:]}"


@pytest.mark.slow
def test_demo_main_job_delivers_every_event_to_a_local_broker(data_dir, yolov8n):
    proc = edge("demo", "--model", str(yolov8n), str(data_dir / "video" / "stop_sign_approach.mp4"), timeout=300)
    assert proc.returncode == 0, f"the README's main job should succeed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
    assert "started a local Kafka-protocol broker" in proc.stdout, "no broker configured → a local Tansu"
    assert "all events delivered" in proc.stdout, f"every event reaches the topic: {proc.stdout[-800:]}"
    assert "events produced 35; on the topic 35 unique detection ids" in proc.stdout, proc.stdout[-800:]
    assert "objects made 1; on topic events.objects 1 unique object ids" in proc.stdout, proc.stdout[-800:]
