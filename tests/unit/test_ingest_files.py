"""`edge ingest-csv` on whole files: malformed input, rejects, counts, resuming; no broker (dry run, a fake spool)."""

from __future__ import annotations

import csv
import gzip
import json
import re
import threading
from pathlib import Path

import pytest

from edge.cli import main
from edge.clock import parse_iso_time
from edge.events import detection_id, recording_session_id
from edge.ingest.checkpoint import Checkpoints
from edge.ingest.run import Ingest, Options

HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading"
SEED = [
    "75,2.500,1737.28,630.06,0.5249,stop sign,43.7900,-79.3140,45.0",
    "76,2.533,1740.10,631.00,0.6100,traffic light,43.7901,-79.3139,45.5",
    "77,2.567,1745.00,633.50,0.7000,stop sign,,,",
]


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _dry_run(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["ingest-csv", str(path), "--dry-run", "--samples", "0", "-q", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, f"a traceback reached the user:\n{err}"
    return code, out, err


def _counts(err: str) -> tuple[int, int]:
    m = re.search(r"parsed\s+([\d,]+) rows\s+rejected ([\d,]+)", err)
    assert m, f"no counts in the report:\n{err}"
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def _rejects(path: Path) -> list[tuple[int, str]]:
    rej = path.with_name(path.name + ".rejects.csv")
    if not rej.exists():
        return []
    with open(rej, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [(int(r["line"]), r["reason"]) for r in rows]


def test_seed_rows_dry_run_prints_events(tmp_path, capsys):
    path = _write(tmp_path / "seed.csv", HEADER + "\n" + "\n".join(SEED) + "\n")
    code = main(["ingest-csv", str(path), "--dry-run", "--full", "-q", "--vehicle", "v9", "--session", "20250101-abcdef"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["frame_number"] for e in events] == [75, 76, 77], out
    assert [e["detection_id"] for e in events] == [detection_id("20250101-abcdef", "seed.csv", n) for n in (2, 3, 4)], \
        "ids from session, file name and line number"
    assert events[2]["vehicle_lat"] is None and events[2]["gps_status"] == "no_fix", events[2]
    assert all(e["vehicle_id"] == "v9" for e in events), "--vehicle is the vehicle id"
    assert _counts(err) == (3, 0), err


@pytest.mark.parametrize(
    ("name", "body", "counts", "rejects"),
    [
        ("bad_number", HEADER + "\n" + SEED[0] + "\n75,2.5,abc,630.06,0.5,stop sign,43.79,-79.31,45.0\n",
         (2, 1), [(3, "u: not a number: 'abc'")]),
        ("missing_field", HEADER + "\n75,2.5,1,2,0.5,stop sign,43.79,-79.31\n" + SEED[1] + "\n",
         (2, 1), [(2, "expected 9 fields, got 8")]),
        ("out_of_range", HEADER + "\n" + "\n".join([
            "1,0.1,1,2,1.01,stop sign,43.79,-79.31,45.0", "2,0.1,1,2,0.5,stop sign,-90.5,-79.31,45.0",
            "3,0.1,1,2,0.5,stop sign,43.79,180.5,45.0", "4,0.1,1,2,0.5,stop sign,43.79,-79.31,360",
            "5,0.1,1,2,0.5,,43.79,-79.31,45.0"]) + "\n",
         (5, 5), [(2, "confidence: 1.01 not in [0, 1]"), (3, "vehicle_lat: -90.5 not in [-90, 90]"),
                  (4, "vehicle_lon: 180.5 not in [-180, 180]"), (5, "heading: 360.0 not in [0, 360)"), (6, "class_name: empty")]),
        ("bom", "\ufeff" + HEADER + "\n" + "\n".join(SEED) + "\n", (3, 0), []),
        ("crlf", HEADER + "\r\n" + "\r\n".join(SEED) + "\r\n", (3, 0), []),
        ("quoted", HEADER + '\n75,2.5,"1737.28",630.06,0.5,"stop, sign",43.79,-79.31,45.0\n' + SEED[1] + "\n", (2, 0), []),
        ("truncated_last_line", HEADER + "\n" + SEED[0] + "\n76,2.533,1740.10,63", (2, 1), [(3, "expected 9 fields, got 4")]),
        ("no_final_newline", HEADER + "\n" + SEED[0] + "\n" + SEED[1], (2, 0), []),
        ("header_only", HEADER + "\n", (0, 0), []),
        ("blank_lines", HEADER + "\n" + SEED[0] + "\n\n\n75,2.5,x,1,0.5,a,,,\n", (2, 1), [(5, "u: not a number: 'x'")]),
        # a line break in a class name is refused; the record is still whole (the next one is on line 4)
        ("multiline_quoted", HEADER + '\n75,2.5,1,2,0.5,"stop\nsign",,,\n75,2.5,y,1,0.5,a,,,\n', (2, 2),
         [(2, "class_name: contains the control character '\\n'"), (4, "u: not a number: 'y'")]),
        ("bad_utf8", (HEADER + "\n75,2.5,1,2,0.5,stop\xff,,,\n").encode("latin-1"), (1, 1), [(2, "class_name: not valid UTF-8")]),
        ("semicolon_row", HEADER + "\n" + SEED[0].replace(",", ";") + "\n", (1, 1), [(2, "expected 9 fields, got 1")]),
    ],
)
def test_malformed_input_gives_counts_and_rejects(tmp_path, capsys, name, body, counts, rejects):
    # given a file with the malformed case
    path = _write(tmp_path / f"{name}.csv", body)
    # when it is ingested (dry run)
    code, _out, err = _dry_run(capsys, path)
    # then the run completes with the right counts and each bad row in the rejects file
    assert code == 0, f"{name}: exit {code}\n{err}"
    assert _counts(err) == counts, f"{name}: counts\n{err}"
    assert _rejects(path) == rejects, f"{name}: rejects file"


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("empty", b"", "empty file"),
        ("missing_column", (HEADER.replace(",confidence", "") + "\n1,2,3,4,a,,,\n").encode(), "lacks required column(s) confidence"),
        ("wrong_delimiter", (HEADER.replace(",", ";") + "\n" + SEED[0].replace(",", ";") + "\n").encode(), "';'-separated"),
        ("binary", bytes(range(256)) * 40, "NUL"),
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(11, 256)) * 40, "not UTF-8"),
        ("binary_no_newline", b"\x00\x01\x02PK\x03\x04" * 1000, "NUL"),
        ("utf16", ("\ufeff" + HEADER + "\n").encode("utf-16"), "UTF-16"),
        ("bad_gzip", b"\x1f\x8b\x08\x00garbage" * 10, "gzip"),
    ],
)
def test_unusable_files_fail_cleanly(tmp_path, capsys, name, body, message):
    path = _write(tmp_path / f"{name}.csv", body)
    code, _out, err = _dry_run(capsys, path)
    assert code == 3, f"{name}: unusable input must exit 3, got {code}\n{err}"
    assert message in err, f"{name}: expected {message!r} in\n{err}"


def test_missing_file_and_good_file_together(tmp_path, capsys):
    good = _write(tmp_path / "good.csv", HEADER + "\n" + SEED[0] + "\n")
    code = main(["ingest-csv", str(tmp_path / "nope.csv"), str(good), "--dry-run", "-q"])
    _out, err = capsys.readouterr()
    assert code == 3 and "nope.csv: no such file" in err, err
    assert _counts(err) == (1, 0), "the good file is still ingested"


def test_gzip_input_equals_plain(tmp_path, capsys):
    body = HEADER + "\n" + "\n".join(SEED * 50) + "\n"
    plain = _write(tmp_path / "d.csv", body)
    packed = tmp_path / "d.csv.gz"
    packed.write_bytes(gzip.compress(body.encode()))
    outs = []
    for path in (plain, packed):
        code = main(["ingest-csv", str(path), "--dry-run", "--full", "-q", "--session", "20250101-abcdef",
                     "--start-time", "2025-01-01T00:00:00Z"])
        out, err = capsys.readouterr()
        assert code == 0, err
        outs.append([{k: v for k, v in json.loads(x).items() if k not in ("ingested_at", "source", "detection_id")}
                     for x in out.splitlines()])
    assert outs[0] == outs[1] and len(outs[0]) == 150, "gzip input must give the same events"


def test_auto_session_is_derived_from_the_file(tmp_path, capsys):
    path = _write(tmp_path / "s.csv", HEADER + "\n" + SEED[0] + "\n")
    ids = []
    for _ in range(2):
        main(["ingest-csv", str(path), "--dry-run", "--full", "-q"])
        ids.append(json.loads(capsys.readouterr().out)["session_id"])
    assert ids[0] == ids[1] and re.fullmatch(r"\d{8}-[0-9a-f]{6}", ids[0]), f"session ids {ids}"


def test_auto_session_follows_the_start_time(tmp_path, capsys):
    # given a file modified today, ingested with an explicit --start-time on another day
    path = _write(tmp_path / "s.csv", HEADER + "\n" + SEED[0] + "\n")
    main(["ingest-csv", str(path), "--dry-run", "--full", "-q", "--vehicle", "v9", "--start-time", "2025-01-01T00:00:00Z"])
    event = json.loads(capsys.readouterr().out)
    session = event["session_id"]
    # then the session is the one replay derives for a recording with that start (the same rule, edge.events)
    want = recording_session_id(path, parse_iso_time("2025-01-01T00:00:00Z"), "v9", event["camera_id"])
    assert session == want, f"ingest-csv session {session}, the recording rule gives {want}"
    assert session.startswith("20250101-"), f"the session is dated by --start-time, not the file's mtime: {session}"


# -- resuming, with a fake spool -----------------------------------------------------------------


class FakeSpool:
    """Records appended events; can stop the run or crash after N appends."""

    def __init__(self, stop_after: int | None = None, crash_after: int | None = None, stop: threading.Event | None = None):
        self.events: list[tuple[str, bytes]] = []
        self.appends = 0
        self.stop_after, self.crash_after, self.stop = stop_after, crash_after, stop

    def write(self, batch, ctx) -> None:  # noqa: ANN001 - the Sink protocol
        self.events += [(det_id, value) for _line, value, det_id, _cap in batch.events()]
        self.appends += 1
        if self.crash_after is not None and self.appends >= self.crash_after:
            raise RuntimeError("simulated crash after a durable append, before the checkpoint")
        if self.stop_after is not None and self.appends >= self.stop_after and self.stop is not None:
            self.stop.set()


def _big_file(tmp_path: Path, n: int, bad_every: int = 0) -> Path:
    rows = [HEADER]
    for i in range(1, n + 1):
        u = "x" if bad_every and i % bad_every == 0 else f"{i % 1900}.5"
        rows.append(f"{i},{i / 30:.3f},{u},{i % 1000}.25,0.5,stop sign,43.79,-79.31,45.0")
    return _write(tmp_path / "big.csv", "\n".join(rows) + "\n")


def _ingest(tmp_path: Path, path: Path, spool: FakeSpool, stop: threading.Event | None = None, force: bool = False):
    cp = Checkpoints(tmp_path / "state" / "ingest-progress.db")
    try:
        ing = Ingest(Options("v1", "c1", chunk_bytes=8192, force=force), spool, cp, stop=stop or threading.Event())
        return ing.run([path])[0]
    finally:
        cp.close()


def test_stopped_run_continues_without_loss_or_duplicates(tmp_path):
    path = _big_file(tmp_path, 3000, bad_every=97)
    stop = threading.Event()
    first = FakeSpool(stop_after=3, stop=stop)
    report = _ingest(tmp_path, path, first, stop)
    assert not report.complete and 0 < len(first.events) < 3000, f"the first run must stop early: {report}"
    second = FakeSpool()
    report = _ingest(tmp_path, path, second)
    assert report.complete and report.resumed_at_line, report
    ids = [i for i, _ in first.events + second.events]
    assert len(ids) == len(set(ids)) == 3000 - 3000 // 97, "every valid row exactly once"
    assert len(_rejects(path)) == 3000 // 97, "no reject written twice across the two runs"


def test_crash_between_append_and_checkpoint_repeats_one_chunk_only(tmp_path):
    path = _big_file(tmp_path, 3000)
    first = FakeSpool(crash_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _ingest(tmp_path, path, first)
    second = FakeSpool()
    _ingest(tmp_path, path, second)
    ids = [i for i, _ in first.events + second.events]
    assert set(ids) == {detection_id(second_ctx_session(path), "big.csv", n) for n in range(2, 3002)}, "nothing lost"
    assert len(ids) - len(set(ids)) <= 8192 // 40, "at most the chunk in flight is appended twice (same ids)"


def second_ctx_session(path: Path) -> str:
    from edge.ingest.run import file_context

    return file_context(path, Options("v1", "c1")).session_id


def test_done_file_is_skipped_and_force_sends_the_same_ids(tmp_path):
    path = _big_file(tmp_path, 500)
    first, again, forced = FakeSpool(), FakeSpool(), FakeSpool()
    assert _ingest(tmp_path, path, first).complete
    report = _ingest(tmp_path, path, again)
    assert report.skipped and not again.events, "a finished file is not sent again"
    _ingest(tmp_path, path, forced, force=True)
    assert sorted(forced.events) == sorted(first.events) or {i for i, _ in forced.events} == {i for i, _ in first.events}, \
        "--force sends the same ids again"


def test_small_chunks_never_split_a_quoted_record(tmp_path):
    # given records with quoted newlines (in an extra column), read in chunks smaller than a record
    from edge.ingest.sinks import DryRunSink

    body = HEADER + ",note\n" + "\n".join(
        f'{i},{i / 30:.3f},1.5,2.5,0.5,sign {i},43.79,-79.31,45.0,"two\nlines"' if i % 3 == 0
        else f"{i},0.1,x,2,0.5,a,,,"
        for i in range(1, 31)
    ) + "\n"
    path = _write(tmp_path / "q.csv", body)
    sink = DryRunSink(samples=100)
    report = Ingest(Options("v", "c", chunk_bytes=64), sink).run([path])[0]
    # then every record is whole: 10 valid (two lines each), 20 rejected at their own line numbers
    assert (report.rows, report.accepted, report.rejected) == (30, 10, 20), report
    assert [s["class_name"] for s in sink.samples] == [f"sign {i}" for i in range(3, 31, 3)], sink.samples
    lines, line = [], 2
    for i in range(1, 31):
        if i % 3:
            lines.append(line)
        line += 2 if i % 3 == 0 else 1
    assert [n for n, _ in _rejects(path)] == lines, "reject line numbers count the physical lines"
