"""edge.objects.tracker against supervision's ByteTrack on a drive's real detections: tracks per class, time per frame.

    .venv/bin/python bench/tracking_compare.py [--video V] [--model M] [--rounds N]

Needs supervision with `sv.ByteTrack` (0.26.x; 0.27+ moved it to the `trackers` package): install it for the
run only. The detector runs once (CPU, 5 fps, through edge.app.run_replay); both trackers then get every
analysed frame, empty ones included, because ByteTrack ages its tracks by frame count, not time. The analysed
frames are taken as k / fps for k < the replay's frame count (the sampler's grid; every event's time is checked
to lie on it). ByteTrack is set up to match: 5 fps, 2 s lost-track buffer, tracks shown from 2 frames. It is
class-agnostic: its tracks are given the class of their first detection. Timings are the median of `rounds`
passes, interleaved, since this machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from edge.app import run_replay
from edge.config import load_config
from edge.objects.tracker import Tracker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FPS = 5.0


def frames_of(video: str, model: str) -> list[tuple[float, list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Every analysed frame: (time, classes, confidences, xyxy, bottom-centres), empty frames included."""
    cfg = load_config(None, env={}, overrides={
        "detector.model": model, "detector.providers": ["cpu"], "source.uri": video,
        "source.inference_fps": FPS, "vehicle.session_id": "bench-tracking",
    })
    events: list = []
    result = run_replay(cfg, events.extend)
    by_step: dict[int, list] = defaultdict(list)
    for e in events:
        step = round(e.timestamp_sec * FPS)
        assert abs(step / FPS - e.timestamp_sec) < 1e-3, f"event at {e.timestamp_sec} s is off the {FPS} fps grid"
        by_step[step].append(e)
    frames = []
    for step in range(max(result.stats.frames, max(by_step, default=-1) + 1)):
        es = by_step.get(step, [])
        xyxy = np.array([e.bbox for e in es], dtype=float).reshape(-1, 4)
        uv = np.array([(e.pixel_u, e.pixel_v) for e in es], dtype=float).reshape(-1, 2)
        frames.append((step / FPS, [e.class_name for e in es], np.array([e.confidence for e in es]), xyxy, uv))
    return frames


def run_ours(frames: list) -> tuple[Counter, str, float]:
    """Tracks per class (hits >= min_hits), a note, and seconds for the whole pass."""
    tracker = Tracker()
    tracks = []
    start = time.perf_counter()
    for t, classes, conf, xyxy, uv in frames:
        tracks += tracker.update(t, classes, conf, uv[:, 0], uv[:, 1], xyxy)[1]
    tracks += tracker.finish()
    elapsed = time.perf_counter() - start
    note = f"{tracker.dropped} dropped below min_hits; every detection gets an id"
    return Counter(tr.class_name for tr in tracks), note, elapsed


def run_bytetrack(frames: list, sv) -> tuple[Counter, str, float]:  # noqa: ANN001 - the supervision module
    """Tracks per class (ids returned in >= 2 frames), a note, and seconds for the whole pass."""
    tracker = sv.ByteTrack(frame_rate=int(FPS), lost_track_buffer=60, minimum_consecutive_frames=2)
    names: dict[str, int] = {}
    seen: dict[int, list[int]] = defaultdict(list)
    start = time.perf_counter()
    for _, classes, conf, xyxy, _ in frames:
        class_id = np.array([names.setdefault(c, len(names)) for c in classes], dtype=int)
        out = tracker.update_with_detections(sv.Detections(xyxy=xyxy, confidence=conf, class_id=class_id))
        for tid, cid in zip(out.tracker_id.tolist(), out.class_id.tolist()):
            seen[tid].append(cid)
    elapsed = time.perf_counter() - start
    by_id = {v: k for k, v in names.items()}
    kept = sum(len(cids) for cids in seen.values())
    note = f"{len(seen)} ids in all; {kept} of {sum(len(f[1]) for f in frames)} detections returned with an id"
    return Counter(by_id[cids[0]] for cids in seen.values() if len(cids) >= 2), note, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(DATA / "video" / "stop_sign_approach.mp4"))
    ap.add_argument("--model", default=str(DATA / "models" / "yolov8n.onnx"))
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    import supervision as sv  # only for this bench: not a dependency of the project

    frames = frames_of(args.video, args.model)
    n_dets = sum(len(f[1]) for f in frames)
    print(f"{Path(args.video).name}: {len(frames)} analysed frames at {FPS:g} fps, {n_dets} detections; "
          f"supervision {sv.__version__}")
    ours, theirs = [], []
    for _ in range(args.rounds):
        counts_ours, note_ours, s = run_ours(frames)
        ours.append(s)
        counts_theirs, note_theirs, s = run_bytetrack(frames, sv)
        theirs.append(s)
    for name, counts, note, times in (("edge.objects.tracker", counts_ours, note_ours, ours),
                                      ("sv.ByteTrack", counts_theirs, note_theirs, theirs)):
        per_frame_us = statistics.median(times) / len(frames) * 1e6
        print(f"  {name:<21} tracks per class {dict(counts)}, {per_frame_us:.1f} µs per frame (median of "
              f"{args.rounds}); {note}")


if __name__ == "__main__":
    main()
