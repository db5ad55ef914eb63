"""A deterministic ByteTrack-style multi-object tracker for one source's boxes or bottom-centre points at ~5 FPS.

Why it is built this way:

* Motion. At 5 FPS an approaching sign moves tens of pixels and grows between analysed frames, so a box often
  does not overlap its last position. Each track therefore keeps a constant-velocity model of its box (centre x,
  bottom y, width, height, per second; for points just u, v), a least-squares line through its last
  `motion_window` observations, and is compared with a frame's detections at its position predicted to that
  frame's time, extrapolated from the last observation (not the fitted line's value, which lags an accelerating
  sign). A track seen once has no velocity yet: it is predicted where it was.
* Cost, boxes. 1 − IoU of the predicted box with the detection while they overlap (range [0, 1)); when they do
  not, 1 + the distance between predicted and detected bottom-centres over a scale, plus a size term
  1 − sqrt(smaller area / larger area). The scale is the larger box diagonal, widened the longer the track was
  not seen (× (1 + Δt / gap_growth_s)) and the faster it moves (+ motion_slack × speed × Δt), because the
  prediction's error grows with both. Overlap always ranks before distance. A non-overlapping pair whose
  distance term exceeds `max_distance` is rejected (the gate); an overlapping one is always admissible.
* Cost, points (no box; rows of a CSV). The pixel distance over the same kind of scale, with `point_scale`
  (default 8 % of `image_width`, else 80 px) in place of the diagonal; gated at `max_distance`.
* Two stages as in ByteTrack: detections with confidence ≥ `high_confidence` are matched first against every
  live track of their class; the others then only against the tracks still unmatched, so a weak box can extend a
  track the strong ones left alone but never takes a track from a strong box. Each stage is a minimum-cost
  assignment (a small Hungarian method, per class) that first matches as many admissible pairs as it can:
  greedy lowest-cost-first fails exactly in the 5 FPS case, where two new side-by-side signs move most of a
  width and each detection is nearer the neighbour's unmoved prediction than its own.
* Duplicates. The model sometimes gives two boxes for one object (one weak). A detection left unmatched that
  covers, with its class, ≥ `duplicate_overlap` of the smaller box of a detection already assigned in this frame
  (points: within `duplicate_radius` px) joins that detection's track without counting a hit or moving the
  motion model, so a duplicate low-confidence box does not split a track nor start a new one.
* Births. The remaining detections start new tracks; they are visited strongest first, so that a duplicate
  among them joins the stronger box's track, and numbered 1, 2, 3 ... in order of creation, within a frame in
  detection order.
* Ending. A track not matched for more than `max_age_s` ends at the next update (one still tentative, seen fewer
  than `min_hits` times, after `tentative_age_s`, as ByteTrack deletes unconfirmed tracks early); one or two missed frames at
  5 FPS (0.2–0.6 s) do not end it. Ended tracks with fewer than `min_hits` matched frames are dropped (counted in
  `dropped`): a single-frame false positive makes no track.
* Determinism: no randomness; tracks are always visited in id order and ties are broken by id and index.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

DEFAULT_POINT_SCALE_PX = 80.0
MIN_BOX_SCALE_PX = 24.0  # the smallest scale a box's distance is measured in (see _cost)
POINT_SCALE_OF_WIDTH = 0.08  # a sign at 5 FPS moves a few percent of the image width per frame
# frame times made as k / fps are off by ~1e-15: a track k frames old must not end a frame early
TIME_TOLERANCE_S = 1e-6


@dataclass
class Track:
    """One object followed across frames: the payloads of its detections, in order, and when it was seen."""

    track_id: int
    class_name: str
    members: list = field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    hits: int = 0  # frames in which a detection was matched to it (a duplicate in the same frame not counted)


class _Det(NamedTuple):
    index: int
    class_name: str
    confidence: float
    x: float  # bottom-centre
    y: float
    w: float  # nan for a point
    h: float
    payload: Any

    @property
    def is_box(self) -> bool:
        return not math.isnan(self.w)


class _Obs(NamedTuple):
    t: float
    x: float
    y: float
    w: float
    h: float


class _Prediction(NamedTuple):
    x: float
    y: float
    w: float
    h: float
    speed: float  # px/s of the bottom-centre
    dt: float  # s since the track was last seen


class _Live:
    """A track still open, with the observations its motion model is fitted from."""

    __slots__ = ("track", "history", "velocity")

    def __init__(self, track: Track, window: int):
        self.track = track
        self.history: deque[_Obs] = deque(maxlen=window)
        self.velocity = (0.0, 0.0, 0.0, 0.0)

    def observe(self, t: float, det: _Det) -> None:
        self.history.append(_Obs(t, det.x, det.y, det.w, det.h))
        # fitted once per observation, not per prediction: a track is predicted at every frame it lives through
        self.velocity = _velocity(self.history)

    def predict(self, t: float) -> _Prediction:
        last = self.history[-1]
        dt = t - last.t
        vx, vy, vw, vh = self.velocity
        w, h = last.w, last.h
        if not math.isnan(w):  # a shrinking extrapolation is kept to at least half the last size
            w, h = max(w + vw * dt, 0.5 * w), max(h + vh * dt, 0.5 * h)
        return _Prediction(last.x + vx * dt, last.y + vy * dt, w, h, math.hypot(vx, vy), dt)


def _velocity(history: Sequence[_Obs]) -> tuple[float, float, float, float]:
    """Per-second slopes of x, y, w, h: least squares over the observations (zeros with fewer than two)."""
    if len(history) < 2:
        return 0.0, 0.0, 0.0, 0.0
    t_mean = sum(o.t for o in history) / len(history)
    den = sum((o.t - t_mean) ** 2 for o in history)
    if den <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    n = 2 if any(math.isnan(o.w) for o in history) else 4  # points have no size to fit
    slopes = [0.0, 0.0, 0.0, 0.0]
    for k in range(n):
        mean = sum(o[k + 1] for o in history) / len(history)
        slopes[k] = sum((o.t - t_mean) * (o[k + 1] - mean) for o in history) / den
    return slopes[0], slopes[1], slopes[2], slopes[3]


def _detections(
    t: float,
    classes: Sequence[str],
    confidence: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    xyxy: np.ndarray | None,
    payloads: Sequence | None,
) -> list[_Det]:
    """One frame's detections, checked: equal lengths, finite numbers, xyxy of shape (n, 4) when given."""
    n = len(classes)
    conf, us, vs = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (confidence, u, v))
    if not (len(conf) == len(us) == len(vs) == n) or (payloads is not None and len(payloads) != n):
        raise ValueError(f"Tracker.update: {n} classes but {len(conf)} confidences, {len(us)} u, {len(vs)} v"
                         f"{'' if payloads is None else f', {len(payloads)} payloads'}")
    if xyxy is None:
        sizes = np.full((n, 2), np.nan)  # points: no box
        numbers = (conf, us, vs)
    else:
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4) if n else np.zeros((0, 4))
        if len(boxes) != n:
            raise ValueError(f"Tracker.update: {n} classes but {len(boxes)} boxes")
        sizes = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.0)
        numbers = (conf, us, vs, boxes)
    if not all(np.isfinite(a).all() for a in numbers):
        raise ValueError(f"Tracker.update: a detection at t={t} has a coordinate or confidence that is not finite")
    rows = zip(classes, conf.tolist(), us.tolist(), vs.tolist(), sizes.tolist())
    return [_Det(i, str(c), p, x, y, w, h, (t, i) if payloads is None else payloads[i])
            for i, (c, p, x, y, (w, h)) in enumerate(rows)]


def _box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return x - w / 2, y - h, x + w / 2, y


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _assign(costs: list[list[float | None]]) -> list[tuple[int, int]]:
    """(row, column) pairs of a minimum-cost assignment that first maximises the number of admissible pairs
    (None: gated out). The Hungarian method (shortest augmenting paths with potentials), O(n² m); rows and
    columns are visited in order, so equal costs resolve the same way every time."""
    n_rows, n_cols = len(costs), len(costs[0]) if costs else 0
    if not n_rows or not n_cols:
        return []
    transposed = n_rows > n_cols
    if transposed:  # the method wants rows <= columns
        costs = [list(col) for col in zip(*costs)]
        n_rows, n_cols = n_cols, n_rows
    # a gated pair costs more than any set of admissible ones, so it is used only where nothing else is left
    finite = [c for row in costs for c in row if c is not None]
    big = (max(finite, default=0.0) + 1.0) * (n_rows + 1)
    a = [[big if c is None else c for c in row] for row in costs]
    u, v = [0.0] * (n_rows + 1), [0.0] * (n_cols + 1)
    owner, way = [0] * (n_cols + 1), [0] * (n_cols + 1)  # owner[j]: the row (1-based) holding column j
    for i in range(1, n_rows + 1):
        owner[0], j0 = i, 0
        min_to, used = [math.inf] * (n_cols + 1), [False] * (n_cols + 1)
        while owner[j0]:
            used[j0], i0, delta, j1 = True, owner[j0], math.inf, 0
            for j in range(1, n_cols + 1):
                if not used[j]:
                    reduced = a[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < min_to[j]:
                        min_to[j], way[j] = reduced, j0
                    if min_to[j] < delta:
                        delta, j1 = min_to[j], j
            for j in range(n_cols + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_to[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            owner[j0], j0 = owner[j1], j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, n_cols + 1) if owner[j] and costs[owner[j] - 1][j - 1] is not None]
    return sorted((c, r) if transposed else (r, c) for r, c in pairs)


class Tracker:
    """Assigns each detection of a frame to a track; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_age_s: float = 2.0,
        high_confidence: float = 0.5,
        min_hits: int = 2,
        image_width: int | None = None,
        point_scale: float | None = None,
        max_distance: float = 1.0,
        duplicate_overlap: float = 0.6,
        duplicate_radius: float | None = None,
        motion_window: int = 4,
        gap_growth_s: float = 1.0,
        motion_slack: float = 0.5,
        tentative_age_s: float = 0.5,
    ):
        if point_scale is None:
            point_scale = POINT_SCALE_OF_WIDTH * image_width if image_width else DEFAULT_POINT_SCALE_PX
        checks = {  # name: (value, in range)
            "max_age_s": (max_age_s, max_age_s >= 0), "high_confidence": (high_confidence, 0 <= high_confidence <= 1),
            "min_hits": (min_hits, min_hits >= 1), "point_scale": (point_scale, point_scale > 0),
            "max_distance": (max_distance, max_distance > 0),
            "duplicate_overlap": (duplicate_overlap, 0 < duplicate_overlap <= 1),
            "duplicate_radius": (duplicate_radius, duplicate_radius is None or duplicate_radius >= 0),
            "motion_window": (motion_window, motion_window >= 2), "gap_growth_s": (gap_growth_s, gap_growth_s > 0),
            "motion_slack": (motion_slack, motion_slack >= 0), "tentative_age_s": (tentative_age_s, tentative_age_s >= 0),
        }
        bad = [f"{name}={value!r}" for name, (value, ok) in checks.items() if not ok]
        if bad:
            raise ValueError(f"Tracker: out of range: {', '.join(bad)}")
        self.max_age_s, self.high_confidence, self.min_hits = float(max_age_s), float(high_confidence), int(min_hits)
        self.point_scale, self.max_distance = float(point_scale), float(max_distance)
        self.duplicate_overlap = float(duplicate_overlap)
        # a model's second point for one object lies within a few pixels; a tenth of the match scale is that
        self.duplicate_radius = 0.1 * self.point_scale if duplicate_radius is None else float(duplicate_radius)
        self.motion_window, self.gap_growth_s, self.motion_slack = int(motion_window), gap_growth_s, motion_slack
        self.tentative_age_s = min(float(tentative_age_s), self.max_age_s)
        self.dropped = 0  # ended or finished tracks with fewer than min_hits hits
        self._live: dict[int, _Live] = {}
        self._next_id = 1
        self._last_t = -math.inf

    def update(
        self,
        t: float,
        classes: Sequence[str],
        confidence: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        xyxy: np.ndarray | None = None,
        payloads: Sequence | None = None,
    ) -> tuple[list[int], list[Track]]:
        """One analysed frame at time t (seconds, not decreasing; frames without detections should be passed
        too, with empty arrays, so tracks can age). u, v: bottom-centre of each detection (for boxes, that of
        its xyxy row). Without payloads a track's members are (t, index) pairs. Returns the track id of each
        detection (same order), and the tracks that ended by time t (not seen for more than max_age_s) with
        hits >= min_hits, in track_id order; shorter ones are dropped and counted in `dropped`."""
        t = float(t)
        if not math.isfinite(t) or t < self._last_t:
            raise ValueError(f"Tracker.update: time {t!r} is not finite or goes back (last {self._last_t!r})")
        dets = _detections(t, classes, confidence, u, v, xyxy, payloads)
        self._last_t = t
        ended = self._expire(t)
        live = [self._live[k] for k in sorted(self._live)]
        strong = [d for d in dets if d.confidence >= self.high_confidence]
        weak = [d for d in dets if d.confidence < self.high_confidence]
        pairs = self._match(t, live, strong)
        taken = {lv.track.track_id for lv, _ in pairs}
        pairs += self._match(t, [lv for lv in live if lv.track.track_id not in taken], weak)
        assigned: list[tuple[_Det, _Live]] = []
        for lv, det in sorted(pairs, key=lambda p: p[1].index):
            lv.observe(t, det)
            lv.track.members.append(det.payload)
            lv.track.last_seen, lv.track.hits = t, lv.track.hits + 1
            assigned.append((det, lv))
        self._births_and_duplicates(t, dets, assigned)
        ids = [0] * len(dets)
        for det, lv in assigned:
            ids[det.index] = lv.track.track_id
        return ids, ended

    def live_ids(self) -> set[int]:
        """Ids of the tracks still open."""
        return set(self._live)

    def finish(self) -> list[Track]:
        """End of input: every open track with hits >= min_hits, in track_id order (shorter ones are counted in
        `dropped`); the tracker is then empty (ids keep counting)."""
        done = [self._live[k].track for k in sorted(self._live)]
        self._live.clear()
        kept = [tr for tr in done if tr.hits >= self.min_hits]
        self.dropped += len(done) - len(kept)
        return kept

    def _expire(self, t: float) -> list[Track]:
        ended = []
        for key in sorted(self._live):
            track = self._live[key].track
            # ByteTrack's tentative tracks: not yet seen min_hits times, they go sooner (a burst of false positives
            # must not leave every later frame matching against all of them)
            age = self.max_age_s if track.hits >= self.min_hits else self.tentative_age_s
            if t - track.last_seen > age + TIME_TOLERANCE_S:
                del self._live[key]
                if track.hits >= self.min_hits:
                    ended.append(track)
                else:
                    self.dropped += 1
        return ended

    def _births_and_duplicates(self, t: float, dets: list[_Det], assigned: list[tuple[_Det, _Live]]) -> None:
        """Gives every unassigned detection a track: a duplicate joins the track of the detection it duplicates
        (strongest first, so a weak twin joins a strong box), the others start tracks, numbered in detection
        order. Appends to `assigned`."""
        done = {det.index for det, _ in assigned}
        births: list[tuple[_Det, _Live]] = []
        for det in sorted((d for d in dets if d.index not in done), key=lambda d: (-d.confidence, d.index)):
            lv = self._duplicate_of(det, assigned)
            if lv is None:
                lv = _Live(Track(0, det.class_name, [det.payload], t, t, 1), self.motion_window)
                lv.observe(t, det)
                births.append((det, lv))
            else:  # a duplicate: it joins, but counts no hit and does not move the motion model
                lv.track.members.append(det.payload)
            assigned.append((det, lv))
        for _, lv in sorted(births, key=lambda b: b[0].index):
            lv.track.track_id = self._next_id
            self._live[self._next_id] = lv
            self._next_id += 1

    def _match(self, t: float, live: list[_Live], dets: list[_Det]) -> list[tuple[_Live, _Det]]:
        """Same-class assignment that matches as many admissible pairs as it can at the least total cost."""
        pairs = []
        for cls in sorted({d.class_name for d in dets}):
            rows = [lv for lv in live if lv.track.class_name == cls]
            cols = [d for d in dets if d.class_name == cls]
            if not rows:
                continue
            preds = [lv.predict(t) for lv in rows]
            costs = [[self._cost(p, d) for d in cols] for p in preds]
            for r, c in _assign(costs):
                pairs.append((rows[r], cols[c]))
        return pairs

    def _cost(self, pred: _Prediction, det: _Det) -> float | None:
        """The cost of giving `det` to a track predicted at `pred`, or None when the gate rejects it."""
        widen = 1.0 + pred.dt / self.gap_growth_s
        motion = self.motion_slack * pred.speed * pred.dt
        d = math.hypot(det.x - pred.x, det.y - pred.y)
        if not (det.is_box and not math.isnan(pred.w)):
            cost = d / (self.point_scale * widen + motion)
            return cost if cost <= self.max_distance else None
        a, b = _box(pred.x, pred.y, pred.w, pred.h), _box(det.x, det.y, det.w, det.h)
        inter = _intersection(a, b)
        area_a, area_b = pred.w * pred.h, det.w * det.h
        if inter > 0.0:
            return 1.0 - inter / (area_a + area_b - inter)
        diag = max(math.hypot(pred.w, pred.h), math.hypot(det.w, det.h))
        size = 1.0 - math.sqrt(min(area_a, area_b) / max(area_a, area_b)) if max(area_a, area_b) > 0 else 0.0
        # a box jitters by a few pixels whatever its size: a far sign's 5 px box must not have to land within 5 px;
        # and an approaching sign grows faster than a straight-line fit of its size predicts: half the size term
        distance = d / max(diag * widen + motion, MIN_BOX_SCALE_PX) + 0.5 * size
        return 1.0 + distance if distance <= self.max_distance else None

    def _duplicate_of(self, det: _Det, assigned: list[tuple[_Det, _Live]]) -> _Live | None:
        """The track of the assigned same-class detection that `det` duplicates most, or None."""
        best: tuple[float, int, _Live] | None = None
        for other, lv in assigned:
            if other.class_name != det.class_name:
                continue
            if det.is_box and other.is_box:
                a, b = _box(det.x, det.y, det.w, det.h), _box(other.x, other.y, other.w, other.h)
                smaller = min(det.w * det.h, other.w * other.h)
                score = _intersection(a, b) / smaller if smaller > 0 else 0.0
                ok = score >= self.duplicate_overlap
            else:
                score = -math.hypot(det.x - other.x, det.y - other.y)
                ok = -score <= self.duplicate_radius
            if ok and (best is None or (-score, other.index) < (-best[0], best[1])):
                best = (score, other.index, lv)
        return None if best is None else best[2]
