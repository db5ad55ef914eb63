"""Vectorised column parsing for the fast path: byte windows, canonical decimal numbers, ISO times, distinct values.

Numbers are taken in their canonical decimal form only (`-?digits.digits`, no leading zero, at most 15
digits, none of the tiny values repr() writes with an exponent): for those, float(text) is mantissa / 10**k
exactly, and repr(float(text)) is the text without trailing zeros, so the event JSON can be assembled from
slices of the input. A text that is not plainly valid this way is not `ok`: the fast path flags its row for
the exact path (`edge.ingest.rows`), which either builds its event or says why it is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_P10 = 10 ** np.arange(19, dtype=np.int64)
_F10 = 10.0 ** np.arange(23)
_NUM_CAP = 19  # longest number text taken here (int64 arithmetic)
_T2 = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], np.uint8)  # 0..99 -> two digits


def sview(buf: np.ndarray, width: int) -> np.ndarray:
    """Overlapping view of `buf`: item i is the `width` bytes starting at i."""
    return np.ndarray((buf.size - width + 1,), f"S{width}", buf, 0, (1,))


def windows(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: `width` bytes from each start."""
    return sview(buf, width)[starts].view(np.uint8).reshape(starts.size, width)


@dataclass
class Num:
    """A column of number texts, parsed (see module docstring)."""

    ok: np.ndarray  # canonical text (or empty when null is allowed)
    null: np.ndarray
    value: np.ndarray  # float64 (0 where not ok)
    text_len: np.ndarray  # length of the JSON text taken from the input (trailing zeros cut)
    dot0: np.ndarray  # integer-valued text: JSON needs ".0" appended


_GATHER = np.uint64(0x0102040810204080)  # see _bits
_ZEROS = np.uint64(0x3030303030303030)  # eight b"0"
_U = np.uint64


def _bits(mask: np.ndarray) -> np.ndarray:
    """A C-contiguous (n, 8k) bool matrix as one uint64 per row, bit j set when column j is: multiplying a word
    of 0/1 bytes by _GATHER moves byte j's bit to bit 56 + j, and the other products stay below bit 56 or
    overflow past 63 (no carry reaches the top byte). numpy's packbits along rows is ~20x slower."""
    words = mask.view("<u8")
    out = (words[:, 0] * _GATHER) >> _U(56)
    for k in range(1, words.shape[1]):
        out |= ((words[:, k] * _GATHER) >> _U(56)) << _U(8 * k)
    return out


def _high_bit(x: np.ndarray) -> np.ndarray:
    """Index of the highest set bit of each uint64 below 2**53 (-1 for 0): the float's exponent."""
    return np.frexp(x.astype(np.float64))[1] - 1


def _digit_value(win: np.ndarray, digit: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The last `length` columns of each row as one int64, non-digits read as 0, eight columns at a time: a
    uint64 word's digit bytes are folded into 2-, 4-, then 8-digit lanes (its first byte the most significant);
    the columns before the field are cut off by a modulo."""
    words = np.where(digit, win, np.uint8(48)).view("<u8") - _ZEROS
    nwords = words.shape[1]
    full = np.zeros(win.shape[0], np.int64)
    for k in range(nwords):
        v = words[:, k]
        v = (v * _U(10) + (v >> _U(8))) & _U(0x00FF00FF00FF00FF)
        v = (v * _U(100) + (v >> _U(16))) & _U(0x0000FFFF0000FFFF)
        v = (v * _U(10000) + (v >> _U(32))) & _U(0xFFFFFFFF)
        right = 8 * (nwords - 1 - k)  # columns after this word
        v = v.view(np.int64) % _P10[np.clip(length - right, 0, 8)]
        full *= 10**8
        full += v  # more than 19 digits wrap: those rows are not ok anyway
    return full


def numbers(ext: np.ndarray, start: np.ndarray, end: np.ndarray, *, integer: bool | np.ndarray = False) -> Num:
    """Canonical decimal numbers in ext[start:end] (see module docstring), integers where `integer` (per row or
    for all); `ext` must have at least 24 bytes of padding before the first start, as windows are right-aligned
    on each end. Character classes are found on the (n, width) window, then kept as one bitmask per row: the
    rest is arithmetic on n values."""
    integer = np.asarray(integer, bool)
    length = end - start
    null = length == 0
    longest = min(max(int(length.max(initial=1)), 1), _NUM_CAP)
    width = (longest + 7) // 8 * 8
    win = windows(ext, end - width, width)  # right-aligned: last char in the last column (ext has left padding)
    first = (width - np.minimum(length, width)).astype(np.uint64)  # column of each text's first character
    infield = _U((1 << width) - 1) & ~((_U(1) << first) - _U(1))
    isdig = (win - np.uint8(48)) < 10
    dot = _bits(win == 46) & infield
    neg = (ext[start] == 45) & (length >= 2)
    other = infield & ~_bits(isdig) & ~dot & ~(neg.astype(np.uint64) << first)
    ndots = np.bitwise_count(dot)
    frac = np.where(ndots == 1, width - 1 - _high_bit(dot), 0)
    intd = length - frac - ndots - neg
    lead = ext[start + neg]
    ndig = length - neg - ndots
    ok = (other == 0) & (length <= longest) & (intd >= 1) & ~((lead == 48) & (intd > 1)) & ~null
    as_float = (ndots <= 1) & ~((ndots == 1) & (frac == 0)) & (ndig <= 15)
    ok &= np.where(integer, (ndots == 0) & ~neg & (ndig <= 18), as_float)
    frac = np.minimum(frac, 18)
    full = _digit_value(win, isdig, length)
    low = full % _P10[frac]
    mant = np.where(ndots == 1, low + (full - low) // 10, full)
    value = mant.astype(np.float64) / _F10[frac]
    value = np.where(neg, -value, value)
    ok &= integer | (value == 0) | (np.abs(value) >= 1e-4)  # repr() writes smaller floats with an exponent
    # trailing zeros of the fraction, keeping one digit after the dot (which is not a zero)
    zeros = width - 1 - _high_bit(_bits(win != 48) & infield)
    cut = np.where(ndots == 1, np.minimum(zeros, frac - 1), 0)
    return Num(ok, null, value, length - np.maximum(cut, 0), (ndots == 0) & ~integer)


def number_columns(ext: np.ndarray, spans: dict[str, tuple[np.ndarray, np.ndarray]],
                   integer: tuple[str, ...] = ()) -> dict[str, Num]:
    """`numbers` of several columns (span: start and end arrays), those of the same window width in one call:
    fewer, larger numpy operations (each has a fixed cost of a few microseconds)."""
    groups: dict[int, list[str]] = {}
    for col, (start, end) in spans.items():
        longest = min(max(int((end - start).max(initial=1)), 1), _NUM_CAP)
        groups.setdefault((longest + 7) // 8 * 8, []).append(col)
    out = {}
    for cols in groups.values():
        sizes = [spans[c][0].size for c in cols]
        flags = np.repeat([c in integer for c in cols], sizes)
        num = numbers(ext, np.concatenate([spans[c][0] for c in cols]), np.concatenate([spans[c][1] for c in cols]),
                      integer=flags)
        at = 0
        for col, size in zip(cols, sizes):
            part = slice(at, at + size)
            out[col] = Num(num.ok[part], num.null[part], num.value[part], num.text_len[part], num.dot0[part])
            at += size
    return out


def iso_ms(epoch: np.ndarray) -> np.ndarray:
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


def few_unique(values: np.ndarray, most: int = 16) -> tuple[list[bytes], np.ndarray]:
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
