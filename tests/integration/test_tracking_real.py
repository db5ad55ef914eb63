"""The tracker on the real model's detections of the shared drives: the stop-sign approach is one stop-sign track.

The detector runs through `edge.app.run_replay` (CPU, 5 fps) into a Collector; its events are grouped by frame
and fed to the tracker with their media times. Only frames with detections reach the tracker, because events
are all a replay hands out: a frame without detections is not seen, which changes nothing here, since tracks
age by time (the next update after a gap still ends what was unseen for more than max_age_s) and finish() ends
the rest.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from edge.objects.tracker import Track, Tracker
from tests.conftest import data_root
from tests.support import Collector

MODEL = "models/yolov8n.onnx"
STOP = "stop sign"


def detect(video: str) -> list:
    """The DetectionEvents of a CPU replay of the shared `video` at 5 fps; skips without the shared data."""
    from edge.app import run_replay
    from edge.config import load_config

    data = data_root()
    missing = [p for p in (video, MODEL) if not (data / p).is_file()]
    if missing:
        pytest.skip(f"shared test data not found under {data}: {missing} (set EDGE_TEST_DATA)")
    cfg = load_config(None, env={}, overrides={
        "detector.model": str(data / MODEL), "detector.providers": ["cpu"], "source.uri": str(data / video),
        "source.inference_fps": 5.0, "vehicle.session_id": "tracking-test",
    })
    collector = Collector()
    run_replay(cfg, collector)
    return collector.items


def track(events: list, tracker: Tracker) -> tuple[list[Track], dict[str, int]]:
    """Every track that ended or was open at the end (with hits >= min_hits), and each event's track id by
    detection_id. Frames are the events' frame numbers, in order; only frames with detections are fed."""
    frames: dict[int, list] = defaultdict(list)
    for e in events:
        frames[e.frame_number].append(e)
    tracks, ids = [], {}
    for number in sorted(frames):
        es = frames[number]
        frame_ids, ended = tracker.update(
            es[0].timestamp_sec, [e.class_name for e in es], np.array([e.confidence for e in es]),
            np.array([e.pixel_u for e in es]), np.array([e.pixel_v for e in es]),
            np.array([e.bbox for e in es], dtype=float).reshape(-1, 4), es,
        )
        tracks += ended
        ids.update({e.detection_id: i for e, i in zip(es, frame_ids)})
    return tracks + tracker.finish(), ids


@pytest.mark.slow
def test_the_stop_sign_drive_gives_one_stop_sign_track():
    # given the model's detections of the drive past one stop sign (at one frame it gives two boxes for it)
    events = detect("video/stop_sign_approach.mp4")
    signs = [e for e in events if e.class_name == STOP]
    frames_with_sign = len({e.frame_number for e in signs})
    assert frames_with_sign >= 10, f"the model sees the sign in many frames: {frames_with_sign}"
    # when tracked
    tracker = Tracker()
    tracks, ids = track(events, tracker)
    # then there is exactly one stop-sign track, holding every stop-sign detection, hit once per frame
    stop_tracks = [t for t in tracks if t.class_name == STOP]
    summary = [(t.track_id, t.class_name, t.hits, len(t.members)) for t in tracks]
    assert len(stop_tracks) == 1, f"one stop-sign track with hits >= {tracker.min_hits}: {summary}"
    [sign] = stop_tracks
    assert {ids[e.detection_id] for e in signs} == {sign.track_id}, \
        f"every stop-sign detection (the duplicate box too) in track {sign.track_id}: {Counter(ids.values())}"
    assert sign.hits == frames_with_sign and len(sign.members) == len(signs), \
        f"{frames_with_sign} hits for {len(signs)} detections: {summary}"


@pytest.mark.slow
def test_the_highway_drive_gives_no_stop_sign_track():
    # given the model's detections of a highway drive (no stop sign on it)
    events = detect("video/highway_dashcam.mp4")
    # when tracked
    tracker = Tracker()
    tracks, _ = track(events, tracker)
    # then no stop-sign track (the counts per class are printed for the record)
    per_class = Counter(t.class_name for t in tracks)
    print(f"highway: {len(events)} detections, tracks per class {dict(per_class)}, dropped {tracker.dropped}")
    assert per_class[STOP] == 0, f"no stop sign on the highway: {dict(per_class)}"

