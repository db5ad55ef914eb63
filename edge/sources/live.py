"""Live sources (camera, network stream, GStreamer pipeline): real-time sampling, stall detection, reconnects.

A reader thread grabs every frame as it arrives (so the decoder never lags behind the stream), converts
only the sampled ones, and hands them to `frames()` (the newest 8 at most). Sampling runs on a clock
that advances by the stream's own timestamps from frame to frame when they step plausibly
(0 < step <= 1 s), and by the wall clock otherwise (no timestamps, a jump, a reconnect): HTTP/HLS
streams arrive in bursts, and sampling them by arrival time alone would keep one frame per burst.
`set_fps()` (a SIGHUP reload) changes the rate from any thread: the next sample comes one new period
after the last one.

When the source stops delivering (no frame for `stall_timeout_s`, read errors, or it cannot be
opened) the reader logs one "source X lost: reason", reopens with capped exponential backoff with
jitter (reset once frames flow) and logs "source X back after N.N s" at the first frame. `frames()`
itself never blocks longer than 0.1 s, and replaces a reader stuck in a capture call that ignores
its timeouts.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import cv2

from edge.backoff import Backoff
from edge.sources.base import SourceError, SourceStats, display_name
from edge.types import Frame

log = logging.getLogger(__name__)

LiveKind = Literal["camera", "stream", "gstreamer"]
OpenCapture = Callable[[], Any]  # -> object with grab/retrieve/isOpened/release (a cv2.VideoCapture)

_POLL_S = 0.1  # how often waits look at the stop events
_MAX_MEDIA_STEP_S = 1.0  # a larger step between stream timestamps is a discontinuity: use the wall clock
_EPS_S = 1e-6
_HANDOFF_FRAMES = 8  # sampled frames held for frames(): absorbs a burst (HLS segment) without dropping
_READ_FAILURES = 3  # consecutive failed grabs that end a connection (sooner if the stall timeout has passed)


class _Reader:
    """One reader thread and what frames() needs to supervise it."""

    def __init__(self, target: Callable[[_Reader], None], name: str):
        self.halt = threading.Event()
        self.busy_since: float | None = None  # monotonic time it entered a capture call, None when not inside one
        self.busy_in = ""
        self.thread = threading.Thread(target=target, args=(self,), name=name, daemon=True)


class LiveSource:
    """A camera, network stream or GStreamer pipeline, sampled in real time at `inference_fps`."""

    live = True

    def expected_frames(self) -> None:
        return None  # a live source has no end

    def __init__(
        self,
        uri: str,
        kind: LiveKind,
        *,
        inference_fps: float,
        stall_timeout_s: float = 5.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        decode_threads: int = 1,
        open_capture: OpenCapture | None = None,
        rng: random.Random | None = None,
    ):
        if inference_fps <= 0 or stall_timeout_s <= 0 or reconnect_initial_s <= 0 or reconnect_max_s <= 0:
            raise ValueError("inference_fps, stall_timeout_s and reconnect delays must be > 0")
        self.uri = uri
        self.kind: LiveKind = kind
        self.name = f"camera {uri}" if uri.isdigit() else display_name(uri)
        self.period_s = 1.0 / inference_fps  # guarded by _grid_lock: set_fps() changes it from another thread
        self.stall_timeout_s = stall_timeout_s
        self.decode_threads = decode_threads
        self.open_timeout_s = max(2.0 * stall_timeout_s, 5.0)
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_initial_s)
        # a capture call blocked this long ignores its own timeouts: frames() replaces the reader
        self.hang_timeout_s = self.open_timeout_s + stall_timeout_s
        self.stats = SourceStats()
        if open_capture is None:
            self._check_backend()
            open_capture = self._open_default
        self._open_capture = open_capture
        self._backoff = Backoff(self.reconnect_initial_s, self.reconnect_max_s, (rng or random.Random()).random)
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._pending: collections.deque[Frame] = collections.deque()  # sampled, not yet taken by frames()
        self._error: BaseException | None = None
        self._reader: _Reader | None = None
        self._started_at = 0.0  # monotonic: first frames() call
        self._opened_at: float | None = None  # monotonic: first successful open (timestamp_sec counts from it)
        self._last_frame_at: float | None = None  # monotonic: last good grab
        self._outage_since: float | None = None  # monotonic: start of the current outage, None when none
        self._frame_index = -1
        self._clock = 0.0  # sampling clock, seconds: stream time steps where plausible, else wall-clock steps
        self._last_grab: float | None = None  # monotonic time of the previous good grab
        self._grid_lock = threading.Lock()  # period_s, _next_due, _last_sample: the reader vs set_fps()
        self._next_due = 0.0  # sampling clock value at which the next frame may be emitted
        self._last_sample: float | None = None  # sampling clock value of the last emitted frame
        self._opens = 0

    def set_fps(self, fps: float) -> None:
        """Sample at `fps` from now on; the next frame is due one new period after the last sampled one."""
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"inference_fps must be > 0, got {fps}")
        with self._grid_lock:
            old = 1.0 / self.period_s
            self.period_s = 1.0 / fps
            if self._last_sample is not None:  # else the first frame is due anyway
                self._next_due = self._last_sample + self.period_s
        log.info("source %s: sampling at %g fps (was %g)", self.name, fps, old)

    # -- opening ----------------------------------------------------------------------------------
    def _check_backend(self) -> None:
        if self.kind == "gstreamer" and not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            raise SourceError(
                f"GStreamer pipeline {self.name!r}: this OpenCV build has no GStreamer support "
                "(cv2.getBuildInformation() shows 'GStreamer: NO'); use an OpenCV built with GStreamer "
                "(e.g. JetPack's) or give the camera/stream URL directly"
            )
        if self.kind == "stream" and not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            raise SourceError(f"stream {self.name}: this OpenCV build has no FFmpeg backend to read streams")

    def _open_default(self) -> Any:
        if self.kind == "camera":
            target: int | str = int(self.uri) if self.uri.isdigit() else self.uri
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            return cv2.VideoCapture(target, api)
        if self.kind == "stream":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.stall_timeout_s * 1000),
                      cv2.CAP_PROP_N_THREADS, self.decode_threads]
            return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(self.uri, cv2.CAP_GSTREAMER)

    def _open_failure(self) -> str:
        if self.kind == "camera" and not self.uri.isdigit() and not Path(self.uri).exists():
            return f"cannot open: no such device {self.uri}"
        if self.kind == "camera":
            return "cannot open the camera (unplugged, busy, or no permission)"
        return "cannot open (unreachable, refused, timed out, or not a video stream)"

    # -- frames() and its supervision ---------------------------------------------------------------
    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        self._started_at = time.monotonic()
        self._error = None
        with self._cond:
            self._pending.clear()
        reader = self._start_reader(stop)
        try:
            while not stop.is_set() and not self._closed.is_set():
                frame = self._take(_POLL_S)
                if frame is not None:
                    self.stats.frames_emitted += 1
                    yield frame
                    continue
                if self._error is not None:
                    raise SourceError(f"source {self.name}: reader failed: {self._error!r}") from self._error
                blocked = self._blocked_for(reader)
                if blocked > self.hang_timeout_s:
                    self._lost(f"capture blocked in {reader.busy_in} for {blocked:.1f} s")
                    log.warning("source %s: abandoning a reader blocked in %s; starting a new one", self.name,
                                reader.busy_in)
                    reader.halt.set()  # it releases its capture when the call returns
                    reader = self._start_reader(stop)
        finally:
            reader.halt.set()
            reader.thread.join(timeout=1.0)
            self._close_outage_books()

    def _start_reader(self, stop: threading.Event) -> _Reader:
        reader = _Reader(lambda r: self._read_loop(r, stop), name=f"source-{self.kind}")
        with self._cond:
            self._reader = reader
        reader.thread.start()
        return reader

    def _take(self, timeout: float) -> Frame | None:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            return self._pending.popleft() if self._pending else None

    @staticmethod
    def _blocked_for(reader: _Reader) -> float:
        since = reader.busy_since
        return 0.0 if since is None else time.monotonic() - since

    # -- the reader thread --------------------------------------------------------------------------
    def _halted(self, reader: _Reader, stop: threading.Event) -> bool:
        return reader.halt.is_set() or stop.is_set() or self._closed.is_set()

    def _sleep(self, reader: _Reader, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._halted(reader, stop):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            reader.halt.wait(min(left, _POLL_S))

    def _read_loop(self, reader: _Reader, stop: threading.Event) -> None:
        try:
            self._backoff.reset()
            while not self._halted(reader, stop):
                cap = self._call(reader, "open", self._open_capture)
                if cap is None or not cap.isOpened():
                    if cap is not None:
                        cap.release()
                    if self._halted(reader, stop):
                        return
                    self._lost(self._open_failure())
                else:
                    self._opened(cap)
                    try:
                        reason, delivered = self._read(cap, reader, stop)
                    finally:
                        cap.release()
                    if reason is None:
                        return
                    if delivered:
                        self._backoff.reset()
                    self._lost(reason)
                delay = self._backoff.next()
                log.debug("source %s: reconnect attempt %d in %.2f s", self.name, self._backoff.failures, delay)
                self._sleep(reader, stop, delay)
        except Exception as exc:  # an OpenCV error or a bug: frames() raises it in the consumer's thread
            log.exception("source %s: reader thread failed", self.name)
            self._error = exc

    def _call(self, reader: _Reader, what: str, fn: Callable[[], Any]) -> Any:
        reader.busy_in, reader.busy_since = what, time.monotonic()
        try:
            return fn()
        except cv2.error as exc:
            log.debug("source %s: %s raised %s", self.name, what, exc)
            return None
        finally:
            reader.busy_since = None

    def _opened(self, cap: Any) -> None:
        with self._cond:
            self._opens += 1
            if self._opened_at is None:
                self._opened_at = time.monotonic()
            if self._opens > 1:
                self.stats.reconnects += 1
        log.debug("source %s opened (%d)", self.name, self._opens)

    def _read(self, cap: Any, reader: _Reader, stop: threading.Event) -> tuple[str | None, bool]:
        """Grab until the connection fails; (reason, whether any frame came), reason None when halted."""
        failures = 0
        delivered = False
        last_ok = time.monotonic()
        prev_pts: float | None = None  # stream timestamps of an earlier connection mean nothing here
        while not self._halted(reader, stop):
            ok = self._call(reader, "grab", cap.grab)
            now, wall = time.monotonic(), time.time()
            if reader.halt.is_set():
                return None, delivered  # abandoned while blocked: a newer reader owns the books
            if not ok:
                failures += 1
                silent = now - last_ok
                if silent >= self.stall_timeout_s:
                    return f"no frame for {silent:.1f} s", delivered
                if failures >= _READ_FAILURES:
                    return "read failed (stream ended or device error)", delivered
                self._sleep(reader, stop, 0.02)
                continue
            failures, last_ok, delivered = 0, now, True
            index = self._frame_grabbed(now)
            pts = self._stream_time(cap)
            clock = self._advance_clock(now, pts, prev_pts)
            prev_pts = pts
            if not self._due(clock):
                continue  # not sampled: no colour conversion
            ok, image = self._call(reader, "retrieve", cap.retrieve) or (False, None)
            if not ok or image is None or image.size == 0:
                self.stats.corrupt_frames += 1
                log.debug("source %s: frame %d does not decode; skipped", self.name, index)
                continue
            self._sampled(clock)
            opened_at = self._opened_at if self._opened_at is not None else now
            self._publish(Frame(index=index, timestamp_sec=now - opened_at, captured_at=wall, image=image,
                                source=self.name, decoded_at=now), reader, stop)
        return None, delivered

    def _due(self, clock: float) -> bool:
        with self._grid_lock:
            return clock + _EPS_S >= self._next_due  # (frame times land on the grid exactly: float slack)

    def _sampled(self, clock: float) -> None:
        with self._grid_lock:
            # stay on the 1/fps grid unless more than a period late (after a gap), or early because set_fps()
            # moved the grid between _due() and here: then start a new grid at this frame
            late = clock - self._next_due
            on_grid = -_EPS_S <= late < self.period_s
            self._next_due = (self._next_due if on_grid else clock) + self.period_s
            self._last_sample = clock

    def _stream_time(self, cap: Any) -> float | None:
        """The stream's timestamp of the frame just grabbed, in seconds; None if it has none."""
        try:
            msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        except (cv2.error, AttributeError, TypeError, ValueError):
            return None
        return msec / 1000.0 if math.isfinite(msec) and msec > 0 else None

    def _advance_clock(self, now: float, pts: float | None, prev_pts: float | None) -> float:
        if pts is not None and prev_pts is not None and 0 < pts - prev_pts <= _MAX_MEDIA_STEP_S:
            self._clock += pts - prev_pts
        elif self._last_grab is not None:
            self._clock += now - self._last_grab
        self._last_grab = now
        return self._clock

    def _publish(self, frame: Frame, reader: _Reader, stop: threading.Event) -> None:
        with self._cond:
            if self._halted(reader, stop):
                return
            if len(self._pending) >= _HANDOFF_FRAMES:
                self._pending.popleft()
                self.stats.dropped += 1  # the consumer fell behind by a whole burst
            self._pending.append(frame)
            self._cond.notify_all()

    # -- outage bookkeeping -------------------------------------------------------------------------
    def _frame_grabbed(self, now: float) -> int:
        with self._cond:
            self.stats.frames_read += 1
            self._frame_index += 1
            self._last_frame_at = now
            gap = None
            if self._outage_since is not None:
                gap = now - self._outage_since
                self.stats.outage_seconds += gap
                self._outage_since = None
                self.stats.in_outage = False
            index = self._frame_index
        if gap is not None:
            log.info("source %s back after %.1f s", self.name, gap)
        return index

    def _lost(self, reason: str) -> None:
        with self._cond:
            if self._outage_since is not None:
                log.debug("source %s still down: %s", self.name, reason)
                return
            self.stats.outages += 1
            self.stats.in_outage = True
            self._outage_since = self._last_frame_at if self._last_frame_at is not None else self._started_at
        log.warning("source %s lost: %s", self.name, reason)

    def _close_outage_books(self) -> None:
        """Count an outage still going on when frames() ends (a later frames() starts a new one)."""
        with self._cond:
            if self._outage_since is not None:
                self.stats.outage_seconds += time.monotonic() - self._outage_since
                self._outage_since = None
                self.stats.in_outage = False

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            reader = self._reader
            self._cond.notify_all()
        if reader is not None and reader.thread is not threading.current_thread():
            reader.halt.set()
            reader.thread.join(timeout=1.0)

