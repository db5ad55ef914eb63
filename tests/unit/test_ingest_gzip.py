"""A truncated or corrupt gzip CSV keeps every complete row before the damage and says how many."""

from __future__ import annotations

import gzip
import re
import threading
import zlib
from pathlib import Path

import pytest

from edge.cli import main
from edge.events import detection_id
from edge.ingest.checkpoint import Checkpoints
from edge.ingest.reader import CsvFile
from edge.ingest.run import Ingest, Options, file_context

HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading"


def body(n: int) -> bytes:
    """n valid rows whose numbers vary enough that gzip cannot squeeze them to nothing."""
    rows = [HEADER]
    for i in range(1, n + 1):
        cls = "stop sign" if i * 7919 % 3 else "traffic light"
        rows.append(f"{i},{i / 30:.3f},{i * 7919 % 1920}.{i % 97:02d},{i * 104729 % 1080}.5,0.{i * 31 % 9000 + 1000},"
                    f"{cls},{43.79 + i * 1e-6:.6f},{-79.31 + i * 1e-6:.6f},{i * 13 % 360}.0")
    return ("\n".join(rows) + "\n").encode()


def cut_gzip(tmp_path: Path, n: int, fraction: float = 0.5) -> tuple[Path, int]:
    """A gzip of n rows cut at `fraction` of its bytes, and its complete data lines (by zlib, independently)."""
    packed = gzip.compress(body(n))
    cut = packed[: int(len(packed) * fraction)]
    path = tmp_path / f"cut{n}.csv.gz"
    path.write_bytes(cut)
    prefix = zlib.decompressobj(wbits=31).decompress(cut)  # all that the truncated stream can yield
    return path, prefix.count(b"\n") - 1  # minus the header line


class Collect:
    """A sink that keeps the ids written, like the spool would."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def write(self, batch, ctx) -> None:  # noqa: ANN001 - the Sink protocol
        self.ids += [det_id for _line, _value, det_id, _cap in batch.events()]


def ingest(tmp_path: Path, path: Path, sink: Collect, workers: int = 2):
    cp = Checkpoints(tmp_path / "state" / "ingest-progress.db")
    try:
        return Ingest(Options("v1", "c1", chunk_bytes=16384, workers=workers), sink, cp, stop=threading.Event()).run([path])[0]
    finally:
        cp.close()


@pytest.mark.parametrize("rows", [300, 8000])  # one read of the header takes all of the first; many chunks for the second
def test_dry_run_keeps_every_complete_row(tmp_path, capsys, rows):
    # given a gzip CSV cut in half
    path, complete = cut_gzip(tmp_path, rows)
    assert 0 < complete < rows, f"the cut must fall inside the data: {complete} of {rows}"
    # when it is ingested as a dry run
    code = main(["ingest-csv", str(path), "--dry-run", "--samples", "0", "-q"])
    err = capsys.readouterr().err
    # then every complete line became an event, the run says so and fails as unusable input
    parsed = re.search(r"parsed\s+([\d,]+) rows\s+rejected ([\d,]+)", err)
    assert parsed, f"no counts in the report:\n{err}"
    assert int(parsed.group(1).replace(",", "")) == complete, f"{complete} complete rows expected:\n{err}"
    assert parsed.group(2) == "0", f"the cut line is not a reject, it is reported as damage:\n{err}"
    assert f"every complete line before line {complete + 2:,} is kept ({complete:,} data lines)" in err, err
    assert code == 3, f"a damaged input exits 3, got {code}"


def test_many_chunks_in_flight_are_all_written_in_order(tmp_path):
    # given a bigger file, many chunks read ahead by several workers when the damage is met
    path, complete = cut_gzip(tmp_path, 40_000)
    sink = Collect()
    report = ingest(tmp_path, path, sink, workers=3)
    # then the events are exactly the rows of lines 2 .. complete+1, and the report has the error
    session = file_context(path, Options("v1", "c1")).session_id
    assert sink.ids == [detection_id(session, path.name, n) for n in range(2, complete + 2)], \
        f"{len(sink.ids)} events for {complete} complete rows"
    assert report.rows == report.accepted == complete and not report.complete, f"{report}"
    assert report.error and "truncated gzip" in report.error, f"the damage is reported: {report.error}"


def test_rerun_resumes_after_the_kept_rows_and_adds_nothing(tmp_path):
    path, complete = cut_gzip(tmp_path, 5000)
    first, second = Collect(), Collect()
    ingest(tmp_path, path, first)
    report = ingest(tmp_path, path, second)
    assert len(first.ids) == complete and second.ids == [], f"nothing twice: {len(first.ids)}, {len(second.ids)}"
    assert report.resumed_at_line == complete + 2 and report.error, f"{report}"


@pytest.mark.parametrize("fraction", [0.1, 0.9, -4])  # -4: only the end of the trailer (CRC, size) is missing
def test_cut_anywhere_keeps_exactly_the_complete_rows(tmp_path, fraction):
    packed = gzip.compress(body(6000))
    cut = packed[:fraction] if fraction < 0 else packed[: int(len(packed) * fraction)]
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(cut)
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n") - 1
    sink = Collect()
    report = ingest(tmp_path, path, sink)
    assert len(sink.ids) == report.rows == complete, f"cut at {fraction}: {len(sink.ids)} of {complete}: {report}"
    assert report.error and not report.complete, f"the damage is reported even when no row is lost: {report}"


def test_garbage_after_a_whole_member_keeps_every_row(tmp_path):
    path = tmp_path / "tail.csv.gz"
    path.write_bytes(gzip.compress(body(3000)) + b"not gzip at all")
    sink = Collect()
    report = ingest(tmp_path, path, sink)
    assert len(sink.ids) == 3000 and report.rejected == 0, f"all rows of the whole member: {report}"
    assert report.error and "gzip" in report.error, f"the trailing garbage is reported: {report}"


def test_reader_ends_with_the_damage_after_the_complete_lines(tmp_path):
    path, complete = cut_gzip(tmp_path, 2000)
    with CsvFile(path, chunk_bytes=4096) as csvf:
        whole = list(csvf.chunks())
        damage = csvf.damage
    cut_line = zlib.decompressobj(wbits=31).decompress(path.read_bytes()).rsplit(b"\n", 1)[1]
    assert damage is not None and "gzip" in damage, f"the damage is known once the chunks end: {damage}"
    assert sum(c.data.count(b"\n") for c in whole) == complete, "every complete line is in a chunk"
    assert f"before line {complete + 2:,}" in damage and f"the {len(cut_line):,} bytes of the cut line" in damage, \
        f"the damage names the first line not kept and drops the cut line only: {damage}"


def test_header_cut_short_is_unusable_input(tmp_path, capsys):
    path = tmp_path / "h.csv.gz"
    path.write_bytes(gzip.compress(body(10))[:12])
    code = main(["ingest-csv", str(path), "--dry-run", "-q"])
    err = capsys.readouterr().err
    assert code == 3 and "gzip" in err and "Traceback" not in err, err
