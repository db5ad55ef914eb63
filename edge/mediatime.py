"""When a recording started: the MP4/MOV container's creation time (mvhd box), for replays and GPS tracks."""

from __future__ import annotations

import struct
from pathlib import Path

_MP4_EPOCH_OFFSET = 2_082_844_800  # seconds from 1904-01-01 (QuickTime epoch) to 1970-01-01
_CONTAINERS = {b"moov"}


def _boxes(fh, end: int):  # noqa: ANN001, ANN202
    """(type, payload offset, payload size) of the boxes between the file position and `end`."""
    while fh.tell() + 8 <= end:
        start = fh.tell()
        header = fh.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        offset = 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            offset = 16
        elif size == 0:
            size = end - start
        if size < offset or start + size > end:
            return
        yield kind, start + offset, size - offset
        fh.seek(start + size)


def container_creation_time(path: str | Path) -> float | None:
    """Epoch seconds of the mvhd creation time of an MP4/MOV file; None when absent, zero or unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            fh.seek(0)
            for kind, offset, size in _boxes(fh, end):
                if kind not in _CONTAINERS:
                    continue
                fh.seek(offset)
                for child, c_offset, c_size in _boxes(fh, offset + size):
                    if child != b"mvhd" or c_size < 8:
                        continue
                    fh.seek(c_offset)
                    version = fh.read(1)[0]
                    fh.read(3)
                    raw = fh.read(8 if version == 1 else 4)
                    value = struct.unpack(">Q" if version == 1 else ">I", raw)[0]
                    return float(value - _MP4_EPOCH_OFFSET) if value else None
    except (OSError, struct.error, IndexError):
        return None
    return None
