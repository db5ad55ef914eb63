"""Spool under SIGKILL: every record whose append() returned survives the crash; un-acked ones come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edge.spool import Spool

REPO = Path(__file__).resolve().parents[2]

# The child appends in a loop (sometimes one item, sometimes a batch) and prints "A <id>" after each
# append() returned; a second thread leases and acks, printing "K <id>" before each ack so the parent
# knows which records may legitimately be gone.
CHILD = textwrap.dedent(
    """
    import sys, threading, time
    sys.path.insert(0, {repo!r})
    from edge.spool import Spool, SpoolItem

    spool = Spool.open({path!r}, commit_interval_ms=2.0, commit_batch=64)
    start = {start}
    out = sys.stdout
    lock = threading.Lock()

    def say(lines):
        with lock:
            out.write("".join(lines))
            out.flush()

    def consume():
        while True:
            records = spool.lease(20)
            if records:
                ids = [r.detection_id for r in records[::2]]
                say(f"K {{i}}\\n" for i in ids)
                spool.ack(r.seq for r in records[::2])
                spool.release(r.seq for r in records[1::2])
            time.sleep(0.002)

    threading.Thread(target=consume, daemon=True).start()
    say(["READY\\n"])
    i = start
    while True:
        n = 1 + (i % 7)
        items = [SpoolItem("vehicle-001", b'{{"i":%d}}' % k, f"det-{{k}}", time.time()) for k in range(i, i + n)]
        spool.append(items)
        say(f"A det-{{k}}\\n" for k in range(i, i + n))
        i += n
    """
)


def run_child_and_kill(path: Path, start: int, appended_lines: int) -> tuple[set[str], set[str]]:
    code = CHILD.format(repo=str(REPO), path=str(path), start=start)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, bufsize=1)
    appended: set[str] = set()
    acked: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while len(appended) < appended_lines:
            assert time.monotonic() < deadline, f"child appended only {len(appended)} records in 30 s"
            line = proc.stdout.readline()
            assert line, f"child exited early with {proc.poll()}"
            kind, _, ident = line.strip().partition(" ")
            if kind == "A":
                appended.add(ident)
            elif kind == "K":
                acked.add(ident)
        os.kill(proc.pid, signal.SIGKILL)  # mid-append, mid-commit, mid-ack: wherever it is
        rest = proc.stdout.read()  # lines flushed before the kill are still in the pipe
        for line in rest.splitlines():
            kind, _, ident = line.strip().partition(" ")
            if kind == "A":
                appended.add(ident)
            elif kind == "K":
                acked.add(ident)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, f"child ended with {proc.returncode}, not by SIGKILL"
    return appended, acked


def test_sigkill_loses_no_committed_record(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    expected: set[str] = set()  # appended (append() returned) and not acked by anyone
    start = 0
    for round_, lines in enumerate((300, 700, 1500)):
        # given a child appending and acking in a loop, killed with SIGKILL
        appended, acked = run_child_and_kill(path, start, lines)
        start += 10_000
        expected = (expected | appended) - acked
        # when the spool is reopened
        with Spool.open(path) as spool:
            assert spool.recovery is None, f"round {round_}: a crash must not corrupt the file: {spool.recovery}"
            present = {r.detection_id for r in spool.peek(1_000_000)}
        # then every committed, un-acked record is there (acked ones may be there too: at-least-once)
        missing = expected - present
        assert not missing, f"round {round_}: {len(missing)} committed records lost, e.g. {sorted(missing)[:5]}"
        # records in the file but never acked stay expected in later rounds
        expected = (expected | (present - acked)) if present else expected
