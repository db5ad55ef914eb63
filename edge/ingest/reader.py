"""Streams a CSV file (plain or gzip) as chunks of whole lines with their line numbers and byte offsets.

Memory is bounded by the chunk size: a chunk ends at the last newline of a block that is not inside a
quoted field (quote parity), so a record never straddles two chunks. Offsets count bytes of the
decompressed stream after the header; a later run seeks to a checkpointed offset and goes on from there.
A gzip stream that is truncated or corrupt yields every complete line before the damage and then ends, with
`damage` saying what and how much was kept: the run writes every chunk, then reports it (an InputError).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.ingest.rows import Header, HeaderError, parse_header

GZIP_MAGIC = b"\x1f\x8b"
MAX_HEADER = 1 << 20
MAX_CHUNK = 64 << 20  # a "line" longer than this is cut (and rejected) rather than held in memory


class InputError(Exception):
    """The file cannot be read as a CSV (missing, unreadable, corrupt compression, no usable header)."""


@dataclass(frozen=True)
class Chunk:
    data: bytes  # whole lines, each ending with b"\n" (one is added to a last line that has none)
    first_line: int  # physical line number of the first line (the header is line 1)
    end_offset: int  # offset just past this chunk in the (decompressed) stream
    next_line: int  # line number of the line after this chunk


class CsvFile:
    """A CSV input: header parsed on open; `chunks(offset, line)` streams the rest."""

    def __init__(self, path: str | Path, chunk_bytes: int = 1 << 20):
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        try:
            self._raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        self.size = self._size()
        magic = self._raw.read(2)
        self._raw.seek(0)
        self.compressed = magic == GZIP_MAGIC
        self._stream: BinaryIO = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.compressed else self._raw
        self.damage: str | None = None  # why reading stopped short of the end, if it did (after chunks() ends)
        self.header, self.data_offset = self._read_header()

    def _size(self) -> int:
        try:
            return self._raw.seek(0, io.SEEK_END)
        finally:
            self._raw.seek(0)

    def _read(self, n: int) -> bytes:
        """Up to `n` bytes; fewer at the end of the stream or at a read error, which sets `damage`.

        gzip's read(n) drops what it decompressed in the call that fails; read1 returns the output of one
        decompression step at a time, so every byte before the damage is kept."""
        parts: list[bytes] = []
        got = 0
        while got < n and self.damage is None:
            try:
                part = self._stream.read1(n - got) if self.compressed else self._stream.read(n - got)
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                kind = "corrupt or truncated gzip data" if self.compressed else "read error"
                self.damage = f"{kind}: {exc}"
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _read_header(self) -> tuple[Header, int]:
        head = self._read(min(MAX_HEADER, 64 << 10))
        while b"\n" not in head and len(head) < MAX_HEADER:
            more = self._read(64 << 10)
            if not more:
                break
            head += more
        if self.damage is not None and b"\n" not in head:
            raise InputError(f"{self.path}: {self.damage} (before the end of the header line)")
        if not head:
            raise InputError(f"{self.path}: empty file (no header line)")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{self.path}: UTF-16 text; convert the file to UTF-8")
        end = head.find(b"\n")
        if end < 0 and len(head) >= MAX_HEADER:
            raise InputError(f"{self.path}: no line break in the first {MAX_HEADER >> 20} MiB: not a CSV file")
        line = head if end < 0 else head[:end]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: the header line is not UTF-8 text (a binary file?)") from None
        try:
            header = parse_header(text)
        except HeaderError as exc:
            raise InputError(f"{self.path}: {exc}") from None
        return header, len(head) if end < 0 else end + 1

    def position(self) -> int:
        """Bytes of the file itself consumed so far (compressed bytes for gzip): for progress."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def chunks(self, offset: int | None = None, line: int = 2) -> Iterator[Chunk]:
        """Chunks from `offset` (default: just after the header), whose first line is `line`."""
        offset = self.data_offset if offset is None else offset
        self.damage = None
        try:
            self._stream.seek(offset)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot seek to offset {offset}: {exc}") from None
        carry = b""
        eof = False
        while not eof or carry:
            if not eof:
                block = self._read(self.chunk_bytes)
                eof = not block or self.damage is not None
                buf = carry + block
            else:
                buf = carry
            final = eof and self.damage is None  # after damage, a last line without newline is cut short
            cut = _cut(buf, final=final)
            if cut == 0 and not eof and len(buf) < MAX_CHUNK:
                carry = buf
                continue
            if cut == 0 and not eof:
                cut = len(buf)  # an over-long line
            data, carry = buf[:cut], buf[cut:]
            if data:
                end_offset = offset + len(data)
                if not data.endswith(b"\n"):
                    data += b"\n"
                nlines = data.count(b"\n")
                yield Chunk(data, line, end_offset, line + nlines)
                offset, line = end_offset, line + nlines
            if self.damage is not None:
                kept = f"every complete line before line {line:,} is kept ({line - 2:,} data lines)"
                if carry:
                    kept += f"; the {len(carry):,} bytes of the cut line after them are dropped"
                self.damage = f"{self.path}: {self.damage}: {kept}"
                return

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut(buf: bytes, final: bool) -> int:
    """Length of the longest prefix of `buf` that ends a line outside quotes (0: none)."""
    last = buf.rfind(b"\n") + 1
    if final or last == 0:
        return len(buf) if final else 0
    if b'"' not in buf[:last]:
        return last
    arr = np.frombuffer(buf, np.uint8, count=last)
    quotes = np.cumsum(arr == 34, dtype=np.int64)
    newlines = np.flatnonzero(arr == 10)
    even = newlines[(quotes[newlines] & 1) == 0]
    return int(even[-1]) + 1 if even.size else last  # unbalanced quotes: cut at the line anyway
