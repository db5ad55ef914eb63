"""File-only sink: detection events as JSON lines to a file or stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edge.types import DetectionEvent


class JsonlSink:
    """Writes one JSON object per line; `-` means stdout."""

    def __init__(self, target: str | Path):
        self.target = str(target)
        self._fh: TextIO = sys.stdout if self.target == "-" else open(self.target, "w", encoding="utf-8")  # noqa: SIM115
        self.written = 0

    def write(self, events: Sequence[DetectionEvent]) -> None:
        for event in events:
            self._fh.write(event.to_json())
            self._fh.write("\n")
        self.written += len(events)

    def close(self) -> None:
        self._fh.flush()
        if self._fh is not sys.stdout:
            self._fh.close()
