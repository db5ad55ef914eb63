"""What C libraries write to fds 1 and 2 under systemd becomes structured, counted `edge.native` records.

The capture rewires the process's own file descriptors, so each case runs in a child Python process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.native import capture_native_output, native_kind, native_output_counts
from edge.status import metrics_from_status

REPO = Path(__file__).resolve().parents[2]

# Shared by the child scripts: a journal stand-in that keeps the fields of each record, and a deadline poll.
PRELUDE = """
import json, logging, os, sys, time
from edge import native as nat, logs

records = []

def journal_send(MESSAGE, **fields):
    records.append({"MESSAGE": MESSAGE, **{k: str(v) for k, v in fields.items()}})

def wait_for(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)  # poll interval

ENV = {"INVOCATION_ID": "test"}  # under_systemd()
"""


def run_child(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, f"child failed ({result.returncode}): {result.stderr[-3000:]}"
    return result


def test_native_lines_become_structured_records_and_python_stderr_stays_direct(tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    # given the capture and the journal handler of `edge run`
    result = run_child(f"""
        native = nat.capture_native_output(ENV)
        logs.setup_logging("DEBUG", service=True, vehicle_id="veh-1", session_id="sess-1", env=ENV, journal_send=journal_send)
        # when C code writes to fd 2 and fd 1 (two lines of one kind, one of another, one without an end)
        os.write(2, b"[h264 @ 0x55d1a0] error while decoding MB 3 4\\n[h264 @ 0x55d1b8] error while decoding MB 7 1\\n")
        os.write(1, b"[OPENCV:FFMPEG:16] Connection to tcp://127.0.0.1:1 failed: Connection refused\\n")
        os.write(2, b"a last line without its end")
        # and Python writes to sys.stderr (what an uncaught exception's traceback does)
        try:
            1 / 0
        except ZeroDivisionError:
            sys.excepthook(*sys.exc_info())
        wait_for(lambda: nat.native_output_counts()["native_log_lines"] >= 3, "3 native lines")
        native.close()
        json.dump({{"records": records, "counts": nat.native_output_counts()}}, open({str(out)!r}, "w"))
    """)
    data = json.loads(out.read_text())
    native = [r for r in data["records"] if r.get("LOGGER") == "edge.native"]
    # then each native line is one record of ours, with the context fields
    assert [r["MESSAGE"].split(": ", 1)[1] for r in native] == [
        "[h264 @ 0x55d1a0] error while decoding MB 3 4", "[h264 @ 0x55d1b8] error while decoding MB 7 1",
        "[OPENCV:FFMPEG:16] Connection to tcp://127.0.0.1:1 failed: Connection refused",
        "a last line without its end"], f"one record per line, in order: {native}"
    for r in native:
        assert (r["EDGE_STAGE"], r["VEHICLE_ID"], r["SESSION_ID"]) == ("native", "veh-1", "sess-1"), f"fields: {r}"
    assert [r["PRIORITY"] for r in native] == ["4", "7", "4", "4"], f"first of a kind WARNING, repeats DEBUG: {native}"
    assert data["counts"] == {"native_log_lines": 4, "native_log_dropped": 0}, f"counted: {data['counts']}"
    # and Python's own stderr still reaches the original stream (the journal), not the pipe
    assert "ZeroDivisionError" in result.stderr, f"the traceback reaches the original stderr: {result.stderr!r}"
    assert not any("ZeroDivisionError" in r["MESSAGE"] for r in data["records"]), "a traceback is not native output"
    assert result.stdout == "", f"fd 1 was captured too: {result.stdout!r}"


def test_a_stuck_journal_never_blocks_the_writers_of_fd_2() -> None:
    # given a journal that never returns (the emitter thread hangs in its first send)
    result = run_child("""
        import threading
        never = threading.Event()
        native = nat.capture_native_output(ENV)
        logs.setup_logging("DEBUG", service=True, env=ENV, journal_send=lambda MESSAGE, **fields: never.wait())
        # when C code writes 4 MiB of lines, four times what the pipe holds
        line = b"[h264 @ 0x55d1a0] error while decoding MB 3 4 ........\\n"
        n = (4 << 20) // len(line)
        for _ in range(n):
            os.write(2, line)
        wait_for(lambda: nat.native_output_counts()["native_log_lines"] == n, "every line read")
        native.close(timeout=0.5)
        print(json.dumps({"written": n, **nat.native_output_counts()}))
        never.set()  # the journal recovers: logging's exit handlers need the handler the emitter holds
    """, timeout=60)
    # then every write returned (the child finished), every line was read, the excess was dropped and counted
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["native_log_lines"] == counts["written"], f"every line read: {counts}"
    assert counts["native_log_dropped"] >= counts["written"] - 1100, f"what logging could not take is dropped: {counts}"


def test_an_existing_stream_handler_is_moved_off_the_pipe() -> None:
    # given the plain stderr handler `edge` sets up first (no journal), and then the capture
    result = run_child("""
        from edge.logs import setup_logging
        setup_logging("DEBUG")
        native = nat.capture_native_output(ENV)
        # when a native line is logged through that handler
        os.write(2, b"[tcp @ 0x1] Connection refused\\n")
        wait_for(lambda: nat.native_output_counts()["native_log_lines"] >= 1, "the line")
        time.sleep(0.3)  # a feedback loop, if there were one, would show as more lines in this time
        native.close()
        print(json.dumps(nat.native_output_counts()))
    """)
    # then its record reaches the real stderr once, and does not come back through the pipe as a new line
    assert result.stderr.count("Connection refused") == 1, f"logged once: {result.stderr!r}"
    assert json.loads(result.stdout.strip().splitlines()[-1])["native_log_lines"] == 1, "no feedback loop"


def test_quiet_native_libraries_lowers_opencv_to_errors_unless_told_otherwise() -> None:
    result = run_child("""
        import cv2
        levels = []
        for level, env in (("INFO", {}), ("INFO", {"OPENCV_LOG_LEVEL": "INFO"}), ("DEBUG", {})):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
            nat.quiet_native_libraries(level, env)
            levels.append(cv2.utils.logging.getLogLevel())
        print(json.dumps(levels))
    """)
    import cv2

    error, warning = cv2.utils.logging.LOG_LEVEL_ERROR, cv2.utils.logging.LOG_LEVEL_WARNING
    levels = json.loads(result.stdout.strip().splitlines()[-1])
    assert levels == [error, warning, warning], f"errors only at INFO; OPENCV_LOG_LEVEL and DEBUG win: {levels}"


def test_no_capture_off_systemd() -> None:
    before = os.fstat(2)
    assert capture_native_output({}) is None, "a terminal or a test keeps the libraries' output as it is"
    assert os.fstat(2) == before, "fd 2 untouched"
    assert native_output_counts() == {"native_log_lines": 0, "native_log_dropped": 0}, "zeros without a capture"


@pytest.mark.parametrize(("a", "b", "same"), [
    ("[h264 @ 0x55d1a0] error while decoding MB 3 4", "[h264 @ 0x7f00] error while decoding MB 17 1", True),
    ("[ WARN:0@0.018] global cap.cpp:212 open VIDEOIO(FFMPEG): can't capture by name",
     "[ WARN:0@12.5] global cap.cpp:212 open VIDEOIO(FFMPEG): can't capture by name", True),
    ("[h264 @ 0x1] error while decoding MB 3 4", "[h264 @ 0x1] non-existing PPS 0 referenced", False),
])
def test_native_kind(a: str, b: str, same: bool) -> None:
    assert (native_kind(a) == native_kind(b)) is same, f"{native_kind(a)!r} vs {native_kind(b)!r}"


def test_native_counters_are_prometheus_counters() -> None:
    metrics = metrics_from_status({"native_log_lines": 12, "native_log_dropped": 2})
    lines, dropped = metrics["edge_native_log_lines_total"], metrics["edge_native_log_dropped_total"]
    assert lines is not None and (lines.value, lines.type) == (12, "counter"), f"lines: {lines}"
    assert dropped is not None and dropped.value == 2, f"dropped: {dropped}"


def test_native_records_have_their_own_stage() -> None:
    from edge.logs import stage_of

    assert stage_of(logging.getLogger("edge.native").name) == "native", "EDGE_STAGE=native"
