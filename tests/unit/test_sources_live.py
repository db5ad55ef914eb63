"""Live source logic against a fake camera: wall-clock sampling, outages, reconnects, backoff, a hung reader."""

from __future__ import annotations

import logging
import random
import threading

import cv2
import numpy as np
import pytest

from edge.backoff import Backoff
from edge.sources import Capture, LiveSource
from edge.types import Frame
from tests.support import Collector, StageThread, wait_until


class World:
    """What the fake camera sees: whether it is plugged in, and whether grab() hangs."""

    def __init__(self, fps: float = 100.0):
        self.up = threading.Event()
        self.up.set()
        self.hang = threading.Event()
        self.release_hang = threading.Event()
        self.period = 1.0 / fps
        self.opens = 0


class FakeCamera:
    def __init__(self, world: World):
        self.world = world
        self.opened = world.up.is_set()
        world.opens += 1

    def isOpened(self) -> bool:  # noqa: N802 - the cv2.VideoCapture name
        return self.opened

    def grab(self) -> bool:
        if self.world.hang.is_set():
            self.world.release_hang.wait(30)
        self.world.release_hang.wait(self.world.period)  # frame interval of the fake device
        return self.opened and self.world.up.is_set()

    def get(self, prop: int) -> float:
        return 0.0  # like a device without frame timestamps: sampling falls back to the wall clock

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((4, 6, 3), np.uint8)

    def release(self) -> None:
        self.opened = False


def make_source(world: World, **kw: float) -> LiveSource:
    params = dict(inference_fps=20.0, stall_timeout_s=0.5, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    params.update(kw)
    return LiveSource("7", "camera", open_capture=lambda: FakeCamera(world), rng=random.Random(1), **params)


class Consumer:
    """Runs Capture in a thread and collects what reaches the queue."""

    def __init__(self, source: LiveSource, maxsize: int = 4):
        self.stop = threading.Event()
        self.queue = Capture.queue_for(source, maxsize)
        self.collector = Collector()
        self.capture = Capture(source, self.queue)
        self.capture_thread = StageThread(self.capture.run, self.stop, name="test-capture")

    @property
    def frames(self) -> list[Frame]:
        return self.collector.items

    def __enter__(self) -> Consumer:
        self.capture_thread.start()
        self.collector.drain(self.queue)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        threads = [self.capture_thread, self.collector.thread]
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads), "capture and consumer end after stop"


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(0).random)
    delays = [backoff.next() for _ in range(10)]
    for attempt, d in enumerate(delays):
        base = min(30.0, 0.5 * 2**attempt)
        assert 0.5 * base <= d <= base, f"attempt {attempt}: {d} outside the 50-100 % jitter band of {base}"
    assert max(delays) <= 30.0, "capped at the maximum"


def test_wall_clock_sampling_and_timestamps() -> None:
    # given a 100 fps camera sampled at 20 fps
    world = World(fps=100)
    src = make_source(world)
    with Consumer(src) as c:
        wait_until(lambda: len(c.frames) >= 15, "15 frames")
    gaps = np.diff([f.captured_at for f in c.frames])
    assert 0.035 < float(np.median(gaps)) < 0.08, f"about 1/20 s between emitted frames, median {np.median(gaps)}"
    assert all(b.index > a.index for a, b in zip(c.frames, c.frames[1:])), "source frame indices increase"
    assert all(b.timestamp_sec > a.timestamp_sec for a, b in zip(c.frames, c.frames[1:])), "timestamps increase"
    assert src.stats.frames_read > src.stats.frames_emitted, f"unsampled frames are read, not emitted: {src.stats}"
    assert c.frames[0].source == "camera 7", "display name of a camera index"


class BurstyStream(FakeCamera):
    """A 30 fps stream delivered in bursts of 10 frames every 1/3 s, each frame with its own timestamp."""

    def __init__(self, world: World):
        super().__init__(world)
        self.n = 0

    def grab(self) -> bool:
        if self.n % 10 == 0:
            self.world.release_hang.wait(10 / 30)  # the next burst arrives
        self.n += 1
        return self.opened

    def get(self, prop: int) -> float:
        return self.n * 1000 / 30 if prop == cv2.CAP_PROP_POS_MSEC else 0.0


def test_bursty_stream_is_sampled_by_its_timestamps() -> None:
    # given a stream that delivers 10 frames at once three times a second, sampled at 10 fps
    world = World()
    src = LiveSource("http://cam/live.ts", "stream", inference_fps=10, open_capture=lambda: BurstyStream(world))
    with Consumer(src, maxsize=64) as c:
        wait_until(lambda: len(c.frames) >= 15, "15 frames")
    # then every third frame comes out, not one per burst
    steps = np.diff([f.index for f in c.frames])
    assert np.all(steps == 3), f"sampled by stream time: every 3rd of 30 fps, got steps {steps}"


def test_outage_is_logged_counted_and_recovered(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    src = make_source(world)
    with caplog.at_level(logging.INFO, logger="edge.sources"), Consumer(src) as c:
        wait_until(lambda: len(c.frames) >= 3, "first frames")
        # when the camera disappears
        world.up.clear()
        wait_until(lambda: src.stats.outages == 1 and src.stats.in_outage, "the outage to be noticed")
        wait_until(lambda: world.opens >= 4, "a few reconnect attempts")
        before = len(c.frames)
        # and comes back
        world.up.set()
        wait_until(lambda: len(c.frames) >= before + 3, "frames after recovery")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost" in m for m in messages) == 1, f"one 'lost' line per outage, got {messages}"
    assert any("camera 7 back after" in m for m in messages), f"recovery is logged: {messages}"
    s = src.stats
    assert s.outages == 1 and s.reconnects >= 1 and s.outage_seconds > 0 and not s.in_outage, f"counters: {s}"


def test_camera_absent_at_start_is_an_outage_not_an_error() -> None:
    world = World()
    world.up.clear()
    src = make_source(world)
    with Consumer(src) as c:
        wait_until(lambda: src.stats.outages == 1, "the initial outage")
        world.up.set()
        wait_until(lambda: len(c.frames) >= 2, "frames once the camera appears")
    assert src.stats.outage_seconds > 0 and c.capture_thread.error is None, f"no error, outage counted: {src.stats}"


def test_a_reader_stuck_in_grab_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    src = make_source(world)
    src.hang_timeout_s = 0.3  # a capture call that ignores its timeouts for longer than this is abandoned
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sources"), Consumer(src) as c:
            wait_until(lambda: len(c.frames) >= 2, "first frames")
            world.hang.set()
            wait_until(lambda: src.stats.outages == 1, "the hang to be declared an outage")
            world.hang.clear()
            before = len(c.frames)
            wait_until(lambda: len(c.frames) >= before + 2, "frames from a fresh reader")
    finally:
        world.release_hang.set()
    assert any("abandoning" in r.getMessage() for r in caplog.records), "the hung reader is reported"


class TimedStream(FakeCamera):
    """A 30 fps stream with its own timestamps, grabbed faster than real time (sampling follows stream time),
    that holds its next frame after `pause_at` frames until `resume` is set."""

    def __init__(self, world: World, pause_at: int, resume: threading.Event):
        super().__init__(world)
        self.n = 0
        self.pause_at, self.resume = pause_at, resume

    def grab(self) -> bool:
        if self.n == self.pause_at:
            self.resume.wait(10)
        self.world.release_hang.wait(0.004)  # quicker than 1/30 s: the test does not wait for real time
        self.n += 1
        return self.opened

    def get(self, prop: int) -> float:
        return self.n * 1000 / 30 if prop == cv2.CAP_PROP_POS_MSEC else 0.0


@pytest.mark.parametrize(("before", "after"), [(10, 5), (5, 10), (10, 2)])
def test_set_fps_changes_the_rate_from_the_next_frame(before: float, after: float) -> None:
    # given a 30 fps stream sampled at `before` fps, held after its 25th frame (index 24, a sampled one)
    world, resume = World(), threading.Event()
    src = LiveSource("http://cam/live.ts", "stream", inference_fps=before,
                     open_capture=lambda: TimedStream(world, 25, resume))
    step_before, step_after = round(30 / before), round(30 / after)
    try:
        with Consumer(src, maxsize=256) as c:
            wait_until(lambda: bool(c.frames) and c.frames[-1].index == 24, "the frames up to the pause")
            # when the rate changes (from another thread, as a SIGHUP reload does) and the stream goes on
            src.set_fps(after)
            resume.set()
            held = len(c.frames)
            wait_until(lambda: len(c.frames) >= held + 6, f"6 more frames at {after} fps")
    finally:
        resume.set()
    # then the frame one new period (in stream time) after the last sampled one is the next sample
    indices = [f.index for f in c.frames]
    assert src.stats.dropped == 0, f"nothing dropped, so every gap is a sampling step: {src.stats}"
    assert indices[:held] == list(range(0, 25, step_before)), f"a frame every {step_before} before: {indices}"
    expected = [24 + step_after * k for k in range(1, 7)]
    assert indices[held:held + 6] == expected, f"a frame every {step_after} after, from the first: {indices}"

@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_set_fps_rejects_a_rate_that_is_not_positive(fps: float) -> None:
    src = make_source(World())
    with pytest.raises(ValueError, match="inference_fps"):
        src.set_fps(fps)
    assert src.period_s == pytest.approx(1 / 20), "the running rate is kept"
