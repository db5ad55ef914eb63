"""Native libraries' output (FFmpeg, OpenCV, onnxruntime on fds 1 and 2) as log records of `edge.native`."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Mapping

from edge.service import _env, under_systemd

NATIVE_LOGGER = "edge.native"
_LINE_END = re.compile(rb"\r\n|[\r\n]")
_VARIABLE = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_KIND_CHARS = 160


def native_kind(line: str) -> str:
    """What makes two native lines the same kind: their text with addresses and numbers blanked, so that
    `[h264 @ 0x55d1…] error while decoding MB 3 4` and `[h264 @ 0x55e2…] error while decoding MB 7 1` are one."""
    return _VARIABLE.sub("#", line.strip())[:_KIND_CHARS]


class NativeOutput:
    """Points fds 1 and 2 at a pipe and turns every line written there into a record of logger `edge.native`.

    Under systemd both fds are the journal stream: what C libraries print there (FFmpeg's `[h264 @ 0x…]`,
    OpenCV's `[ WARN:0@…]`, onnxruntime's warnings) would become journal entries without EDGE_STAGE,
    VEHICLE_ID or SESSION_ID. Here each line becomes a record (EDGE_STAGE=native, the context fields on it).

    Two threads, so that a library's write() never waits on logging: the reader only moves lines from the
    pipe into a bounded queue (when it is full the line is dropped and counted: `dropped`), the emitter logs
    them. The first line of each kind (`native_kind`) is logged at WARNING, repeats at DEBUG: with the
    libraries' own levels lowered to errors (`quiet_native_libraries`), what still comes is trouble an
    operator at the default INFO level should learn exists, but a decoder error repeated every frame is noise
    once its kind is known (the count is in status.json and Prometheus: native_log_lines, native_log_dropped).

    sys.stdout and sys.stderr are rebound to duplicates of the original descriptors, so Python's own output
    (a crash's traceback, print) still goes straight to the journal, even when logging itself is broken.
    """

    def __init__(self, fds: tuple[int, ...] = (1, 2), *, queue_size: int = 1000, max_line: int = 4096,
                 max_kinds: int = 256, logger: logging.Logger | None = None):
        self.fds = fds
        self.max_line, self.max_kinds = max_line, max_kinds
        self.lines = 0  # lines read from the pipe (written by the reader thread only)
        self.dropped = 0  # of those, lines not logged because the emitter was behind
        self._log = logger or logging.getLogger(NATIVE_LOGGER)
        self._queue: queue.Queue[bytes] = queue.Queue(queue_size)
        self._kinds: set[str] = set()
        self._eof = threading.Event()
        self._saved: dict[int, int] = {}  # fd -> duplicate of what it was before start()
        self._streams: list[tuple[str, object, object]] = []  # (sys attribute, original object, replacement)
        self._threads: list[threading.Thread] = []

    def start(self) -> NativeOutput:
        for name in ("stdout", "stderr"):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                getattr(sys, name).flush()  # what Python buffered so far belongs to the old destination
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)  # room for a burst while the reader is descheduled
        for fd in self.fds:
            self._saved[fd] = os.dup(fd)
            os.dup2(write_fd, fd)
        os.close(write_fd)  # fds 1 and 2 are the write ends now; the reader sees EOF once they are restored
        self._read_fd = read_fd
        for name, fd in (("stdout", 1), ("stderr", 2)):
            old = getattr(sys, name)
            if fd in self._saved and old is not None:
                new = open(os.dup(self._saved[fd]), "w", buffering=1,  # noqa: SIM115 - lives as long as sys.<name>
                           encoding=getattr(old, "encoding", None) or "utf-8", errors="backslashreplace")
                self._streams.append((name, old, new))
                setattr(sys, name, new)
                _retarget_stream_handlers(old, new)  # a handler on the old object would write into the pipe: a loop
        self._threads = [threading.Thread(target=self._read, name="edge-native-read", daemon=True),
                         threading.Thread(target=self._emit, name="edge-native-log", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Give fds 1 and 2 back, log what is still queued (up to `timeout` s); safe to call more than once."""
        for name, old, new in self._streams:
            with contextlib.suppress(OSError, ValueError):
                new.flush()
            setattr(sys, name, old)
            _retarget_stream_handlers(new, old)
            new.close()
        self._streams = []
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        for thread in self._threads:
            thread.join(timeout)

    def counts(self) -> dict[str, int]:
        return {"native_log_lines": self.lines, "native_log_dropped": self.dropped}

    def _read(self) -> None:
        pending = b""
        try:
            while chunk := os.read(self._read_fd, 65536):
                lines = _LINE_END.split(pending + chunk)
                pending = lines.pop()
                if len(pending) > self.max_line:  # no line end in sight: log what there is
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._put(line)
            self._put(pending)
        except OSError:
            pass  # the read end failed: nothing more can be read; fds 1 and 2 still accept writes
        finally:
            os.close(self._read_fd)
            self._eof.set()

    def _put(self, line: bytes) -> None:
        if not line.strip():
            return
        self.lines += 1
        try:
            self._queue.put_nowait(line[:self.max_line])
        except queue.Full:
            self.dropped += 1  # never wait here: the writer of fd 2 would block behind a full pipe

    def _emit(self) -> None:
        reported = 0
        while True:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._eof.is_set():
                    return
                continue
            if self.dropped > reported:
                self._log.warning("native output: %d lines dropped: logging could not keep up",
                                  self.dropped - reported)
                reported = self.dropped
            text = line.decode("utf-8", errors="replace").rstrip()
            kind = native_kind(text)
            if kind not in self._kinds and len(self._kinds) < self.max_kinds:
                self._kinds.add(kind)
                self._log.warning("native output (first of its kind; repeats at DEBUG): %s", text)
            else:
                self._log.debug("native output: %s", text)


def _retarget_stream_handlers(old: object, new: object) -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            handler.setStream(new)


_native: NativeOutput | None = None


def capture_native_output(env: Mapping[str, str] | None = None) -> NativeOutput | None:
    """Under systemd: fds 1 and 2 into records of `edge.native` (see `NativeOutput`); None elsewhere, where a
    terminal or a test wants the libraries' output as it is. Call before `setup_logging`, so its handler
    writes to the rebound sys.stderr."""
    global _native
    if not under_systemd(env):
        return None
    if _native is None:
        _native = NativeOutput().start()
        logging.captureWarnings(True)  # Python's warnings as records too, not plain lines on the stream
    return _native


def native_output_counts() -> dict[str, int]:
    """native_log_lines and native_log_dropped of the running capture (zeros when there is none)."""
    return _native.counts() if _native is not None else {"native_log_lines": 0, "native_log_dropped": 0}


def quiet_native_libraries(level: str | int = "INFO", env: Mapping[str, str] | None = None) -> None:
    """Lower OpenCV's and onnxruntime's own logging to errors; at DEBUG both keep their defaults.

    Called at start, not at import. An OPENCV_LOG_LEVEL in the environment (the unit) wins. FFmpeg is left as
    OpenCV sets it, errors only: OPENCV_FFMPEG_LOGLEVEL would switch it to a printf callback on stdout (seen
    with OpenCV 5.1), and its errors (connection refused, undecodable packets) say why a stream failed.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if isinstance(numeric, int) and numeric <= logging.DEBUG:
        return
    if not _env(env).get("OPENCV_LOG_LEVEL"):
        with contextlib.suppress(ImportError, AttributeError):
            import cv2

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    with contextlib.suppress(ImportError):
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # 0 verbose, 1 info, 2 warning (default), 3 error, 4 fatal
