"""`edge replay` arguments that cannot work are usage errors (exit 2); a track that misses the video is said up front;
image-folder frames are dated and named by their own photo."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.app import run_replay
from edge.cli import main
from edge.config import ConfigError, load_config
from edge.detect.yolo import Letterbox
from edge.gps import TrackProvider, load_track
from edge.types import Detections

DATA = Path(os.environ.get("EDGE_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
VIDEO = DATA / "video" / "stop_sign_approach.mp4"
TRACK = DATA / "nmea" / "bt451.log"  # a 2009 drive (gpsd's regression capture)


class OneBox:
    """A detector stand-in: one stop sign per frame, no model."""

    model_name, provider, classes = "fake.onnx", "cpu", ("stop sign",)

    def preprocess(self, image, out=None):  # noqa: ANN001, ANN201
        return image, Letterbox(4, 4, 1.0, 0, 0)

    def infer(self, tensor):  # noqa: ANN001, ANN201
        return tensor

    def postprocess(self, output, geometry):  # noqa: ANN001, ANN201
        return Detections(np.array([[0, 0, 2, 2]], np.float32), np.array([0.9], np.float32), np.array([0]), ("stop sign",))

    def set_thresholds(self, conf, iou, classes):  # noqa: ANN001, ANN201
        pass


def usage_error(capsys, *args: str) -> str:
    """Runs `edge replay VIDEO ARGS` and returns stderr; asserts argparse refused it with exit 2."""
    with pytest.raises(SystemExit) as info:
        main(["replay", str(VIDEO), "--model", "/nonexistent.onnx", "-q", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2, f"usage error expected (exit 2), got {info.value.code}: {err}"
    return err


def test_gps_offset_nan_is_a_usage_error(capsys):
    err = usage_error(capsys, "--gps-track", str(TRACK), "--gps-offset", "nan")
    assert "--gps-offset: not a finite number" in err, err


@pytest.mark.parametrize("value", ["inf", "-inf", "abc"])
def test_gps_offset_must_be_a_finite_number(capsys, value):
    err = usage_error(capsys, "--gps-track", str(TRACK), "--gps-offset", value)
    assert "--gps-offset" in err, err


def test_start_time_and_gps_offset_exclude_each_other(capsys):
    err = usage_error(capsys, "--gps-track", str(TRACK), "--gps-offset", "5", "--start-time", "2020-01-01T00:00:00Z")
    assert "not allowed with" in err, err


def test_out_name_longer_than_the_file_system_allows(tmp_path, capsys):
    err = usage_error(capsys, "--out", str(tmp_path / ("a" * 256)))
    assert "file name of 256 bytes" in err, err


@pytest.mark.parametrize("out", ["{tmp}/missing/ev.jsonl", "{tmp}", "", "{tmp}/" + "d" * 300 + "/ev.jsonl"])
def test_out_that_cannot_be_created_is_a_usage_error(tmp_path, capsys, out):
    err = usage_error(capsys, "--out", out.format(tmp=tmp_path))
    assert "--out" in err, err


def test_out_of_255_bytes_is_accepted(tmp_path, capsys):
    # given the longest name ext4 allows, then parsing goes on to the model (which does not exist: exit 3)
    code = main(["replay", str(VIDEO), "--model", str(tmp_path / "none.onnx"), "-q", "--out", str(tmp_path / ("a" * 255))])
    assert code == 3, f"the name is fine; the missing model is what stops it: {code} {capsys.readouterr().err}"


def test_run_replay_refuses_offset_with_start_time_or_nan():
    cfg = load_config(None, env={}, overrides={"source.uri": str(VIDEO), "gps.provider": "track", "gps.track": str(TRACK)})
    for kwargs in ({"gps_offset": 5.0, "start_time": 1.0e9}, {"gps_offset": float("nan")}):
        with pytest.raises(ConfigError) as info:
            run_replay(cfg, lambda events: None, detector=OneBox(), limit=1, **kwargs)
        assert info.value.origin == "--gps-offset", f"{kwargs}: {info.value}"


def test_track_that_misses_the_video_is_warned_before_the_run(caplog):
    # given the 2009 track and the video placed in 2021 (its container's creation time)
    cfg = load_config(None, env={}, overrides={"source.uri": str(VIDEO), "gps.provider": "track", "gps.track": str(TRACK)})
    events = []
    with caplog.at_level(logging.WARNING):
        run_replay(cfg, events.extend, detector=OneBox(), limit=2)
    # then every event has null GPS, and the log said why, once, naming both spans and the remedy
    assert events and all(e.gps_status == "no_fix" and e.vehicle_lat is None for e in events), events[:1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "track" in r.getMessage()]
    assert len(warnings) == 1, f"one warning expected: {warnings}"
    assert "does not overlap the track" in warnings[0] and "--gps-offset" in warnings[0], warnings[0]


def test_track_that_covers_the_video_is_not_warned(caplog):
    cfg = load_config(None, env={}, overrides={"source.uri": str(VIDEO), "gps.provider": "track", "gps.track": str(TRACK)})
    events = []
    with caplog.at_level(logging.WARNING):
        run_replay(cfg, events.extend, detector=OneBox(), limit=2, gps_offset=0.5)  # fixes 0 to 2.5 s
    assert events and all(e.gps_status == "ok" for e in events), events[:1]
    assert not [r for r in caplog.records if "track" in r.getMessage()], caplog.text


def test_frames_outside_the_track_are_warned_once_per_replay(caplog):
    # given a provider placed so that the video starts an hour after the track ends (no up-front check here)
    track = load_track(TRACK)
    provider = TrackProvider(track, track_start=track.last.time - 1.0)
    cfg = load_config(None, env={}, overrides={"source.uri": str(VIDEO)})
    with caplog.at_level(logging.WARNING, logger="edge.gps"):
        run_replay(cfg, lambda events: None, detector=OneBox(), limit=8, gps=provider)
    warned = [r.getMessage() for r in caplog.records if "outside the track" in r.getMessage()]
    assert len(warned) == 1, f"one warning for the frames past the track's end: {warned}"


def test_image_folder_frames_are_dated_and_named_by_their_photo(tmp_path):
    # given a folder with a Nikon photo whose GPS time is 2008-10-23T14:27:07.24Z, copied today (new mtime)
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(DATA / "exif" / "gps_DSCN0010.jpg", folder / "gps_DSCN0010.jpg")
    cfg = load_config(None, env={}, overrides={"source.uri": str(folder), "gps.provider": "exif"})
    events = []
    run_replay(cfg, events.extend, detector=OneBox())
    # then its events carry the photo's time, its file name, and a fix of age 0 (the same instant)
    assert events, "one detection per frame"
    e = events[0]
    assert e.captured_at == "2008-10-23T14:27:07.240Z", f"captured_at is the photo's, not the copy's mtime: {e}"
    assert e.source == "frames/gps_DSCN0010.jpg", f"source names the file: {e.source}"
    assert (e.gps_status, e.gps_age_ms) == ("ok", 0), e
