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


def numbers(ext: np.ndarray, start: np.ndarray, end: np.ndarray, *, integer: bool = False) -> Num:
    """Canonical decimal numbers in ext[start:end] (see module docstring); `ext` must have at least 24 bytes
    of padding before the first start, as windows are right-aligned on each end."""
    n = start.size
    length = end - start
    null = length == 0
    longest = min(max(int(length.max(initial=1)), 1), _NUM_CAP)
    width = (longest + 7) // 8 * 8
    win = windows(ext, end - width, width)  # right-aligned: last char in the last column (ext has left padding)
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
    return Num(ok, null, value, length - np.maximum(cut, 0), (ndots == 0) & (not integer))


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
