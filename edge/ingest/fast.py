"""Vectorised CSV chunk → JSON lines with numpy: the same bytes as `DetectionEvent.to_json()`, ~1 µs per row less.

Only regular chunks come here: no quote, NUL or stray CR, every line with exactly the header's number
of fields. Numbers are taken in their canonical decimal form only (`-?digits.digits`, no leading zero,
at most 15 digits, none of the tiny values repr() writes with an exponent): for those, float(text) is
mantissa / 10**k exactly, and repr(float(text)) is the text without trailing zeros, so the event JSON is
assembled from slices of the input. Any row that is not plainly valid this way is *flagged* and handed
to the exact path (`edge.ingest.rows`), which either builds its event or says why it is rejected.

Assembly: each row is a fixed sequence of segments (constants, number texts, per-class blocks). Row and
segment offsets come from a cumulative sum of lengths; every segment is written for all rows at once as a
fixed-width item (numpy `S<w>` view over the output buffer), left to right, so the padding written past a
short text is overwritten by the next segment of the same row.

The segments are not written by hand: they are compiled from `DetectionEvent`'s fields (their order, their
keys as `to_json()` writes them) and `_WRITTEN_AS`, which says where each field's value comes from. A field
added to or renamed in DetectionEvent without an entry there fails at import, and so does any template that,
filled with sample rows, differs from `DetectionEvent.to_json()` of the exact path (`_check_template`).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass

import numpy as np

from edge.ingest.ids import IdMaker
from edge.ingest.rows import (
    _WS,
    MAX_EPOCH,
    FileContext,
    Header,
    Row,
    build_event,
    class_id_for,
    class_name_problem,
    parse_header,
    parse_row,
)
from edge.types import SCHEMA_VERSION, DetectionEvent

_P10 = 10 ** np.arange(19, dtype=np.int64)
_F10 = 10.0 ** np.arange(23)
_NUM_CAP = 19  # longest number text taken here (int64 arithmetic)
_CLASS_CAP = 64
_PAD = 64
_T2 = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], np.uint8)  # 0..99 -> two digits

# Where the value of each DetectionEvent field comes from, in the fast path (the values are those of
# rows.build_event; `_check_template` proves it at import):
#   id     the row's detection id            file   a FileContext attribute (JSON of it)
#   chunk  ingested_at of the chunk          text   a CSV column's number text (null when empty or absent)
#   texts  a JSON array of column texts      class  a value per distinct class name (class_name, class_id)
#   iso    captured_at (start + timestamp)   gps    a value per "positioned or not" (taken from build_event)
#   value  this constant
_WRITTEN_AS: dict[str, tuple[str, object]] = {
    "detection_id": ("id", None),
    "vehicle_id": ("file", "vehicle_id"),
    "session_id": ("file", "session_id"),
    "ingested_at": ("chunk", None),
    "frame_number": ("text", "frame_number"),
    "timestamp_sec": ("text", "timestamp_sec"),
    "pixel_u": ("text", "u"),
    "pixel_v": ("text", "v"),
    "confidence": ("text", "confidence"),
    "class_name": ("class", None),
    "vehicle_lat": ("text", "vehicle_lat"),
    "vehicle_lon": ("text", "vehicle_lon"),
    "heading": ("text", "heading"),
    "camera_id": ("file", "camera_id"),
    "class_id": ("class", None),
    "bbox": ("texts", ("u", "v", "u", "v")),  # the zero-size box at the bottom-centre point
    "inference_latency_ms": ("value", None),
    "captured_at": ("iso", None),
    "model": ("file", "model"),
    "source": ("file", "source"),
    "gps_source": ("gps", None),
    "gps_status": ("gps", None),
    "gps_age_ms": ("value", None),
    "schema_version": ("value", SCHEMA_VERSION),
}
_FIELDS = tuple(f.name for f in dataclasses.fields(DetectionEvent))
if set(_WRITTEN_AS) != set(_FIELDS):
    raise ImportError(
        "edge.ingest.fast: DetectionEvent's fields and the fast path's _WRITTEN_AS disagree "
        f"(fields without an entry: {sorted(set(_FIELDS) - set(_WRITTEN_AS))}, entries without a field: "
        f"{sorted(set(_WRITTEN_AS) - set(_FIELDS))}): say in _WRITTEN_AS where each field's value comes from"
    )
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # as DetectionEvent.to_json()


def _gps_values() -> dict[bool, dict[str, bytes]]:
    """The "gps" fields of an event with and without a position, as rows.build_event writes them (JSON text),
    checked against the Literal types of DetectionEvent."""
    ctx = FileContext("s", "v", "c", "f.csv", 0.0)
    hints = typing.get_type_hints(DetectionEvent)
    out = {}
    for positioned in (False, True):
        lat_lon = (0.0, 0.0) if positioned else (None, None)
        ev = build_event(Row(0, 0.0, 0.0, 0.0, 0.0, "x", *lat_lon, None), ctx, 2, "")
        values = {}
        for name, (how, _) in _WRITTEN_AS.items():
            if how == "gps":
                value = getattr(ev, name)
                allowed = typing.get_args(hints[name])
                if allowed and value not in allowed:
                    raise ImportError(f"edge.ingest.fast: {name}={value!r} is not one of DetectionEvent's {allowed}")
                values[name] = _JSON(value).encode()
        out[positioned] = values
    return out


_GPS_VALUES = _gps_values()


def _pieces(ctx: FileContext, ingested_at: str) -> list:
    """An event line as pieces in DetectionEvent's field order: bytes, or (kind, what) filled per row, kind
    one of "fixed" (what: "id" or "iso"), "text" (a column), "class" or "gps" (a field name)."""
    out: list = [b"{"]
    for i, name in enumerate(_FIELDS):
        how, arg = _WRITTEN_AS[name]
        out.append((b"," if i else b"") + _JSON(name).encode() + b":")
        if how in ("id", "iso"):
            out += [b'"', ("fixed", how), b'"']
        elif how == "file":
            out.append(_JSON(getattr(ctx, arg)).encode())
        elif how == "chunk":
            out.append(_JSON(ingested_at).encode())
        elif how == "text":
            out.append(("text", arg))
        elif how == "texts":
            out.append(b"[")
            for j, col in enumerate(arg):
                if j:
                    out.append(b",")
                out.append(("text", col))
            out.append(b"]")
        elif how in ("class", "gps"):
            out.append((how, name))
        else:
            out.append(_JSON(arg).encode())
    out.append(b"}\n")
    return out


def _segments(pieces: list) -> list[tuple[str, object]]:
    """Pieces grouped into as few segments as possible: runs of constants joined to the per-row piece next to
    them when that piece is not a number text. A segment is ("const", bytes), ("text", column), or
    ("fixed" | "class" | "gps", [bytes or what, ...])."""
    segs: list[list] = []
    for p in pieces:
        kind = "const" if isinstance(p, bytes) else p[0]
        part = p if isinstance(p, bytes) else p[1]
        last = segs[-1] if segs else None
        if kind == "text":
            segs.append(["text", part])
        elif last is not None and last[0] != "text" and (kind == "const" or last[0] in ("const", kind)):
            last[0] = kind if kind != "const" else last[0]
            last[1].append(part)
        else:
            segs.append([kind, [part]])
    out: list[tuple[str, object]] = []
    for kind, parts in segs:
        if kind == "text":
            out.append((kind, parts))
            continue
        merged: list = []
        for part in parts:  # adjacent bytes in one piece
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += part
            else:
                merged.append(part)
        out.append((kind, merged[0] if kind == "const" else merged))
    return out


@dataclass
class FastChunk:
    """What the vectorised path made of a chunk."""

    data: memoryview  # JSON lines of the accepted rows, each ending with a newline (see FastPath.release)
    starts: np.ndarray  # int64 offset of each accepted row in data (its length: next start - 1)
    rows: np.ndarray  # index in the chunk (0-based) of each accepted row
    ids: np.ndarray  # (n, 36) uint8 detection ids
    captured: np.ndarray  # float64 epoch seconds of capture
    flagged: np.ndarray  # chunk indices of rows for the exact path
    line_starts: np.ndarray  # byte offset of every row in the chunk
    line_ends: np.ndarray  # byte offset of every row's newline
    buffer: np.ndarray | None = None  # owner of `data`


def _sview(buf: np.ndarray, width: int) -> np.ndarray:
    """Overlapping view of `buf`: item i is the `width` bytes starting at i."""
    return np.ndarray((buf.size - width + 1,), f"S{width}", buf, 0, (1,))


def _windows(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: `width` bytes from each start."""
    return _sview(buf, width)[starts].view(np.uint8).reshape(starts.size, width)


@dataclass
class _Num:
    ok: np.ndarray  # canonical text (or empty when null is allowed)
    null: np.ndarray
    value: np.ndarray  # float64 (0 where not ok)
    text_len: np.ndarray  # length of the JSON text taken from the input (trailing zeros cut)
    dot0: np.ndarray  # integer-valued text: JSON needs ".0" appended


def _any_rows(mask: np.ndarray) -> np.ndarray:
    """mask.any(1) for a C-contiguous (n, 8k) bool matrix, a uint64 word at a time (numpy's axis-1
    reductions over a few columns are slow)."""
    words = mask.view(np.uint64)
    out = words[:, 0] != 0
    for j in range(1, words.shape[1]):
        out |= words[:, j] != 0
    return out


def _count_rows(mask: np.ndarray) -> np.ndarray:
    """mask.sum(1) for a C-contiguous (n, 8k) bool matrix: a True byte is one set bit."""
    words = mask.view(np.uint64)
    out = np.bitwise_count(words[:, 0]).astype(np.int64)
    for j in range(1, words.shape[1]):
        out += np.bitwise_count(words[:, j])
    return out


_INFIELD = {w: np.arange(w)[::-1][None, :] < np.arange(w + 1)[:, None] for w in (8, 16, 24)}  # [length] -> mask


def _number(ext: np.ndarray, start: np.ndarray, end: np.ndarray, *, integer: bool = False) -> _Num:
    """Canonical decimal numbers in ext[start:end] (see module docstring)."""
    n = start.size
    length = end - start
    null = length == 0
    longest = min(max(int(length.max(initial=1)), 1), _NUM_CAP)
    width = (longest + 7) // 8 * 8
    win = _windows(ext, end - width, width)  # right-aligned: last char in the last column (ext has left padding)
    infield = _INFIELD[width][np.minimum(length, width)]
    c = win - np.uint8(48)
    isdig = (c < 10) & infield
    isdot = (win == 46) & infield
    rows = np.arange(n)
    firstcol = np.clip(width - length, 0, width - 1)
    neg = (win[rows, firstcol] == 45) & (length >= 2)
    bad = infield & ~(isdig | isdot)
    bad[rows, firstcol] &= ~neg
    ndots = _count_rows(isdot)
    frac = np.where(ndots == 1, width - 1 - np.argmax(isdot, 1), 0)
    intd = length - frac - ndots - neg
    lead = win[rows, np.clip(firstcol + neg, 0, width - 1)]
    ndig = length - neg - ndots
    ok = ~_any_rows(bad) & (length <= longest) & (intd >= 1) & ~((lead == 48) & (intd > 1)) & ~null
    if integer:
        ok &= (ndots == 0) & ~neg & (ndig <= 18)
    else:
        ok &= (ndots <= 1) & ~((ndots == 1) & (frac == 0)) & (ndig <= 15)
    frac = np.minimum(frac, 18)
    low_cols = max(0, width - 19)  # int64 holds 19 digits: longer windows are flagged rows anyway
    full = np.where(isdig[:, low_cols:], c[:, low_cols:], 0).astype(np.int64) @ _P10[width - low_cols - 1 :: -1]
    low = full % _P10[frac]
    mant = np.where(ndots == 1, low + (full - low) // 10, full)
    value = mant.astype(np.float64) / _F10[frac]
    value = np.where(neg, -value, value)
    if not integer:
        ok &= (value == 0) | (np.abs(value) >= 1e-4)
    # trailing zeros of the fraction, keeping one digit after the dot
    nonzero = (win != 48) | ~infield
    zeros = np.argmax(nonzero[:, ::-1], 1)
    cut = np.where(ndots == 1, np.minimum(zeros, frac - 1), 0)
    return _Num(ok, null, value, length - np.maximum(cut, 0), (ndots == 0) & (not integer))


def _iso_ms(epoch: np.ndarray) -> np.ndarray:
    """(n, 24) uint8 'YYYY-MM-DDTHH:MM:SS.mmmZ' exactly as edge.events.iso_utc (microseconds rounded half
    to even, then cut to milliseconds), for 0 <= epoch < year 10000."""
    n = epoch.size
    sec = np.floor(epoch)
    us = np.rint((epoch - sec) * 1e6)
    carry = us >= 1e6
    sec = sec.astype(np.int64) + carry
    us = np.where(carry, us - 1e6, us).astype(np.int64)
    ms = us // 1000
    days = sec // 86400
    sod = sec - days * 86400
    out = np.empty((n, 24), np.uint8)
    out[:] = np.frombuffer(b"0000-00-00T00:00:00.000Z", np.uint8)
    lo, hi = int(days.min(initial=0)), int(days.max(initial=0))
    if hi - lo <= 4096:  # a table of the dates in the span (usually one or two)
        dates, index = np.arange(lo, hi + 1), days - lo
    else:
        dates, index = np.unique(days, return_inverse=True)
    text = "".join(str(d) for d in dates.astype("datetime64[D]").tolist()).encode()
    out[:, 0:10] = np.frombuffer(text, np.uint8).reshape(-1, 10)[index]
    hh, rem = np.divmod(sod, 3600)
    mi, ss = np.divmod(rem, 60)
    out[:, 11:13] = _T2[hh]
    out[:, 14:16] = _T2[mi]
    out[:, 17:19] = _T2[ss]
    out[:, 20:22] = _T2[ms // 10]
    out[:, 22] = ms % 10 + 48
    return out


def _few_unique(values: np.ndarray, most: int = 16) -> tuple[list[bytes], np.ndarray]:
    """Distinct values and each row's index into them; one comparison pass per distinct value (class
    names: a handful), np.unique's sort when there are many."""
    codes = np.zeros(values.size, np.int64)
    uniq: list[bytes] = []
    left = np.ones(values.size, bool)
    while values.size and len(uniq) < most:
        i = int(np.argmax(left))
        if not left[i]:
            return uniq, codes
        same = values == values[i]
        codes[same] = len(uniq)
        uniq.append(values[i].tobytes().rstrip(b"\0") if isinstance(values[i], np.bytes_) else values[i])
        left &= ~same
    if values.size and left.any():
        u, inv = np.unique(values, return_inverse=True)
        return [v.rstrip(b"\0") for v in u.tolist()], inv.ravel()
    return uniq, codes


class FastPath:
    """Turns regular chunks of one file into JSON lines (see module docstring)."""

    def __init__(self, header: Header, ctx: FileContext):
        self.header, self.ctx = header, ctx
        self.ids = IdMaker(ctx.session_id, ctx.source)
        self._class_cache: dict[bytes, tuple[bytes, bytes] | None] = {}
        self._buffers: list[np.ndarray] = []  # output buffers given back by release(): no page faults per chunk

    def release(self, chunk: FastChunk) -> None:
        """The caller is done with `chunk.data`: its buffer may be reused."""
        if chunk.buffer is not None and len(self._buffers) < 2:
            self._buffers.append(chunk.buffer)
        chunk.buffer = None

    def _buffer(self, size: int) -> np.ndarray:
        while self._buffers:
            buf = self._buffers.pop()
            if buf.size >= size:
                return buf
        return np.empty(size + size // 4, np.uint8)

    @staticmethod
    def regular(chunk: bytes) -> bool:
        """Cheap checks that rule out quoting, NULs and CRs other than CRLF."""
        if b'"' in chunk or b"\0" in chunk:
            return False
        return b"\r" not in chunk or chunk.count(b"\r") == chunk.count(b"\r\n")

    def _class_values(self, raw: bytes) -> dict[str, bytes] | None:
        """JSON texts of the "class" fields (class_name, class_id) for a class field, None if the exact path
        must judge it."""
        if raw not in self._class_cache:
            try:
                name = raw.decode("utf-8").strip(_WS)
            except UnicodeDecodeError:
                name = ""
            if class_name_problem(name):  # empty, control characters: the exact path says why
                self._class_cache[raw] = None
            else:
                values = {"class_name": name, "class_id": class_id_for(name)}
                self._class_cache[raw] = {
                    f: _JSON(values[f]).encode() for f, (how, _) in _WRITTEN_AS.items() if how == "class"
                }
        return self._class_cache[raw]

    def run(self, chunk: bytes, first_line: int, ingested_at: str) -> FastChunk | None:
        """None when the chunk is not regular (the caller takes the exact path for all of it)."""
        width = self.header.width
        arr = np.frombuffer(chunk, np.uint8)
        sep = np.flatnonzero((arr == 44) | (arr == 10))
        nlines = chunk.count(b"\n")
        if nlines == 0 or sep.size != nlines * width:
            return None
        sep = sep.reshape(nlines, width)
        if not (arr[sep[:, -1]] == 10).all():
            return None
        line_starts = np.empty(nlines, np.int64)
        line_starts[0] = 0
        line_starts[1:] = sep[:-1, -1] + 1
        ext = np.zeros(_PAD + arr.size + 4 + _PAD, np.uint8)  # padding, the chunk, "null", padding: for windows
        ext[_PAD : _PAD + arr.size] = arr
        null_at = _PAD + arr.size
        ext[null_at : null_at + 4] = np.frombuffer(b"null", np.uint8)

        def span(col: str) -> tuple[np.ndarray, np.ndarray]:
            j = self.header.index[col]
            start = line_starts if j == 0 else sep[:, j - 1] + 1
            end = sep[:, j].copy()
            if j == width - 1:
                end -= (arr[np.maximum(end - 1, 0)] == 13) & (end > start)
            return start + _PAD, end + _PAD

        spans = {col: span(col) for col in self.header.index}
        nums = {col: _number(ext, *spans[col], integer=(col == "frame_number")) for col in spans if col != "class_name"}
        ok = nums["frame_number"].ok.copy()
        for col in ("timestamp_sec", "u", "v", "confidence"):
            ok &= nums[col].ok
        ts = nums["timestamp_sec"].value
        ok &= ts >= 0
        conf = nums["confidence"].value
        ok &= (conf >= 0) & (conf <= 1)
        bounds = {"vehicle_lat": (-90, 90, False), "vehicle_lon": (-180, 180, False), "heading": (0, 360, True)}
        for col, (lo, hi, open_hi) in bounds.items():
            if col in nums:
                x = nums[col]
                inside = (x.value >= lo) & ((x.value < hi) if open_hi else (x.value <= hi))
                ok &= x.null | (x.ok & inside)
        if "vehicle_lat" in nums and "vehicle_lon" in nums:  # half a position: the exact path rejects it
            ok &= nums["vehicle_lat"].null == nums["vehicle_lon"].null
        epoch = self.ctx.start_time + ts
        ok &= (epoch >= 0) & (epoch < MAX_EPOCH)

        # class names: usually a handful of distinct values; compare whole fields
        cstart, cend = spans["class_name"]
        clen = cend - cstart
        cw = int(min(max(int(clen.max(initial=1)), 1), _CLASS_CAP))
        ok &= (clen <= cw) & (clen > 0)
        cwin = _windows(ext, cstart, cw).copy()
        cwin[np.arange(cw) >= clen[:, None]] = 0
        cvals = cwin.view(f"S{cw}").ravel()
        uniq, codes = _few_unique(cvals)
        classes = [self._class_values(u) for u in uniq]
        good_class = np.array([v is not None for v in classes], bool)
        ok &= good_class[codes]

        rows = np.flatnonzero(ok)
        flagged = np.flatnonzero(~ok)
        m = rows.size
        base = FastChunk(memoryview(b""), np.zeros(0, np.int64), rows, np.zeros((0, 36), np.uint8), epoch[rows], flagged,
                         line_starts, sep[:, -1])
        if m == 0:
            return base
        base.ids = self.ids.hex_ids(first_line + rows)
        base.buffer, base.data, base.starts = self._assemble(rows, ext, null_at, spans, nums, codes, classes, epoch, base.ids, ingested_at)
        return base

    def _assemble(self, rows, ext, null_at, spans, nums, codes, classes, epoch, ids, ingested_at):  # noqa: ANN001, ANN202, PLR0913
        m = rows.size
        fixed = {"id": lambda: ids, "iso": lambda: _iso_ms(epoch[rows])}
        positioned = np.ones(m, bool)
        for col in ("vehicle_lat", "vehicle_lon"):
            positioned &= ~nums[col].null[rows] if col in nums else False
        tables = {  # kind -> (values of each code, code of each row)
            "class": ([v or {} for v in classes], codes[rows]),
            "gps": ([_GPS_VALUES[False], _GPS_VALUES[True]], positioned.astype(np.intp)),
        }

        def number(col: str):  # noqa: ANN202 - (starts in ext, text lengths, dot0 rows)
            if col not in nums:
                return np.full(m, null_at), np.full(m, 4), None
            x = nums[col]
            start = np.where(x.null[rows], null_at, spans[col][0][rows])
            length = np.where(x.null[rows], 4, x.text_len[rows])
            dot0 = x.dot0[rows] & ~x.null[rows]
            return start, length + 2 * dot0, dot0 if dot0.any() else None

        segs: list[tuple] = []  # (kind, source…), kinds as _seg_len knows them
        for kind, what in _segments(_pieces(self.ctx, ingested_at)):
            if kind == "const":
                segs.append(("const", what))
            elif kind == "text":
                segs.append(("text", *number(what)))
            elif kind == "fixed":
                parts = [np.broadcast_to(np.frombuffer(p, np.uint8), (m, len(p))) if isinstance(p, bytes) else fixed[p]()
                         for p in what]
                segs.append(("fixed", np.concatenate(parts, axis=1)))
            else:
                values, code = tables[kind]
                texts = [b"".join(p if isinstance(p, bytes) else v.get(p, b"") for p in what) for v in values]
                width = max(map(len, texts))
                table, lengths = np.array(texts, f"S{width}"), np.array([len(t) for t in texts], np.int64)
                segs.append(("table", table[code], lengths[code]))

        lens = [_seg_len(s, m) for s in segs]
        total = np.zeros(m, np.int64)
        for n in lens:
            total += n
        starts = np.zeros(m, np.int64)
        np.cumsum(total[:-1], out=starts[1:])
        size = int(starts[-1] + total[-1])
        out = self._buffer(size + max(256, max(_seg_width(s) for s in segs)))
        # the last segment first: its padding lands on the next row's start, written later
        _write(out, segs[-1], starts + total - lens[-1], ext)
        pos = starts.copy()
        for s, n in zip(segs[:-1], lens[:-1]):
            _write(out, s, pos, ext)
            pos += n
        return out, memoryview(out)[:size], starts


def _write(out: np.ndarray, s: tuple, pos: np.ndarray, ext: np.ndarray) -> None:
    """Segment `s` of every row into `out` at `pos` (fixed-width items: padding past a short text)."""
    kind = s[0]
    if kind == "fixed":
        mat = s[1]
        _sview(out, mat.shape[1])[pos] = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
    elif kind == "const":
        _sview(out, len(s[1]))[pos] = s[1]
    elif kind == "table":
        _sview(out, s[1].dtype.itemsize)[pos] = s[1]
    else:
        start, length, dot0 = s[1], s[2], s[3]
        w = int(length.max())
        _sview(out, w)[pos] = _sview(ext, w)[start]
        if dot0 is not None:
            _sview(out, 2)[(pos + length - 2)[dot0]] = b".0"


def _seg_width(s: tuple) -> int:
    kind = s[0]
    if kind == "fixed":
        return s[1].shape[1]
    if kind == "const":
        return len(s[1])
    if kind == "table":
        return s[1].dtype.itemsize
    return int(s[2].max())


def _seg_len(s: tuple, m: int) -> np.ndarray | int:
    kind = s[0]
    if kind == "fixed":
        return s[1].shape[1]
    if kind == "const":
        return len(s[1])
    return s[2]


def _check_template() -> None:
    """Sample rows through the fast path must give `DetectionEvent.to_json()` of the exact path byte for byte:
    a field reordered, retyped or written differently by rows.build_event fails here, at import."""
    header = parse_header("frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading")
    ctx = FileContext("20250101-abcdef", "veh-1", "cam \\ é", "drive.csv", 1_700_000_000.25)
    chunk = "12,1.5,640.25,480.0,0.875,stop sign,37.5,-122.25,90.5\n13,2,100,200,0.5,Zébra\\x,,,\n".encode()
    ingested_at = "2026-01-01T00:00:00.000Z"
    fast = FastPath(header, ctx).run(chunk, 2, ingested_at)
    got = [] if fast is None or fast.flagged.size else bytes(fast.data).splitlines()
    lines = chunk.decode().splitlines()
    want = [build_event(parse_row(t.split(","), header), ctx, 2 + i, ingested_at).to_json().encode()
            for i, t in enumerate(lines)]
    if got != want:
        diff = next((f"{g!r}\n   exact path: {w!r}" for g, w in zip(got, want) if g != w), f"{len(got)} lines, not {len(want)}")
        raise ImportError(f"edge.ingest.fast: the event template differs from DetectionEvent.to_json(): {diff}")


_check_template()
