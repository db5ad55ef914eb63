"""A video file replayed deterministically: frames sampled by media time at the inference rate, nothing dropped."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2

from edge.sources.base import SourceError, SourceStats
from edge.types import Frame

log = logging.getLogger(__name__)

OpenCapture = Callable[[str], Any]  # path -> object with grab/retrieve/get/isOpened/release (cv2.VideoCapture)

_EPS = 1e-6  # seconds: media times this close to a sampling instant count as reaching it
_END_RETRIES = 2  # extra grabs after a failed one, to step over a damaged packet before calling it the end
_MAX_CORRUPT_LOGS = 50  # per pass over the file; the count goes on in stats.corrupt_frames


def _decoder_params() -> list[int]:
    """One decoder thread: replay decodes several frames per analysed one, and FFmpeg's frame threads would
    contend with the inference threads for the same cores (measured: bench/replay_fps.py)."""
    return [cv2.CAP_PROP_N_THREADS, 1]


def open_video_capture(path: str) -> Any:
    """cv2.VideoCapture on the FFmpeg backend when this OpenCV has it (no surprises from image-sequence backends)."""
    if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG, _decoder_params())
    return cv2.VideoCapture(path)


def _valid_fps(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps <= 1000


def _why_unreadable(path: Path) -> str:
    """A reason an operator can act on, for a file that OpenCV could not open or decode."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if path.is_dir():
        return "is a directory (use an image folder source)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    if size == 0:
        return "empty file"
    if _mp4_lacks_index(path):
        return (
            "MP4 index ('moov' atom) missing: the recording was cut off before it was finalised "
            "(power loss?) and cannot be decoded as is"
        )
    return "not a video OpenCV/FFmpeg can decode (unknown format, unsupported codec, or damaged header)"


def _mp4_lacks_index(path: Path) -> bool:
    """True for an MP4/MOV (starts with an 'ftyp' box) whose top-level boxes have no 'moov'."""
    try:
        size_total = path.stat().st_size
        with path.open("rb") as fh:
            offset = 0
            while offset + 8 <= size_total:
                fh.seek(offset)
                header = fh.read(16)
                size, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if offset == 0 and kind != b"ftyp":
                    return False  # not an MP4 at all
                if kind == b"moov":
                    return False
                if size == 1 and len(header) == 16:
                    size = int.from_bytes(header[8:16], "big")
                elif size == 0:  # the last box runs to the end of the file
                    break
                if size < 8:
                    return False  # not a box list we understand
                offset += size
    except OSError:
        return False
    return True


class VideoFileSource:
    """Frames of one video file at `inference_fps`, chosen by media timestamp: the same frames on every run."""

    live = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        inference_fps: float,
        start_time: float | None = None,
        open_capture: OpenCapture = open_video_capture,
    ):
        if inference_fps <= 0:
            raise ValueError(f"inference_fps must be > 0, got {inference_fps}")
        self.path = Path(path)
        self.name = self.path.name
        self.inference_fps = float(inference_fps)
        self.stats = SourceStats()
        self._open_capture = open_capture
        self._cap: Any = None
        self._lock = threading.Lock()
        self.fps, self.frame_count, self.width, self.height = self._probe()
        if start_time is None:
            start_time = self.path.stat().st_mtime
        self.start_time = float(start_time)

    def set_fps(self, fps: float) -> None:
        """Sample at `fps` from the next frame on. The grid stays anchored at media time 0: from then on the
        same frames are chosen as by a replay started at `fps`."""
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"inference_fps must be > 0, got {fps}")
        with self._lock:
            old, self.inference_fps = self.inference_fps, float(fps)
        log.info("video file %s: sampling at %g fps (was %g)", self.path, fps, old)

    def expected_frames(self) -> int | None:
        """How many frames sampling will emit, from the container's frame count (for progress and ETA)."""
        if self.frame_count <= 0 or self.fps <= 0:
            return None
        return min(self.frame_count, int((self.frame_count - 1) / self.fps * self.inference_fps) + 1)

    def _probe(self) -> tuple[float, int, int, int]:
        """Open the file and decode its first frame; SourceError naming the path if that fails."""
        if not self.path.is_file():
            raise SourceError(f"video file {self.path}: {_why_unreadable(self.path)}")
        cap = self._open_capture(str(self.path))
        try:
            if not cap.isOpened():
                raise SourceError(f"video file {self.path}: {_why_unreadable(self.path)}")
            ok, image = cap.read()
            if not ok or image is None or image.size == 0:
                raise SourceError(f"video file {self.path}: opened but its first frame does not decode: "
                                  f"{_why_unreadable(self.path)}")
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            count = int(count) if math.isfinite(count) and count > 0 else 0
            height, width = image.shape[:2]
        finally:
            cap.release()
        if not _valid_fps(fps):
            log.warning("video file %s: no usable frame rate (%r); timing frames by their timestamps, "
                        "30 fps where a frame has none", self.path, fps)
            fps = 30.0
        return fps, count, width, height

    def _media_time(self, cap: Any, index: int, previous: float | None) -> float:
        """Presentation time of the frame just grabbed; index/fps where the file gives none that increases."""
        msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        t = msec / 1000.0 if math.isfinite(msec) else -1.0
        if previous is None:
            return t if t >= 0 else 0.0
        return t if t > previous else previous + 1.0 / self.fps

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        cap = self._open_capture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"video file {self.path}: {_why_unreadable(self.path)}")
        with self._lock:
            self._cap = cap
        try:
            yield from self._sample(cap, stop)
        finally:
            self.close()

    def _sample(self, cap: Any, stop: threading.Event) -> Iterator[Frame]:
        index = -1  # index of the last decoded frame in the file
        t: float | None = None
        next_instant = 0  # k: the next sampling instant is k / fps
        fps = self.inference_fps
        sampled_t: float | None = None  # media time of the last emitted frame
        corrupt_logged = 0
        while not stop.is_set():
            if self.inference_fps != fps:  # set_fps() from another thread: the next instant on the new grid
                fps = self.inference_fps
                next_instant = 0 if sampled_t is None else math.floor(sampled_t * fps + _EPS) + 1
            if not self._grab(cap, index):
                self._report_end(index + 1)
                return
            index += 1
            self.stats.frames_read += 1
            t = self._media_time(cap, index, t)
            if t + _EPS < next_instant / fps:
                continue  # not a sampling instant: grab only, no colour conversion
            ok, image = cap.retrieve()
            if not ok or image is None or image.size == 0:
                self.stats.corrupt_frames += 1
                if corrupt_logged < _MAX_CORRUPT_LOGS:
                    corrupt_logged += 1
                    log.warning("video file %s: frame %d (t=%.3f s) does not decode; skipped%s", self.path, index,
                                t, "" if corrupt_logged < _MAX_CORRUPT_LOGS else " (further ones not logged)")
                continue  # the next good frame takes this sampling instant
            next_instant = math.floor(t * fps + _EPS) + 1
            sampled_t = t
            self.stats.frames_emitted += 1
            yield Frame(index=index, timestamp_sec=t, captured_at=self.start_time + t, image=image,
                        source=self.name)

    def _grab(self, cap: Any, index: int) -> bool:
        if cap.grab():
            return True
        if self.frame_count and index + 1 >= self.frame_count:
            return False  # the expected end
        for _ in range(_END_RETRIES):
            if cap.grab():
                log.warning("video file %s: unreadable data after frame %d; skipped over it", self.path, index)
                return True
        return False

    def _report_end(self, read: int) -> None:
        expected = self.frame_count
        if expected and read < expected - max(1, expected // 100):
            log.warning("video file %s ended early: read %d of %d frames (truncated or damaged file)",
                        self.path, read, expected)
        else:
            log.info("video file %s: end after %d frames, %d sampled", self.path, read, self.stats.frames_emitted)

    def close(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
