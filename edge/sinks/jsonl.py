"""File-only sink: detection events or object records as JSON lines to a file or stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO


class Serialised(Protocol):
    """What the sink writes: DetectionEvent, ObjectRecord."""

    def to_json(self) -> str: ...


class JsonlSink:
    """Writes one JSON object per line; `-` means stdout."""

    def __init__(self, target: str | Path):
        self.target = str(target)
        self._fh: TextIO = sys.stdout if self.target == "-" else open(self.target, "w", encoding="utf-8")  # noqa: SIM115
        self.written = 0

    def write(self, events: Sequence[Serialised]) -> None:
        for event in events:
            self._fh.write(event.to_json())
            self._fh.write("\n")
        self.written += len(events)

    def close(self) -> None:
        self._fh.flush()
        if self._fh is not sys.stdout:
            self._fh.close()
