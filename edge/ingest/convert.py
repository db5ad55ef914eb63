"""A chunk of CSV lines → serialised events and rejects: the vectorised path where it can, the exact path for the rest."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edge.ingest.fast import FastChunk, FastPath
from edge.ingest.rows import (
    FileContext,
    Header,
    Row,
    RowError,
    build_event,
    event_json,
    parse_row,
)


def splice_track_id(event_json: bytes, track_id: int) -> bytes:
    """An event's JSON (no newline, or one) with its `"track_id":null` replaced by the id: both paths write null,
    the tracker (edge.ingest.tracking) runs after them, in line order."""
    at = event_json.rfind(_NULL)
    if at < 0:
        raise ValueError(f"no track_id null in event {bytes(event_json[:80])!r}")
    return b'%s"track_id":%d%s' % (event_json[:at], track_id, event_json[at + len(_NULL):])


_NULL = b'"track_id":null'


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str
    raw: str  # the record's text as read (undecodable bytes shown as \\xNN)


@dataclass
class Batch:
    """The events and rejects of one chunk; events in line order."""

    rows: int = 0  # records seen (accepted + rejected); blank lines are not records
    fast: FastChunk | None = None
    exact: list[tuple[int, bytes, str, float]] = field(default_factory=list)  # (line, json, id, captured)
    rejects: list[Reject] = field(default_factory=list)
    first_line: int = 0
    exact_rows: dict[int, Row] = field(default_factory=dict)  # line -> values of each exact row, for tracking

    @property
    def accepted(self) -> int:
        return (self.fast.rows.size if self.fast is not None else 0) + len(self.exact)

    def events(self) -> Iterator[tuple[int, bytes, str, float]]:
        """(line, JSON without newline, detection id, captured_at epoch) of every accepted row, in line order."""
        fast = self.fast
        if fast is None or fast.rows.size == 0:
            yield from self.exact
            return
        data = bytes(fast.data)
        starts = fast.starts.tolist()
        ends = starts[1:] + [len(data)]
        lines = (fast.rows + self.first_line).tolist()
        ids = fast.ids.view("S36").ravel().astype("U36").tolist()
        rows = zip(lines, (data[s : e - 1] for s, e in zip(starts, ends)), ids, fast.captured.tolist())
        if not self.exact:
            yield from rows
            return
        exact = iter(sorted(self.exact))
        nxt = next(exact, None)
        for row in rows:
            while nxt is not None and nxt[0] < row[0]:
                yield nxt
                nxt = next(exact, None)
            yield row
        while nxt is not None:
            yield nxt
            nxt = next(exact, None)

    def points(self) -> dict:
        """What tracking reads of each accepted row, in line order: arrays (u, v, confidence, lat, lon, heading
        NaN where empty, frame, time) and lists (class, id, line)."""
        keys = ("u", "v", "confidence", "lat", "lon", "heading", "frame", "time")
        cols: dict = {k: [] for k in (*keys, "class", "id", "line")}
        fast = self.fast
        if fast is not None and fast.rows.size:
            for k in keys:
                cols[k].append(fast.points[k])
            cols["class"] += fast.points["class"]
            cols["id"] += fast.ids.view("S36").ravel().astype("U36").tolist()
            cols["line"] += (fast.rows + self.first_line).tolist()
        if self.exact:
            nan = float("nan")
            rows = [(line, did, self.exact_rows[line], cap) for line, _v, did, cap in self.exact]
            values = {k: [] for k in keys}
            for line, did, r, cap in rows:
                for k, x in zip(keys, (r.u, r.v, r.confidence, r.vehicle_lat, r.vehicle_lon, r.heading,
                                       r.frame_number, cap)):
                    values[k].append(nan if x is None else x)
                cols["class"].append(r.class_name)
                cols["id"].append(did)
                cols["line"].append(line)
            for k in keys:
                cols[k].append(np.asarray(values[k], np.float64))
        out = {k: np.concatenate(cols[k]) if cols[k] else np.zeros(0) for k in keys}
        order = np.argsort(np.asarray(cols["line"], np.int64), kind="stable")
        for k in keys:
            out[k] = out[k][order]
        for k in ("class", "id", "line"):
            out[k] = [cols[k][i] for i in order.tolist()]
        out["line"] = np.asarray(out["line"], np.int64)
        return out

    def set_track_ids(self, track: dict[int, int]) -> None:
        """Writes each accepted row's track id (line -> id) into its event JSON."""
        fast = self.fast
        if fast is not None and fast.rows.size:
            data = bytes(fast.data)
            starts = fast.starts.tolist() + [len(data)]
            lines = (fast.rows + self.first_line).tolist()
            parts = [splice_track_id(data[s:e], track[line]) for s, e, line in zip(starts, starts[1:], lines)]
            fast.starts = np.cumsum([0] + [len(p) for p in parts[:-1]], dtype=np.int64)
            fast.data = memoryview(b"".join(parts))
        self.exact = [(line, splice_track_id(value, track[line]), did, cap) for line, value, did, cap in self.exact]

    def json_lines(self) -> Iterator[bytes | memoryview]:
        """Newline-terminated JSON lines of the accepted rows (buffers: write them, do not keep them)."""
        if self.fast is not None and not self.exact:
            yield self.fast.data
            return
        for _line, value, _id, _cap in self.events():
            yield value + b"\n"


def _exact_row(fields: list[str], line: int, raw: str, header: Header, ctx: FileContext, ingested_at: str, batch: Batch) -> None:
    batch.rows += 1
    try:
        row = parse_row(fields, header)
        event = build_event(row, ctx, line, ingested_at)
    except RowError as exc:
        batch.rejects.append(Reject(line, str(exc), raw))
        return
    batch.exact.append((line, event_json(event).encode(), event.detection_id, ctx.start_time + row.timestamp_sec))
    batch.exact_rows[line] = row


def _shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").rstrip("\r\n")


def exact_chunk(chunk: bytes, first_line: int, header: Header, ctx: FileContext, ingested_at: str, batch: Batch) -> None:
    """Every record of the chunk through the csv module and the reference builder (quoted fields, blank
    lines, multi-line records, bad bytes: whatever the vectorised path declined)."""
    text = chunk.decode("utf-8", "surrogateescape")
    lines = text.split("\n")[:-1]  # the chunk ends with a newline
    reader = csv.reader(line + "\n" for line in lines)
    done = 0  # lines consumed by finished records
    while True:
        start = first_line + done
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = "\n".join(lines[done : reader.line_num])
            batch.rows += 1
            batch.rejects.append(Reject(start, f"malformed CSV: {exc}", _shown(raw)))
            done = reader.line_num
            continue
        raw = "\n".join(lines[done : reader.line_num])
        done = reader.line_num
        if not fields or fields == [""] and not raw.strip("\r"):
            continue  # blank line
        _exact_row(fields, start, _shown(raw), header, ctx, ingested_at, batch)


def _unquote(chunk: bytes) -> tuple[list[str], bytes] | None:
    """A quoted chunk (say every field in quotes) rewritten without quotes, one record per line, when that
    changes no field: then the vectorised path can take it. None when a record spans lines, a line is blank,
    or a field holds a comma, quote, CR or NUL."""
    if b"\0" in chunk:
        return None
    text = chunk.decode("utf-8", "surrogateescape")
    lines = text.split("\n")[:-1]
    out = []
    try:
        for fields, line in zip(csv.reader(lines), lines):
            if not line or line.count('"') % 2:
                return None
            for f in fields:
                if "," in f or '"' in f or "\r" in f:
                    return None
            out.append(",".join(fields))
    except csv.Error:
        return None
    if len(out) != len(lines):
        return None
    return lines, ("\n".join(out) + "\n").encode("utf-8", "surrogateescape")


def _original(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


class Converter:
    """Converts the chunks of one file (one instance per worker thread: the fast path keeps buffers)."""

    def __init__(self, header: Header, ctx: FileContext, *, vectorised: bool = True):
        self.header, self.ctx = header, ctx
        self.fast = FastPath(header, ctx) if vectorised else None

    def convert(self, chunk: bytes, first_line: int, ingested_at: str) -> Batch:
        batch = Batch(first_line=first_line)
        fast = None
        source_lines: list[str] | None = None
        if self.fast is not None:
            if FastPath.regular(chunk):
                fast = self.fast.run(chunk, first_line, ingested_at)
            else:
                unquoted = _unquote(chunk)
                if unquoted is not None:
                    source_lines, plain = unquoted
                    fast = self.fast.run(plain, first_line, ingested_at)
                    chunk = plain
        if fast is None:
            exact_chunk(chunk if source_lines is None else _original(source_lines), first_line, self.header, self.ctx,
                        ingested_at, batch)
            return batch
        batch.fast = fast
        batch.rows = fast.rows.size
        for r in fast.flagged.tolist():
            if source_lines is not None:
                raw = source_lines[r].rstrip("\r")
            else:
                raw = chunk[int(fast.line_starts[r]) : int(fast.line_ends[r])].decode("utf-8", "surrogateescape").rstrip("\r")
            before = len(batch.rejects) + len(batch.exact)
            exact_chunk((raw + "\n").encode("utf-8", "surrogateescape"), first_line + r, self.header, self.ctx, ingested_at, batch)
            if len(batch.rejects) + len(batch.exact) == before:  # cannot happen: a flagged row is a record
                batch.rows += 1
                batch.rejects.append(Reject(first_line + r, "unreadable row", _shown(raw)))
        return batch

    def release(self, batch: Batch) -> None:
        """The batch's events have been copied out: its buffers may be reused."""
        if self.fast is not None and batch.fast is not None:
            self.fast.release(batch.fast)
