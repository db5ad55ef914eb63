"""The capture stage: a source's sampled frames into a bounded queue (live: drop the oldest; files: block)."""

from __future__ import annotations

import logging
import threading
import time

from edge.buffers import BoundedQueue
from edge.sources.base import FrameSource
from edge.types import Frame, QueuePolicy

log = logging.getLogger(__name__)


def queue_policy(source: FrameSource) -> QueuePolicy:
    """A live source must never wait for inference (drop the oldest frame); a replay must lose nothing (block)."""
    return "drop_oldest" if source.live else "block"


class Capture:
    """Runs `source.frames(stop)` into `out`; puts only frames, closes `out` at the end of the stream or on
    `stop` (downstream then gets Closed).

    Drops under `drop_oldest` are counted in `source.stats.dropped` and logged at most once per
    `drop_log_interval_s`. An exception from the source propagates with `out` left
    open, so the runner may restart the stage; the runner closes `out` when it gives up.
    """

    def __init__(self, source: FrameSource, out: BoundedQueue[Frame], *, drop_log_interval_s: float = 10.0):
        expected = queue_policy(source)
        if out.policy != expected:
            kind = "live" if source.live else "file"
            raise ValueError(f"capture of {kind} source {source.name} needs a '{expected}' queue, got "
                             f"'{out.policy}' (use Capture.queue_for)")
        self.source = source
        self.out = out
        self.drop_log_interval_s = drop_log_interval_s
        self._drops_unlogged = 0
        self._last_drop_log = float("-inf")

    @staticmethod
    def queue_for(source: FrameSource, maxsize: int) -> BoundedQueue[Frame]:
        """The queue this stage expects for `source`."""
        return BoundedQueue(maxsize, queue_policy(source))

    def run(self, stop: threading.Event) -> None:
        frames = self.source.frames(stop)
        try:
            for frame in frames:
                if self.out.closed:
                    log.info("capture %s: output queue closed by its consumer; stopping", self.source.name)
                    break
                if self.out.put(frame, stop) is not None:
                    self._dropped()
                if stop.is_set():
                    break
            self.out.close()  # not after an exception: the runner may restart the stage on the same queue
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            self._flush_drop_log()
            s = self.source.stats
            log.info("capture %s finished: %d frames read, %d emitted, %d corrupt, %d dropped, %d outages "
                     "(%.1f s), %d reconnects", self.source.name, s.frames_read, s.frames_emitted,
                     s.corrupt_frames, s.dropped, s.outages, s.outage_seconds, s.reconnects)

    def _dropped(self) -> None:
        self.source.stats.dropped += 1
        self._drops_unlogged += 1
        if time.monotonic() - self._last_drop_log >= self.drop_log_interval_s:
            self._flush_drop_log()

    def _flush_drop_log(self) -> None:
        if self._drops_unlogged:
            log.warning("capture %s: inference is behind; dropped %d oldest frames (%d in all)", self.source.name,
                        self._drops_unlogged, self.source.stats.dropped)
            self._drops_unlogged = 0
            self._last_drop_log = time.monotonic()
