"""Frame sources (video file, image folder, camera, stream, GStreamer) and the capture stage that queues them."""

from edge.sources.base import FrameSource, SourceError, SourceStats, display_name
from edge.sources.capture import Capture, queue_policy
from edge.sources.factory import detect_kind, open_source, parse_start_time
from edge.sources.image_folder import IMAGE_EXTENSIONS, ImageFolderSource
from edge.sources.live import LiveSource
from edge.sources.video_file import VideoFileSource

__all__ = [
    "IMAGE_EXTENSIONS",
    "Capture",
    "FrameSource",
    "ImageFolderSource",
    "LiveSource",
    "SourceError",
    "SourceStats",
    "VideoFileSource",
    "detect_kind",
    "display_name",
    "open_source",
    "parse_start_time",
    "queue_policy",
]
