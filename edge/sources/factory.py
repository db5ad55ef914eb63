"""Which source a configured `uri` names, and opening it: open_source(cfg)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edge.clock import parse_iso_time
from edge.config import SourceConfig
from edge.sources.base import FrameSource, SourceError, display_name
from edge.sources.image_folder import ImageFolderSource, is_image_path
from edge.sources.live import LiveSource
from edge.sources.video_file import VideoFileSource

Kind = Literal["file", "folder", "camera", "stream", "gstreamer"]
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def detect_kind(uri: str) -> Kind:
    """camera: an index or /dev/video*, /dev/v4l/*; stream: a URL; gstreamer: has '!';
    folder: an existing directory; file: anything else."""
    s = uri.strip()
    if s.isdigit() or s.startswith(("/dev/video", "/dev/v4l/")):
        return "camera"
    if s.lower().startswith(STREAM_SCHEMES):
        return "stream"
    if "!" in s:
        return "gstreamer"
    if Path(s).is_dir():
        return "folder"
    return "file"


def parse_start_time(value: str) -> float:
    """ISO 8601 -> Unix seconds; a time without an offset is taken as UTC."""
    try:
        return parse_iso_time(value)
    except ValueError:
        raise SourceError(f"source.start_time {value!r}: not an ISO 8601 date-time "
                          "(e.g. 2024-05-01T08:30:00Z)") from None


def open_source(cfg: SourceConfig, *, start_time: float | None = None) -> FrameSource:
    """The source `cfg.uri` names (kind from `cfg.kind`, or detected). SourceError if it cannot be used.

    Files and folders are checked now (first frame decodes, images exist); live sources are opened by
    `frames()` and retried there, so a camera or stream that is not up yet is an outage, not an error.
    `start_time` (Unix seconds) dates a video file's frames; else cfg.start_time, else the file's mtime.
    """
    uri = cfg.uri.strip()  # SourceConfig refuses an empty uri and a start_time that is not ISO 8601
    kind: Kind = detect_kind(uri) if cfg.kind == "auto" else cfg.kind
    if kind in ("camera", "stream", "gstreamer"):
        return LiveSource(uri, kind, inference_fps=cfg.inference_fps, stall_timeout_s=cfg.stall_timeout_s,
                          reconnect_initial_s=cfg.reconnect_initial_s, reconnect_max_s=cfg.reconnect_max_s,
                          decode_threads=cfg.decode_threads)
    path = Path(uri).expanduser()
    if kind == "folder" or (kind == "file" and is_image_path(path)):
        return ImageFolderSource(path, inference_fps=cfg.inference_fps)
    if path.is_dir():
        raise SourceError(f"video file {display_name(uri)}: is a directory (kind 'folder' reads image folders)")
    if start_time is None and cfg.start_time:
        start_time = parse_start_time(cfg.start_time)
    return VideoFileSource(path, inference_fps=cfg.inference_fps, start_time=start_time)
