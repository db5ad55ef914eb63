"""The live path for real: an HTTP MPEG-TS stream from ffmpeg on loopback, cut and restored under the source."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import FfmpegStreamServer, ffmpeg_path, free_port

from edge.config import SourceConfig
from edge.sources import Capture, LiveSource, open_source
from edge.types import Frame
from tests.support import Collector, StageThread, wait_until


@contextlib.contextmanager
def capture_running(server: FfmpegStreamServer, source: LiveSource, queue_size: int,
                    ) -> Iterator[tuple[Capture, StageThread, Collector]]:
    """Serves the stream, runs the capture and a collector; on exit stops them, kills the server, closes the source."""
    stop = threading.Event()
    q = Capture.queue_for(source, queue_size)
    capture = Capture(source, q)
    thread = StageThread(capture.run, stop, name="test-capture")
    collector = Collector()
    try:
        server.start()
        thread.start()
        collector.drain(q)
        yield capture, thread, collector
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join(10)
        server.kill()
        source.close()


pytestmark = pytest.mark.skipif(ffmpeg_path() is None, reason="ffmpeg not installed: cannot serve a live stream")


def frames_after(collector: Collector, t: float) -> list[Frame]:
    return [f for f in collector.items if f.captured_at > t]


def test_stream_outage_is_detected_and_recovered(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # given the 17.5 fps dashcam clip served as a live HTTP stream, read at 5 fps
    video = data_dir / "video" / "sf_dashcam_traffic_lights.mp4"
    server = FfmpegStreamServer(video, free_port())
    cfg = SourceConfig(uri=server.url, inference_fps=5, stall_timeout_s=2.0, reconnect_initial_s=0.2,
                       reconnect_max_s=1.0, queue_size=4)
    source = open_source(cfg)
    assert isinstance(source, LiveSource) and source.kind == "stream", f"an http URL is a stream: {source!r}"
    with caplog.at_level(logging.INFO, logger="edge.sources"), \
            capture_running(server, source, cfg.queue_size) as (capture, capture_thread, collector):
        # then frames flow at about 5 fps
        first = collector.wait_for(8, timeout=30)  # frames from the live stream
        assert first[0].image.shape == (360, 480, 3), f"decoded 480x360 BGR frames, got {first[0].image.shape}"
        # ffmpeg's HTTP output arrives in bursts; sampling follows stream time: 5 of every 17.5 frames
        ratio = source.stats.frames_emitted / source.stats.frames_read
        assert 0.2 < ratio < 0.4, f"about 5/17.5 of the frames are sampled, got {source.stats}"
        assert all(b.timestamp_sec > a.timestamp_sec for a, b in zip(first, first[1:])), "timestamps increase"
        assert source.stats.outages == 0, f"no outage while the stream is up: {source.stats}"

        # when the server dies, the source notices
        server.kill()
        killed_at = time.time()
        wait_until(lambda: source.stats.outages >= 1, "the source to report an outage", timeout=20)
        assert source.stats.in_outage, f"the source says it is in an outage: {source.stats}"

        # and when it comes back on the same port, the source reconnects and frames flow again
        server.start()
        wait_until(lambda: len(frames_after(collector, killed_at)) >= 5, "frames after the stream came back", timeout=40)
        wait_until(lambda: not source.stats.in_outage, "the outage to end", timeout=5)
    assert not capture_thread.is_alive(), "capture ends promptly after stop"
    assert capture_thread.error is None, f"capture raised {capture_thread.error!r}"
    stats = source.stats
    assert stats.outages >= 1 and stats.reconnects >= 1, f"outage and reconnect counted: {stats}"
    assert stats.outage_seconds > 0, f"outage time counted: {stats}"
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if " lost: " in m]
    back = [m for m in messages if " back after " in m]
    assert lost and server.url in lost[0], f"the gap is logged with the source's name: {messages}"
    assert len(lost) == stats.outages, f"one 'lost' line per outage: {lost}"
    assert back, f"the recovery is logged: {messages}"


def test_set_fps_changes_the_sampling_rate_of_a_live_stream(data_dir: Path) -> None:
    # given the 17.5 fps clip served as a live stream and read at 5 fps: a frame every 3.5 stream frames
    video = data_dir / "video" / "sf_dashcam_traffic_lights.mp4"
    server = FfmpegStreamServer(video, free_port())
    source = open_source(SourceConfig(uri=server.url, inference_fps=5, stall_timeout_s=5.0, queue_size=64))
    with capture_running(server, source, 64) as (_capture, capture_thread, collector):
        collector.wait_for(10, timeout=30)  # at 5 fps
        # when the rate drops to 2 fps while the stream plays (what a SIGHUP reload does)
        source.set_fps(2)
        held = len(collector)
        # a frame every 8.75 stream frames from then on: 12 of them, with what was still in flight
        collector.wait_for(held + 12, timeout=30)
    assert capture_thread.error is None and source.stats.outages == 0, f"a steady stream: {capture_thread.error!r}, {source.stats}"
    assert source.stats.dropped == 0, f"nothing dropped, so every gap is a sampling step: {source.stats}"
    # then, in stream time (a frame index is 1/17.5 s of the stream, deterministic unlike arrival times), the
    # steps between sampled frames are 3 or 4 frames (3.5 on average) before, 8 or 9 (8.75) after. The first
    # two steps are left out: the stream's first frames carry no usable timestamps yet (wall-clock sampling).
    steps = [int(s) for s in np.diff([f.index for f in collector.items])]
    switch = next(i for i, s in enumerate(steps) if i >= 2 and s not in (3, 4))
    assert switch >= held - 1, f"5 fps until set_fps: steps {steps}, {held} frames before the call"
    assert set(steps[switch:]) <= {8, 9} and len(steps[switch:]) >= 8, f"2 fps after it: steps {steps}"
    window = steps[switch:switch + 8]
    assert abs(sum(window) / len(window) - 17.5 / 2) <= 0.25, f"2 frames per 17.5 stream frames: {window}"
