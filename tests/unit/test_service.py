"""edge.service off systemd and with fakes: environment detection, sd_notify messages, journald fields, rate limit."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.logs import (
    LogContext,
    RateLimitFilter,
    flush_log_summaries,
    setup_logging,
    stage_of,
)
from edge.service import (
    Notifier,
    under_systemd,
    watchdog_interval,
)


class Sent(list):
    def __call__(self, state: str) -> bool:
        self.append(state)
        return True


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"NOTIFY_SOCKET": "/run/systemd/notify"}, True),
    ({"JOURNAL_STREAM": "8:12345"}, True),
    ({"INVOCATION_ID": "0123abcd"}, True),
    ({"NOTIFY_SOCKET": ""}, False),
])
def test_under_systemd(env, expected):
    assert under_systemd(env) is expected, f"under_systemd({env})"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),  # our pid below
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "thirty"}, None),
])
def test_watchdog_interval(env, expected):
    assert watchdog_interval(env, pid=4242) == expected, f"watchdog_interval({env})"


def test_watchdog_interval_defaults_to_own_pid(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0, "reads os.environ when called, and WATCHDOG_PID is ours"


@pytest.mark.parametrize(("call", "expected"), [
    (lambda n: n.ready(), "READY=1"),
    (lambda n: n.ready("running"), "READY=1\nSTATUS=running"),
    (lambda n: n.status("5.0 fps,\nspool 3"), "STATUS=5.0 fps, spool 3"),
    (lambda n: n.watchdog(), "WATCHDOG=1"),
    (lambda n: n.extend_timeout(2.5), "EXTEND_TIMEOUT_USEC=2500000"),
    (lambda n: n.stopping(), "STOPPING=1"),
])
def test_notifier_messages(call, expected):
    sent = Sent()
    assert call(Notifier(send=sent)) is True, "sent"
    assert sent == [expected], f"one sd_notify message, STATUS on one line: {sent}"


def test_notifier_is_a_noop_off_systemd():
    sent = Sent()
    notifier = Notifier(env={})
    notifier._send = sent  # noqa: SLF001 - prove nothing would be sent even with a working sender
    assert not notifier.enabled and notifier.ready() is False and notifier.watchdog() is False, "no-op"
    assert sent == [], "nothing sent without NOTIFY_SOCKET"


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_reaches_a_real_notify_socket(tmp_path, monkeypatch, abstract):
    # given a datagram socket standing in for systemd's notify socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"@edge-test-notify-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(tmp_path / "notify")
    sock.bind("\0" + name[1:] if abstract else name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    try:
        # when the default sender (systemd-python's daemon.notify) sends READY and STATUS
        assert Notifier().ready("warm") is True, "daemon.notify reports success"
        # then the datagram holds both assignments
        assert sock.recv(4096) == b"READY=1\nSTATUS=warm", "sd_notify datagram"
    finally:
        sock.close()


def test_notifier_fallback_without_systemd_python(tmp_path, monkeypatch):
    from edge import service

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    try:
        assert service._socket_notify("WATCHDOG=1") is True, "the pure-Python sender"  # noqa: SLF001
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_extending_timeout_repeats_until_the_block_ends():
    sent = Sent()
    with Notifier(send=sent).extending_timeout(0.2, status="building TensorRT engine"):
        time.sleep(0.35)
    n = len(sent)
    time.sleep(0.25)
    assert sent[0] == "STATUS=building TensorRT engine", sent
    extends = [s for s in sent if s.startswith("EXTEND_TIMEOUT_USEC=")]
    assert len(extends) >= 3 and set(extends) == {"EXTEND_TIMEOUT_USEC=200000"}, f"every step/2: {sent}"
    assert len(sent) == n, "nothing more after the block"


def test_import_reads_no_environment():
    code = ("import os\n"
            "class Env(dict):\n"
            "    def __getitem__(self, k): raise AssertionError('environment read at import: ' + k)\n"
            "    get = __getitem__\n"
            "os.environ = Env()\n"
            "import edge.service, edge.watchdog, edge.status\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("name", "stage"), [
    ("edge.detect.yolo", "detect"), ("edge.spool", "spool"), ("edge.sinks.kafka", "sinks"),
    ("edge", "edge"), ("confluent_kafka.producer", "confluent_kafka"), ("root", "root"),
])
def test_stage_of(name, stage):
    assert stage_of(name) == stage, name


def test_stderr_format_off_systemd(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", service=True, vehicle_id="v1", session_id="s1", env={}, stream=out)
    logging.getLogger("edge.spool").warning("spool %d%% full", 91)
    logging.getLogger("edge.spool").debug("hidden")
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING edge\.spool: spool 91% full\n", line), line


class Journal(list):
    """Stands in for systemd.journal.send: records the fields of each message."""

    def __call__(self, MESSAGE, **fields):  # noqa: N803 - journal field names are upper case
        self.append({"MESSAGE": MESSAGE, **{k: str(v) for k, v in fields.items()}})


@pytest.fixture
def journal(restore_logging):
    sent = Journal()
    context = setup_logging("DEBUG", service=True, vehicle_id="veh-9", session_id="", env={"INVOCATION_ID": "x"},
                            journal_send=sent)
    return sent, context


@pytest.mark.parametrize(("level", "priority"), [
    (logging.DEBUG, "7"), (logging.INFO, "6"), (logging.WARNING, "4"), (logging.ERROR, "3"), (logging.CRITICAL, "2"),
])
def test_journal_priority_matches_level(journal, level, priority):
    sent, _ = journal
    logging.getLogger("edge.gps").log(level, "fix lost")
    assert [r["PRIORITY"] for r in sent] == [priority], f"syslog priority for {logging.getLevelName(level)}: {sent}"


def test_journal_structured_fields(journal):
    sent, context = journal
    log = logging.getLogger("edge.detect.stages")
    log.info("detected %s", "stop sign", extra={"detection_id": "d-1"})
    context.update(session_id="20260101-abcdef")
    log.warning("slow frame", extra={"stage": "capture"})
    first, second = sent
    assert first["MESSAGE"] == "detected stop sign" and first["EDGE_STAGE"] == "detect", first
    assert first["VEHICLE_ID"] == "veh-9" and first["DETECTION_ID"] == "d-1", first
    assert "SESSION_ID" not in first, "an empty session id is left out"
    assert first["CODE_FILE"] == __file__ and first["CODE_FUNC"] == "test_journal_structured_fields", first
    assert first["SYSLOG_IDENTIFIER"] == "edge-detector" and first["LOGGER"] == "edge.detect.stages", first
    assert second["EDGE_STAGE"] == "capture" and second["SESSION_ID"] == "20260101-abcdef", second
    assert "DETECTION_ID" not in second, "only records that carry a detection id have one"


def test_journal_falls_back_to_stderr_without_journald(restore_logging, monkeypatch, tmp_path):
    from edge import service

    monkeypatch.setattr(service, "JOURNAL_SOCKET", tmp_path / "no-journal-socket")
    out = io.StringIO()
    setup_logging("INFO", service=True, env={"INVOCATION_ID": "x"}, stream=out)
    logging.getLogger("edge.x").error("boom")
    assert "ERROR   edge.x: boom" in out.getvalue(), "stderr when the journal socket is missing"


def test_setup_logging_rate_limits_identical_errors(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", service=True, env={}, stream=out, burst=2, window_s=0.2)
    log = logging.getLogger("edge.sinks.kafka")
    for i in range(6):
        log.error("broker down: %s", i)
    time.sleep(0.25)
    assert flush_log_summaries() == 1, "one summary due"
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[2].endswith("broker down: 5 … repeated 4 times in the last 0 s"), lines[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _record(msg: str, level: int = logging.ERROR, name: str = "edge.sinks.kafka", *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_rate_limit_filter_burst_window_summary():
    clock, emitted = Clock(), []
    f = RateLimitFilter(burst=3, window_s=10, clock=clock, emit=emitted.append)
    # given 10 identical errors within the window
    passed = [f.filter(_record("send failed: %s", logging.ERROR, "edge.sinks.kafka", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7, "burst of 3, then suppressed"
    # different template, level or logger: counted on their own; INFO is never limited
    assert f.filter(_record("other error")) and f.filter(_record("send failed: %s", logging.WARNING))
    assert f.filter(_record("send failed: %s", logging.ERROR, "edge.spool"))
    assert all(f.filter(_record("frame", logging.INFO)) for _ in range(20)), "INFO passes"
    assert emitted == [], "no summary before the window ends"
    # when the window has passed, the next record brings the summary first
    clock.t += 10
    assert f.filter(_record("send failed: %s", logging.ERROR, "edge.sinks.kafka", 99))
    assert len(emitted) == 1, emitted
    summary = emitted[0]
    assert summary.getMessage() == "send failed: 9 … repeated 7 times in the last 10 s", summary.getMessage()
    assert summary.levelno == logging.ERROR and summary.name == "edge.sinks.kafka", "same level and logger"
    assert f.filter(summary), "a summary is never limited itself"


def test_rate_limit_flush_and_bounded_keys():
    clock, emitted = Clock(), []
    f = RateLimitFilter(burst=1, window_s=60, clock=clock, emit=emitted.append, max_keys=5)
    for _ in range(3):
        f.filter(_record("a"))
    assert f.flush() == 0, "not due yet"
    assert f.flush(force=True) == 1 and "repeated 2 times" in emitted[0].getMessage(), "forced at exit"
    for i in range(20):  # many distinct templates: memory stays bounded
        f.filter(_record(f"distinct {i}"))
    assert len(f._windows) <= 5, "at most max_keys windows"  # noqa: SLF001


def test_rate_limit_filter_thread_safe():
    emitted = []
    f = RateLimitFilter(burst=5, window_s=60, emit=emitted.append)
    results = []

    def worker():
        results.extend(f.filter(_record("same")) for _ in range(200))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 5, f"exactly the burst passes across threads, got {sum(results)}"


def test_log_context_keeps_explicit_fields():
    record = _record("x")
    record.VEHICLE_ID = "explicit"
    LogContext(vehicle_id="configured").filter(record)
    assert record.VEHICLE_ID == "explicit" and record.EDGE_STAGE == "sinks", "extra= wins over the context"
