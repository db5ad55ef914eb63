"""The frame-source interface shared by every source kind: FrameSource, SourceStats, SourceError."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from edge.types import Frame


class SourceError(Exception):
    """A source that cannot be used; the message names the path or URL (without credentials) and why."""


@dataclass(slots=True)
class SourceStats:
    """Counters of one source; written by the source's thread (and `dropped` by Capture), read by anyone."""

    frames_read: int = 0  # frames decoded (grabbed) from the source
    frames_emitted: int = 0  # frames handed on after sampling
    corrupt_frames: int = 0  # frames/images that failed to decode and were skipped
    reconnects: int = 0  # live: successful reopenings after an outage
    outages: int = 0  # live: times the source stopped delivering (or could not be opened)
    outage_seconds: float = 0.0  # live: time without frames, from the last good frame to the next one
    dropped: int = 0  # sampled frames discarded because the consumer was behind (set by Capture)
    in_outage: bool = False  # live: not delivering right now, reconnecting (idle on purpose, not hung)


class FrameSource(Protocol):
    """A producer of frames already sampled at the configured inference rate."""

    name: str  # display name: file name, or URL with any user:password stripped
    live: bool  # True: wall-clock sampling, frames may be dropped; False: replay, nothing lost
    stats: SourceStats

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield sampled frames until the end of the source or until `stop` is set."""
        ...

    def expected_frames(self) -> int | None:
        """Frames `frames()` will yield, when known in advance (recordings); None for live sources."""
        ...

    def set_fps(self, fps: float) -> None:
        """Sample at `fps` from the next frame on (a SIGHUP reload); callable from any thread while `frames()`
        runs. ValueError unless 0 < fps < inf."""
        ...

    def close(self) -> None:
        """Release the device, file or connection; safe to call more than once."""
        ...


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|auth|key|secret|signature)=)[^&;\s]*"
)


def display_name(uri: str) -> str:
    """`uri` with every user:password@ removed and secret-looking query values masked (also inside pipelines)."""
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>", uri))
