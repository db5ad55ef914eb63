"""The vectorised CSV path gives byte for byte what the exact path (DetectionEvent.to_json) gives."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.clock import iso_utc
from edge.ingest.columns import iso_ms, number_columns, numbers
from edge.ingest.convert import Converter
from edge.ingest.fast import FastPath
from edge.ingest.rows import FileContext, parse_header

HEADER = parse_header("frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading")
CTX = FileContext("20250101-abcdef", "veh-1", "cam-front", "drive.csv", 1_700_000_000.25)
NOW = "2026-01-01T00:00:00.000Z"

# tokens where float(), repr() and the canonical-text shortcut could disagree
TRICKY = [
    "0", "1", "0.5", "1.0", "1.00", "-0.0", "0.0", "-1.5", "00.5", "+1.5", ".5", "5.", "5", "1e3", "1E-5",
    "0.00001", "0.0001", "0.00012", "nan", "inf", "-inf", " 2.5", "2.5 ", "", "abc", "1_0", "43.790000",
    "-79.3140", "359.99", "360", "360.0", "90", "-90.0", "90.0001", "-180", "180.0", "1737.28",
    "123456789012345", "1234567890123456", "0.000000", "12.3456789012345", "99999999999999.9", "0x10", "٣",
    "2.500", "-0", "-0.00", "10", "075", "007.5", "1" * 20, "0.1234567890123456789",
]
CLASSES = ["stop sign", "traffic light", "", "  stop sign ", "Stop Sign", "x\ty", "ctl\x01", "é", "zebra", "a" * 70,
           "stop, sign", 'say "hi"']


def _num(fmt: str, lo: float, hi: float):
    return st.one_of(st.sampled_from(TRICKY), st.floats(lo, hi).map(lambda x: fmt % x))


ROW = st.tuples(
    st.one_of(st.sampled_from(TRICKY), st.integers(0, 10**6).map(str)),
    _num("%.3f", 0, 1e5), _num("%.2f", 0, 4000), _num("%.2f", 0, 4000), _num("%.4f", 0, 1),
    st.sampled_from(CLASSES),
    _num("%.6f", -95, 95), _num("%.6f", -185, 185), _num("%.1f", 0, 370),
)


def _both(chunk: bytes):
    fast = Converter(HEADER, CTX).convert(chunk, 2, NOW)
    exact = Converter(HEADER, CTX, vectorised=False).convert(chunk, 2, NOW)
    return fast, exact


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ROW, ROW.map(lambda r: r[:5])), min_size=1, max_size=40), st.booleans(),
       st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_vectorised_rows_equal_the_exact_path(rows, crlf, quoting):
    # given a chunk of valid, odd and invalid rows, quoted where needed or everywhere
    buf = io.StringIO()
    csv.writer(buf, quoting=quoting, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    chunk = buf.getvalue().encode()
    # when both paths convert it
    fast, exact = _both(chunk)
    # then events (JSON bytes, ids, capture times) and rejects are the same
    assert fast.rows == exact.rows, "record counts differ"
    assert list(fast.events()) == list(exact.events()), "events differ between the vectorised and the exact path"
    assert [(r.line, r.reason) for r in fast.rejects] == [(r.line, r.reason) for r in exact.rejects], "rejects differ"


def test_a_clean_chunk_takes_the_vectorised_path():
    rows = [f"{i},{i / 30:.3f},{i % 1920}.25,{i % 1080}.5,0.{i % 9999:04d},stop sign,43.{i:06d},-79.{i:06d},{i % 360}.0"
            for i in range(1, 2001)]
    chunk = ("\n".join(rows) + "\n").encode()
    fast, exact = _both(chunk)
    assert fast.fast is not None and fast.fast.flagged.size == 0, "clean rows must not need the exact path"
    assert list(fast.events()) == list(exact.events()), "vectorised JSON differs from DetectionEvent.to_json()"


def test_irregular_chunks_take_the_exact_path():
    for chunk in (b'1,2.5,1,2,0.5,"stop, sign",,,\n', b"1,2.5,1,2,0.5,stop sign,,,\n\n", b"1,2.5,1,2\r,0.5,a,,,\n"):
        assert not FastPath.regular(chunk) or FastPath(HEADER, CTX).run(chunk, 2, NOW) is None, chunk


def test_iso_times_equal_iso_utc():
    rng = np.random.default_rng(3)
    epochs = np.concatenate([
        rng.uniform(0, 253402300799, 2000), 1_700_000_000 + rng.uniform(0, 1, 2000).round(6),
        np.array([0.0, 0.0005, 0.0015, 0.9995, 0.9999995, 1_700_000_000.9999996, 86399.9996]),
    ])
    got = iso_ms(epochs).view("S24").ravel().astype("U24").tolist()
    assert got == [iso_utc(float(e)) for e in epochs], "vectorised ISO times differ from iso_utc"


def test_half_positions_and_control_characters_leave_the_vectorised_path():
    # given a regular chunk (no quotes) with a latitude but no longitude, and a class name with an escape byte
    chunk = (b"1,0.1,1,2,0.5,stop sign,43.79,,45.0\n"
             b"2,0.1,1,2,0.5,stop\x1bsign,43.79,-79.31,45.0\n"
             b"3,0.1,1,2,0.5,stop sign,43.79,-79.31,45.0\n")
    fast, exact = _both(chunk)
    # then both rows are flagged to the exact path, which rejects them with the same reasons
    assert fast.fast is not None and fast.fast.flagged.tolist() == [0, 1], "flagged for the exact path"
    reasons = [(r.line, r.reason) for r in fast.rejects]
    assert reasons == [(2, "vehicle_lon: empty while vehicle_lat is given (a position needs both, or neither)"),
                       (3, "class_name: contains the control character '\\x1b'")], reasons
    assert reasons == [(r.line, r.reason) for r in exact.rejects] and fast.accepted == exact.accepted == 1, "paths agree"


def test_number_columns_equal_float_and_numbers_one_column_at_a_time():
    # columns of different widths (grouped into one numpy pass per width) and one integer column
    ints = ["7", "12", "007", "-3", "1.5", "", "123456789012345678"]
    cols = {"a": TRICKY, "b": [t[:7] for t in TRICKY], "c": ints}
    texts = [t for col in cols.values() for t in col]
    data = ("," + ",".join(texts) + "\n").encode()
    ext = np.zeros(64 + len(data) + 64, np.uint8)
    ext[64 : 64 + len(data)] = np.frombuffer(data, np.uint8)
    spans, at = {}, 65
    for col, values in cols.items():
        lengths = np.array([len(v.encode()) for v in values], np.int64)
        start = at + np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        spans[col] = (start, start + lengths)
        at += int((lengths + 1).sum())
    got = number_columns(ext, spans, integer=("c",))
    for col, values in cols.items():
        one = numbers(ext, *spans[col], integer=(col == "c"))
        assert (got[col].ok == one.ok).all() and (got[col].null == one.null).all()
        for i, text in enumerate(values):
            if one.ok[i]:
                assert got[col].value[i] == float(text), text
                assert got[col].text_len[i] == one.text_len[i] and got[col].dot0[i] == one.dot0[i]
                assert float(text[: one.text_len[i]]) == float(text), text  # only trailing zeros are cut
    assert got["c"].ok.tolist() == [True, True, False, False, False, False, True]
