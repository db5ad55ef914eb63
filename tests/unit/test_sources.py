"""Frame sources: kind detection, deterministic file sampling, bad inputs, image folders, the capture stage."""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.buffers import BoundedQueue, Closed
from edge.config import SourceConfig
from edge.sources import (
    Capture,
    ImageFolderSource,
    LiveSource,
    SourceError,
    SourceStats,
    VideoFileSource,
    detect_kind,
    display_name,
    open_source,
)
from edge.types import Frame
from tests.support import wait_until


@pytest.fixture(scope="module")
def video_dir(data_dir: Path) -> Path:
    return data_dir / "video"


def read_all(source) -> list[Frame]:  # noqa: ANN001
    return list(source.frames(threading.Event()))


def write_mjpeg_avi(path: Path, n: int, fps: float = 10.0, size: tuple[int, int] = (160, 120)) -> None:
    """A small real video (OpenCV's built-in MJPEG writer), noisy so frames have realistic sizes."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), f"cannot write a test video to {path}"
    for _ in range(n):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


# -- kind detection and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("0", "camera"),
        ("12", "camera"),
        ("/dev/video2", "camera"),
        ("/dev/v4l/by-id/usb-Cam-video-index0", "camera"),
        ("rtsp://user:pw@10.0.0.5:554/stream1", "stream"),
        ("RTSPS://cam.local/live", "stream"),
        ("http://127.0.0.1:8080/live.ts", "stream"),
        ("https://example.com/cam.m3u8", "stream"),
        ("udp://@239.0.0.1:1234", "stream"),
        ("tcp://127.0.0.1:9000", "stream"),
        ("v4l2src device=/dev/video0 ! videoconvert ! appsink", "gstreamer"),
        ("rtspsrc location=rtsp://a:b@cam/x ! decodebin ! videoconvert ! appsink", "gstreamer"),
        ("drive.mp4", "file"),
        ("/no/such/dir/", "file"),
    ],
)
def test_detect_kind(uri: str, kind: str) -> None:
    assert detect_kind(uri) == kind, f"{uri!r} should be detected as {kind}"


def test_detect_kind_existing_folder(tmp_path: Path) -> None:
    assert detect_kind(str(tmp_path)) == "folder", "an existing directory is an image folder"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/h264", "rtsp://10.0.0.5:554/h264"),
        ("http://user@host/x.ts", "http://host/x.ts"),
        ("rtsp://10.0.0.5/h264", "rtsp://10.0.0.5/h264"),
        ("https://host/live.m3u8?token=abc123&q=1", "https://host/live.m3u8?token=***&q=1"),
        ("rtspsrc location=rtsp://a:b@cam/x ! appsink", "rtspsrc location=rtsp://cam/x ! appsink"),
    ],
)
def test_display_name_strips_credentials(uri: str, shown: str) -> None:
    assert display_name(uri) == shown, f"credentials must not appear in the name of {uri!r}"


def test_live_source_name_has_no_password() -> None:
    src = open_source(SourceConfig(uri="rtsp://admin:s3cr3t@10.0.0.5:554/h264"))
    assert src.live and "s3cr3t" not in src.name and "admin" not in src.name, f"name leaks credentials: {src.name}"


def test_gstreamer_without_support_is_a_clear_error() -> None:
    if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        pytest.skip("this OpenCV has GStreamer: nothing to refuse")
    with pytest.raises(SourceError, match="GStreamer") as err:
        open_source(SourceConfig(uri="videotestsrc ! videoconvert ! appsink"))
    assert "videotestsrc" in str(err.value), f"the message should name the pipeline: {err.value}"


# -- video files: deterministic sampling ----------------------------------------------------------


def test_30fps_video_sampled_every_6th_frame(video_dir: Path) -> None:
    # given the 30 fps drive (255 frames) at 5 fps, dated by an explicit start time
    src = open_source(SourceConfig(uri=str(video_dir / "stop_sign_approach.mp4"), inference_fps=5),
                      start_time=1_700_000_000.0)
    # when it is read to the end
    frames = read_all(src)
    # then frames 0, 6, 12 … with media timestamps, nothing lost
    assert [f.index for f in frames] == list(range(0, 255, 6)), "every 6th frame, from frame 0"
    assert all(math.isclose(f.timestamp_sec, f.index / 30, abs_tol=1e-3) for f in frames), "t = index / fps"
    assert all(math.isclose(f.captured_at, 1_700_000_000.0 + f.timestamp_sec) for f in frames), \
        "captured_at = start time + media time"
    assert frames[0].image.shape == (720, 1280, 3) and frames[0].image.dtype == np.uint8, "BGR uint8 frames"
    assert src.stats.frames_read == 255 and src.stats.frames_emitted == 43, f"counters: {src.stats}"
    assert src.stats.dropped == 0 and src.stats.corrupt_frames == 0, f"nothing dropped or corrupt: {src.stats}"


def test_17_5fps_video_sampled_by_timestamps(video_dir: Path) -> None:
    src = open_source(SourceConfig(uri=str(video_dir / "sf_dashcam_traffic_lights.mp4"), inference_fps=5))
    frames = read_all(src)
    fps = src.fps
    assert 17.4 < fps < 17.6, f"the clip is 17.5 fps, got {fps}"
    # the first frame at or after each instant k / 5 s
    expected = sorted({math.ceil(k * fps / 5 - 1e-6) for k in range(200)} & set(range(527)))
    assert [f.index for f in frames] == expected, "one frame per 0.2 s instant, chosen by media time"
    assert [f.index for f in frames][:6] == [0, 4, 8, 11, 15, 18], "irregular steps for a non-integer ratio"
    gaps = np.diff([f.timestamp_sec for f in frames])
    assert gaps.min() > 0.17 and gaps.max() < 0.26, f"sampled frames about 0.2 s apart, got {gaps.min()}..{gaps.max()}"


def test_replay_is_deterministic(video_dir: Path) -> None:
    cfg = SourceConfig(uri=str(video_dir / "sf_dashcam_traffic_lights.mp4"), inference_fps=3,
                       start_time="2016-12-14T18:00:00Z")
    runs = [[(f.index, f.timestamp_sec, f.captured_at) for f in read_all(open_source(cfg))] for _ in range(2)]
    assert runs[0] == runs[1], "two replays of the same file must produce the same frames and times"
    assert runs[0][0][2] == 1481738400.0, "cfg.start_time dates the first frame"


def test_file_mtime_is_the_default_start(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_mjpeg_avi(video, 12)
    os.utime(video, (1_600_000_000, 1_600_000_000))
    frames = read_all(open_source(SourceConfig(uri=str(video), inference_fps=5)))
    assert [f.index for f in frames] == [0, 2, 4, 6, 8, 10], "10 fps at 5 fps: every other frame"
    assert frames[1].captured_at == pytest.approx(1_600_000_000.2), "mtime + media time"


def test_stop_ends_a_file_early(video_dir: Path) -> None:
    stop = threading.Event()
    src = open_source(SourceConfig(uri=str(video_dir / "stop_sign_approach.mp4")))
    got = []
    for frame in src.frames(stop):
        got.append(frame.index)
        if len(got) == 3:
            stop.set()
    assert got == [0, 6, 12], f"no frame after stop, got {got}"


# -- video files: bad inputs ----------------------------------------------------------------------


def test_truncated_mp4_without_index_is_a_clear_error(video_dir: Path) -> None:
    # the shared truncated.mp4 is cut before its 'moov' box: no decoder can read it as it is
    path = video_dir / "truncated.mp4"
    with pytest.raises(SourceError) as err:
        open_source(SourceConfig(uri=str(path)))
    assert str(path) in str(err.value) and "moov" in str(err.value), f"names the file and the reason: {err.value}"


def test_truncated_video_ends_early_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # given a video whose header promises 60 frames, with only its first third of data left
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    write_mjpeg_avi(whole, 60)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    # when it is replayed
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        frames = read_all(open_source(SourceConfig(uri=str(cut), inference_fps=10)))
    # then the frames that are there come out, and the shortfall is reported, no exception
    assert 10 <= len(frames) < 30, f"the frames before the cut, got {len(frames)}"
    warnings = [r.getMessage() for r in caplog.records if "ended early" in r.getMessage()]
    assert len(warnings) == 1 and "of 60 frames" in warnings[0] and "cut.avi" in warnings[0], \
        f"one warning naming the file, frames read and expected: {warnings}"


class FailingRetrieve:
    """A real capture whose retrieve() fails for some frame indices (a frame that does not decode)."""

    def __init__(self, path: str, bad: set[int]):
        self._cap, self._bad, self._i = cv2.VideoCapture(path), bad, -1

    def grab(self) -> bool:
        self._i += 1
        return self._cap.grab()

    def retrieve(self):  # noqa: ANN201
        return (False, None) if self._i in self._bad else self._cap.retrieve()

    def __getattr__(self, name: str):  # noqa: ANN204 - isOpened, get, read, release
        return getattr(self._cap, name)


def test_corrupt_frame_is_skipped_and_counted(video_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = video_dir / "stop_sign_approach.mp4"
    src = VideoFileSource(path, inference_fps=5, start_time=0.0, open_capture=lambda p: FailingRetrieve(p, {12}))
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        indices = [f.index for f in read_all(src)]
    assert indices[:4] == [0, 6, 13, 18], f"frame 12 skipped, the next good frame takes its instant: {indices[:4]}"
    assert src.stats.corrupt_frames == 1, f"one corrupt frame counted: {src.stats}"
    assert any("frame 12" in r.getMessage() for r in caplog.records), "the corrupt frame is logged with its index"


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(SourceError, match="no such file") as err:
        open_source(SourceConfig(uri=str(path)))
    assert str(path) in str(err.value), f"the message names the path: {err.value}"


def test_text_file_named_mp4_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match="not a video") as err:
        open_source(SourceConfig(uri=str(path)))
    assert str(path) in str(err.value), f"the message names the path: {err.value}"


# -- image folders --------------------------------------------------------------------------------


def test_empty_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images") as err:
        open_source(SourceConfig(uri=str(tmp_path)))
    assert str(tmp_path) in str(err.value), f"the message names the folder: {err.value}"


def test_folder_skips_other_files_and_undecodable_images(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given two real photos, a text file and a .jpg that is not a JPEG, in a folder
    shutil.copy(data_dir / "images" / "bus.jpg", tmp_path / "frame10.jpg")
    shutil.copy(data_dir / "images" / "zidane.jpg", tmp_path / "frame2.JPG")
    (tmp_path / "frame5.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    # when it is read
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        src = open_source(SourceConfig(uri=str(tmp_path), inference_fps=5))
        frames = read_all(src)
    # then the photos come out in name order with their paths; the rest is skipped, logged, counted
    assert [Path(f.path).name for f in frames] == ["frame2.JPG", "frame10.jpg"], "natural name order, images only"
    assert [f.index for f in frames] == [0, 2], "index = position among the images, the broken one included"
    assert frames[1].timestamp_sec == pytest.approx(0.4), "timestamp = index / inference_fps"
    assert frames[0].captured_at == pytest.approx((tmp_path / "frame2.JPG").stat().st_mtime), "captured_at = mtime"
    assert src.stats.corrupt_frames == 1 and src.stats.frames_emitted == 2, f"counters: {src.stats}"
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "notes.txt" in messages and "frame5.jpg" in messages, f"both skips are logged: {messages}"


def test_single_image_file_is_one_frame(data_dir: Path) -> None:
    frames = read_all(open_source(SourceConfig(uri=str(data_dir / "images" / "bus.jpg"))))
    assert len(frames) == 1 and frames[0].path and frames[0].path.endswith("bus.jpg"), "one frame with its path"


# -- the capture stage --------------------------------------------------------------------------------


def drain(q: BoundedQueue[Frame], delay_s: float = 0.0, deadline_s: float = 30.0) -> list[Frame]:
    """Everything until Closed; `delay_s` per item makes a slow consumer."""
    got: list[Frame] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            item = q.get(timeout=0.1)
        except Closed:
            return got
        if item is not None:
            got.append(item)
            time.sleep(delay_s)  # simulated inference time, not a wait for a condition
    raise AssertionError(f"queue not closed within {deadline_s} s ({len(got)} items)")


def test_capture_of_a_file_never_drops(video_dir: Path) -> None:
    # given a file source, a one-slot queue and a consumer slower than decoding
    src = open_source(SourceConfig(uri=str(video_dir / "sf_dashcam_traffic_lights.mp4"), inference_fps=5))
    q = Capture.queue_for(src, 1)
    capture = Capture(src, q)
    thread = threading.Thread(target=capture.run, args=(threading.Event(),))
    thread.start()
    # when everything is consumed
    got = drain(q, delay_s=0.002)
    thread.join(10)
    # then every sampled frame arrived, in order, and the queue was closed at the end
    assert not thread.is_alive(), "capture ends at the end of the file"
    assert len(got) == 151 and [f.index for f in got] == sorted(f.index for f in got), f"all 151, got {len(got)}"
    assert src.stats.dropped == 0 and q.dropped == 0, f"a file source never drops: {src.stats}"


class FakeLive:
    """A live source that produces `n` frames as fast as it can."""

    live = True
    name = "fake-cam"

    def __init__(self, n: int):
        self.n = n
        self.stats = SourceStats()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i in range(self.n):
            self.stats.frames_emitted += 1
            yield Frame(index=i, timestamp_sec=i / 30, captured_at=time.time(), image=np.zeros((2, 2, 3), np.uint8))

    def close(self) -> None:
        pass


def test_capture_of_a_live_source_drops_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    # given a live source and a 3-slot queue nobody reads
    src = FakeLive(20)
    q = Capture.queue_for(src, 3)
    # when capture runs to the end of the source
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        Capture(src, q, drop_log_interval_s=3600).run(threading.Event())
    # then the newest 3 frames wait in the queue, the 17 older ones were dropped, counted and logged once
    assert src.stats.dropped == 17, f"17 drops counted in the source stats, got {src.stats.dropped}"
    assert [q.get(0) .index for _ in range(3)] == [17, 18, 19], "the newest frames are kept"
    with pytest.raises(Closed):
        q.get(0)
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(drops) <= 2, f"drops are logged at most once per interval (+ a final summary): {drops}"


def test_capture_refuses_the_wrong_queue_policy() -> None:
    with pytest.raises(ValueError, match="drop_oldest"):
        Capture(FakeLive(1), BoundedQueue(2, "block"))


def test_capture_stops_on_stop(video_dir: Path) -> None:
    src = open_source(SourceConfig(uri=str(video_dir / "stop_sign_approach.mp4")))
    q = Capture.queue_for(src, 2)
    stop = threading.Event()
    thread = threading.Thread(target=Capture(src, q).run, args=(stop,))
    thread.start()
    try:
        first = wait_until(lambda: q.get(timeout=0.1), "the first frame", 10, every=0)
    finally:
        stop.set()
        thread.join(5)
    assert first.index == 0, f"the first frame came through first, got frame {first.index}"
    assert not thread.is_alive() and q.closed, "capture returns promptly on stop and closes its queue"


def test_live_source_is_not_opened_until_read() -> None:
    # a stream that is down at start is an outage handled by frames(), not an error at open
    src = open_source(SourceConfig(uri="http://127.0.0.1:9/none.ts"))
    assert isinstance(src, LiveSource) and src.live, "a URL is a live source"
    src.close()


def test_image_folder_class_accepts_a_folder(data_dir: Path) -> None:
    src = ImageFolderSource(data_dir / "images", inference_fps=5)
    assert len(src.files) >= 10 and src.name == "images", f"the sample photos are listed: {src.files}"
