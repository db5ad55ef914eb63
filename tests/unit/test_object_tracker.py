"""edge.objects.tracker: one track per object across 5 FPS frames (far moves, growth, gaps, duplicates, classes),
for boxes and for bare points; ids deterministic; short tracks dropped and counted; finish() returns open ones."""

from __future__ import annotations

import numpy as np
import pytest

from edge.objects.tracker import Track, Tracker

DT = 0.2  # 5 FPS
STOP, LIGHT = "stop sign", "traffic light"


def box(cx: float, bottom: float, w: float, h: float | None = None) -> tuple[float, float, float, float]:
    """xyxy of a box with bottom-centre (cx, bottom)."""
    h = w if h is None else h
    return (cx - w / 2, bottom - h, cx + w / 2, bottom)


def feed(tracker: Tracker, t: float, dets: list[tuple], points: bool = False) -> tuple[list[int], list[Track]]:
    """One frame: dets are (class, confidence, xyxy) for boxes, (class, confidence, (u, v)) for points; each
    detection's payload is (t, its index)."""
    classes = [d[0] for d in dets]
    conf = np.array([d[1] for d in dets], dtype=float)
    if points:
        uv = np.array([d[2] for d in dets], dtype=float).reshape(-1, 2)
        return tracker.update(t, classes, conf, uv[:, 0], uv[:, 1], None, [(t, i) for i in range(len(dets))])
    xyxy = np.array([d[2] for d in dets], dtype=float).reshape(-1, 4)
    u, v = (xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]
    return tracker.update(t, classes, conf, u, v, xyxy, [(t, i) for i in range(len(dets))])


def run(frames: list[list[tuple]], tracker: Tracker | None = None, points: bool = False):
    """Feeds frames at 5 FPS from t=0; the ids per frame, every ended track (finish() included), the tracker."""
    tracker = tracker or Tracker()
    all_ids, ended = [], []
    for k, dets in enumerate(frames):
        ids, done = feed(tracker, k * DT, dets, points)
        all_ids.append(ids)
        ended += done
    return all_ids, ended + tracker.finish(), tracker


def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


@pytest.mark.parametrize("step", [lambda k: 50.0, lambda k: 50.0 + 10.0 * k], ids=["50px-per-frame", "accelerating"])
def test_a_box_moving_farther_than_its_width_between_frames_stays_one_track(step):
    # given a 40 px sign moving right by 50 px per frame (constant, or 10 px faster each frame)
    xs = [300.0]
    for k in range(11):
        xs.append(xs[-1] + step(k))
    boxes = [box(x, 400, 40) for x in xs]
    assert not any(overlaps(a, b) for a, b in zip(boxes, boxes[1:])), "no box overlaps the previous one"
    # when tracked
    ids, tracks, _ = run([[(STOP, 0.8, b)] for b in boxes])
    # then it is one track with a hit in every frame
    assert {i for frame in ids for i in frame} == {1}, f"every detection in track 1: {ids}"
    assert [(t.track_id, t.hits) for t in tracks] == [(1, len(boxes))], f"one track, all hits: {tracks}"


def test_a_growing_sign_drifting_to_the_image_edge_stays_one_track():
    # given an approaching sign: 15 % larger each frame, drifting right faster and faster, rising, to the edge
    x, bottom, size, frames = 1000.0, 420.0, 24.0, []
    while x + size / 2 < 1920:
        frames.append([(STOP, 0.7, box(x, bottom, size))])
        x += 4 + 0.8 * size
        bottom -= 0.15 * size
        size *= 1.15
    assert len(frames) >= 8, f"a long enough approach: {len(frames)} frames"
    # when tracked
    ids, tracks, _ = run(frames)
    # then one track
    assert {i for frame in ids for i in frame} == {1}, f"every detection in track 1: {ids}"
    assert len(tracks) == 1 and tracks[0].hits == len(frames), f"one track with a hit per frame: {tracks}"


def test_two_signs_of_one_class_side_by_side_stay_two_tracks():
    # given two 40 px stop signs 15 px apart moving right together, listed in alternating order, the left one
    # missed in frame 4
    frames = []
    for k in range(10):
        left, right = (STOP, 0.8, box(600 + 30 * k, 400, 40)), (STOP, 0.75, box(655 + 30 * k, 400, 40))
        dets = [left, right] if k % 2 == 0 else [right, left]
        frames.append([right] if k == 4 else dets)
    # when tracked
    ids, tracks, _ = run(frames)
    # then the left box is always track 1 and the right one track 2
    for k, frame in enumerate(ids):
        if k == 4:
            assert frame == [2], f"frame 4 has only the right sign, track 2: {frame}"
        else:
            want = [1, 2] if k % 2 == 0 else [2, 1]
            assert frame == want, f"frame {k}: left sign track 1, right sign track 2, got {frame}"
    assert [(t.track_id, t.hits) for t in tracks] == [(1, 9), (2, 10)], f"two tracks: {tracks}"


def test_different_classes_never_share_a_track():
    # given a stop sign and a traffic light with the same box in every frame, then the light's box labelled
    # stop sign once the stop sign is gone
    frames = [[(STOP, 0.9, box(500 + 10 * k, 300, 50)), (LIGHT, 0.9, box(500 + 10 * k, 300, 50))] for k in range(4)]
    frames.append([(LIGHT, 0.9, box(540, 300, 50))])
    # when tracked
    ids, tracks, _ = run(frames)
    # then each class keeps its own track
    assert ids[:4] == [[1, 2]] * 4 and ids[4] == [2], f"stop sign track 1, traffic light track 2: {ids}"
    assert {t.track_id: t.class_name for t in tracks} == {1: STOP, 2: LIGHT}, f"one class per track: {tracks}"
    # and a detection of another class where a track is starts its own track
    tracker = Tracker()
    feed(tracker, 0.0, [(STOP, 0.9, box(500, 300, 50))])
    ids, _ = feed(tracker, DT, [(LIGHT, 0.9, box(500, 300, 50))])
    assert ids == [2], f"a traffic light on a stop sign's track starts track 2: {ids}"


@pytest.mark.parametrize("missed", [1, 2])
def test_one_or_two_missed_frames_do_not_split_a_track(missed: int):
    # given a moving sign whose detection is missed for `missed` frames (empty frames passed)
    frames = [[(STOP, 0.8, box(400 + 25 * k, 500, 40))] for k in range(8)]
    for k in range(3, 3 + missed):
        frames[k] = []
    # when tracked
    ids, tracks, _ = run(frames)
    # then one track, hit in the frames that had the sign
    assert {i for frame in ids for i in frame} == {1}, f"one track across the gap of {missed}: {ids}"
    assert len(tracks) == 1 and tracks[0].hits == 8 - missed, f"hits only where seen: {tracks}"


def test_a_gap_longer_than_max_age_splits_and_ends_the_first_track():
    tracker = Tracker(max_age_s=2.0)
    # given a sign seen 3 frames, then 11 empty frames (2.2 s since last seen), then seen again in place
    frames = [[(STOP, 0.8, box(400, 500, 40))]] * 3 + [[]] * 11 + [[(STOP, 0.8, box(400, 500, 40))]] * 2
    ended_at = {}
    for k, dets in enumerate(frames):
        ids, ended = feed(tracker, k * DT, dets)
        ended_at.update({t.track_id: (k, t) for t in ended})
        if k == len(frames) - 2:
            reseen = ids
    # then the first track ended as soon as it was unseen for more than 2 s, and the sign got a new track
    assert list(ended_at) == [1], f"track 1 ended during the input: {ended_at}"
    k, first = ended_at[1]
    assert k == 13, f"ended at frame 13 (2.2 s after its last frame at 0.4 s), got {k}"
    assert (first.hits, first.first_seen, first.last_seen) == (3, 0.0, pytest.approx(0.4)), f"track 1: {first}"
    assert first.members == [(0.0, 0), (DT, 0), (2 * DT, 0)], f"track 1 holds its three payloads: {first.members}"
    assert reseen == [2], f"after the gap the sign is track 2: {reseen}"
    assert [t.track_id for t in tracker.finish()] == [2], "track 2 is still open at the end"


def test_a_duplicate_lower_confidence_box_joins_the_track():
    # given the drive's frame where the model gives two boxes for one sign (one weak and taller)
    tracker = Tracker()
    feed(tracker, 0.0, [(STOP, 0.80, (852, 196, 888, 235))])
    ids, _ = feed(tracker, DT, [(STOP, 0.25, (868, 200, 912, 259)), (STOP, 0.83, (872, 200, 911, 243))])
    feed(tracker, 2 * DT, [(STOP, 0.76, (882, 203, 921, 244))])
    # then both boxes are in track 1, and the duplicate counts no hit
    assert ids == [1, 1], f"strong box and its duplicate both in track 1: {ids}"
    [track] = tracker.finish()
    assert track.hits == 3, f"three frames matched, the duplicate not counted: {track}"
    assert track.members == [(0.0, 0), (DT, 1), (DT, 0), (2 * DT, 0)], f"matched first, then its duplicate: {track}"
    # and two boxes for a new object in its first frame start one track, owned by the stronger box
    tracker = Tracker(min_hits=1)
    ids, _ = feed(tracker, 0.0, [(STOP, 0.3, (100, 100, 140, 150)), (STOP, 0.9, (102, 101, 141, 140))])
    assert ids == [1, 1], f"a new object's duplicate joins its track: {ids}"
    [track] = tracker.finish()
    assert (track.hits, track.members) == (1, [(0.0, 1), (0.0, 0)]), f"one hit, stronger box first: {track}"


def test_tracks_with_fewer_than_min_hits_are_dropped_and_counted():
    tracker = Tracker(min_hits=2, max_age_s=1.0)
    # given a one-frame false positive, and a sign seen twice
    ids, _ = feed(tracker, 0.0, [(LIGHT, 0.4, box(100, 100, 20)), (STOP, 0.9, box(800, 300, 40))])
    feed(tracker, DT, [(STOP, 0.9, box(810, 300, 40))])
    # when time passes beyond max_age_s
    _, ended = feed(tracker, 2.0, [])
    # then only the sign's track is returned; the false positive was counted as dropped
    assert ids == [1, 2], f"ids in order of creation: {ids}"
    assert [(t.track_id, t.hits) for t in ended] == [(2, 2)], f"only the two-hit track ends visibly: {ended}"
    assert tracker.dropped == 1, f"the one-hit track was dropped and counted: {tracker.dropped}"
    # and one still open at the end is dropped by finish() too
    feed(tracker, 2.2, [(STOP, 0.9, box(500, 300, 40))])
    assert tracker.finish() == [] and tracker.dropped == 2, f"finish drops the one-hit track: {tracker.dropped}"


def test_points_without_boxes_are_tracked():
    # given CSV-like rows: a sign moving 40 px per frame, a light standing still 300 px away, one frame missed,
    # and a second point 3 px from the sign in frame 2 (a duplicate)
    frames = []
    for k in range(8):
        dets = [(LIGHT, 0.6, (300.0, 200.0))] + ([] if k == 5 else [(STOP, 0.8, (600.0 + 40 * k, 400.0 - 5 * k))])
        frames.append(dets)
    frames[2].append((STOP, 0.3, (683.0, 390.0)))
    # when tracked as points (xyxy None) with the default scale (80 px)
    ids, tracks, _ = run(frames, Tracker(), points=True)
    # then the light is track 1, the sign track 2, the duplicate joins the sign
    assert ids[0] == [1, 2] and ids[5] == [1] and ids[2] == [1, 2, 2], f"light 1, sign 2: {ids}"
    assert all(frame[:2] == [1, 2] for k, frame in enumerate(ids) if k != 5), f"same ids every frame: {ids}"
    assert [(t.track_id, t.class_name, t.hits) for t in tracks] == [(1, LIGHT, 8), (2, STOP, 7)], f"{tracks}"
    # and a point far beyond the scale starts a new track
    tracker = Tracker(image_width=1000)  # scale 80 px
    feed(tracker, 0.0, [(STOP, 0.8, (100.0, 100.0))], points=True)
    ids, _ = feed(tracker, DT, [(STOP, 0.8, (400.0, 100.0))], points=True)
    assert ids == [2], f"a point 300 px away (scale 80 px) is another object: {ids}"


def scene(seed: int) -> list[list[tuple]]:
    """Several signs and lights crossing, with misses and weak duplicates, from a fixed seed."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform([100, 200, 20], [1700, 800, 60], size=(6, 3))
    velocity = rng.uniform([-60, -20, 0], [60, 20, 3], size=(6, 3))
    frames = []
    for k in range(30):
        dets = []
        for j, (s, vel) in enumerate(zip(starts, velocity)):
            if rng.random() < 0.15:
                continue
            x, bottom, size = s + vel * k
            dets.append((STOP if j % 2 else LIGHT, float(rng.uniform(0.2, 0.95)), box(x, bottom, size)))
            if rng.random() < 0.1:
                dets.append((dets[-1][0], 0.2, box(x + 2, bottom + 3, size * 1.1)))
        frames.append(dets)
    return frames


def test_the_same_input_gives_the_same_ids():
    frames = scene(7)
    ids_a, tracks_a, tracker_a = run(frames)
    ids_b, tracks_b, tracker_b = run(frames)
    assert ids_a == ids_b, "two runs over the same frames give the same ids"
    assert tracks_a == tracks_b and tracker_a.dropped == tracker_b.dropped, "and the same tracks and drops"
    assert all(i > 0 for frame in ids_a for i in frame), f"every detection has a track id: {ids_a}"
    assert len(tracks_a) == 6, f"six objects, six tracks: {[(t.track_id, t.class_name, t.hits) for t in tracks_a]}"
    assert sorted({i for frame in ids_a for i in frame}) == list(range(1, max(max(f) for f in ids_a if f) + 1)), \
        "ids are 1, 2, 3 ... without holes"


def test_finish_returns_open_tracks_in_id_order():
    tracker = Tracker()
    # given three objects: two seen twice, one once
    first = [(STOP, 0.9, box(800, 300, 40)), (LIGHT, 0.9, box(200, 100, 20)), (STOP, 0.9, box(100, 500, 30))]
    feed(tracker, 0.0, first)
    feed(tracker, DT, [(STOP, 0.9, box(100, 500, 30)), (STOP, 0.9, box(805, 300, 41))])
    # when the input ends
    tracks = tracker.finish()
    # then the two with two hits come back in id order, with their times
    assert [(t.track_id, t.hits) for t in tracks] == [(1, 2), (3, 2)], f"tracks 1 and 3: {tracks}"
    assert all((t.first_seen, t.last_seen) == (0.0, DT) for t in tracks), f"first and last seen: {tracks}"
    assert tracker.dropped == 1 and tracker.finish() == [], "the one-hit light dropped; nothing left open"
    ids, _ = feed(tracker, 0.6, [(STOP, 0.9, box(800, 300, 40))])
    assert ids == [4], f"ids keep counting after finish: {ids}"


def test_bad_input_is_refused():
    tracker = Tracker()
    feed(tracker, 1.0, [])
    with pytest.raises(ValueError, match="goes back"):
        feed(tracker, 0.5, [])
    with pytest.raises(ValueError, match="2 classes but 1 confidences"):
        tracker.update(1.0, [STOP, STOP], np.array([0.5]), np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="not finite"):
        tracker.update(1.0, [STOP], np.array([0.5]), np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="min_hits"):
        Tracker(min_hits=0)
