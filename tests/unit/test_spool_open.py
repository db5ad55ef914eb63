"""Opening a spool: "cannot open it now" is an error that changes nothing; only corruption moves a file aside."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import ENV_OVERRIDES
from edge.spool import Spool, SpoolError, SpoolItem, schema

N = 10
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def make_spool(path: Path, n: int = N) -> None:
    with Spool.open(path) as spool:
        spool.append([
            SpoolItem("vehicle-001", json.dumps({"class_name": "stop sign", "frame_number": i}).encode(),
                      f"det-{i:04d}", 1.7e9 + i)
            for i in range(n)
        ])


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of a state dir with its bytes (the lock file's holder text aside)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.suffix != ".lock"}


def edge(args: list[str], state: Path, *, prefix: list[str] = (), rlimit: int | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m edge ARGS --state-dir STATE` with an empty configuration, optionally as another user or with a
    lower limit on open files."""
    config = state.parent / "edge.toml"
    config.write_text("")
    config.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if k not in set(ENV_OVERRIDES) | {"EDGE_CONFIG"}}
    env |= {"EDGE_CONFIG": str(config), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def limit() -> None:
        if rlimit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    return subprocess.run([*prefix, sys.executable, "-m", "edge", *args, "--state-dir", str(state)], env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit, check=False)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's own are 0700): for commands run as another user."""
    root = Path(tempfile.mkdtemp(prefix="edge-spool-open-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def can_switch_user() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def test_too_many_open_files_is_not_corruption(tmp_path: Path) -> None:
    # given a healthy spool with 10 pending events
    state = tmp_path / "state"
    make_spool(state / "spool.db")
    before = snapshot(state)
    # when the commands run with almost no file descriptors left (the fault: `(ulimit -n 5; edge queue stats)`)
    stats = edge(["queue", "stats", "--json"], state, rlimit=5)
    requeue = edge(["queue", "requeue-dead"], state, rlimit=5)
    # then the read-only command reads it, the writer says why it cannot, and nothing was moved or changed
    assert stats.returncode == 0 and json.loads(stats.stdout)["depth"] == N, (
        f"queue stats with 5 descriptors should read the spool: rc {stats.returncode}, {stats.stdout}{stats.stderr}")
    assert requeue.returncode == 1, f"requeue-dead cannot open it now: rc {requeue.returncode}, {requeue.stderr}"
    assert "EMFILE" in requeue.stderr and str(state / "spool.db") in requeue.stderr, (
        f"the error names the path and errno: {requeue.stderr}")
    assert "Traceback" not in requeue.stderr and "corrupt" not in requeue.stderr, f"one clear line: {requeue.stderr}"
    assert not list(state.glob("*.corrupt-*")), f"nothing may be moved aside: {sorted(os.listdir(state))}"
    assert snapshot(state)["spool.db"] == before["spool.db"], "the spool file must be unchanged"
    # and the next run has every event
    with Spool.open(state / "spool.db") as spool:
        assert spool.recovery is None and spool.stats().depth == N, f"events lost: {spool.stats()}"


def test_over_long_path_is_not_corruption(tmp_path: Path) -> None:
    # given a healthy spool moved into a directory whose full path is longer than SQLite takes (512 bytes)
    deep = tmp_path.joinpath(*(["d" * 200] * 3))
    deep.mkdir(parents=True)
    make_spool(tmp_path / "spool.db")
    shutil.move(tmp_path / "spool.db", deep / "spool.db")
    before = snapshot(deep)
    # when a writer and a reader open it
    with pytest.raises(SpoolError, match="ENAMETOOLONG") as writer:
        Spool.open(deep / "spool.db")
    reading = edge(["queue", "stats"], deep)
    # then the error names the path, and the file is where it was, unchanged
    assert str(deep / "spool.db") in str(writer.value), f"the error names the path: {writer.value}"
    assert reading.returncode == 1 and "ENAMETOOLONG" in reading.stderr, f"queue stats: {reading.stderr}"
    assert snapshot(deep) == before, f"nothing may change: {sorted(snapshot(deep))} vs {sorted(before)}"


def test_busy_database_is_not_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a healthy spool that another process holds with an exclusive lock
    path = tmp_path / "spool.db"
    make_spool(path)
    code = (f"import sqlite3, sys\nc = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode = EXCLUSIVE')\nc.execute('BEGIN EXCLUSIVE')\n"
            "print('HELD', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD", "holder did not lock"
        monkeypatch.setattr(schema, "BUSY_TIMEOUT_S", 0.2, raising=False)  # SQLITE_BUSY after 0.2 s, not 10 s
        # when it is opened
        with pytest.raises(SpoolError, match="SQLITE_BUSY") as info:
            Spool.open(path)
    finally:
        holder.communicate("", timeout=10)
    # then it was reported as busy, and neither moved nor changed
    assert "nothing was changed" in str(info.value), f"message: {info.value}"
    assert not list(tmp_path.glob("*.corrupt-*")), f"a busy spool was moved aside: {os.listdir(tmp_path)}"
    with Spool.open(path) as spool:
        assert spool.stats().depth == N, f"events lost: {spool.stats()}"


@pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to act as another user")
def test_permission_denied_and_read_only_spool_found_at_open(open_dir: Path) -> None:
    # given a healthy spool in a directory its user cannot write, and one whose file is read-only
    theirs = open_dir / "theirs"
    make_spool(theirs / "spool.db")
    theirs.chmod(0o755)
    mine = open_dir / "mine"
    make_spool(mine / "spool.db")
    shutil.chown(mine, 65534, 65534)
    for p in mine.iterdir():
        shutil.chown(p, 65534, 65534)
    (mine / "spool.db").chmod(0o444)
    before = {d: snapshot(d) for d in (theirs, mine)}
    # when another user runs the commands
    stats = edge(["queue", "stats", "--json"], theirs, prefix=NOBODY)
    denied = edge(["queue", "requeue-dead"], theirs, prefix=NOBODY)
    read_only = edge(["queue", "requeue-dead"], mine, prefix=NOBODY)
    # then reading works, writing fails at open with one line naming the file and EACCES, and nothing moved
    assert stats.returncode == 0 and json.loads(stats.stdout)["depth"] == N, f"stats: {stats.stderr}"
    for run, state in ((denied, theirs), (read_only, mine)):
        assert run.returncode == 1 and "EACCES" in run.stderr and str(state / "spool.db") in run.stderr, (
            f"rc {run.returncode}: {run.stderr}")
        assert "Traceback" not in run.stderr and "requeue_dead failed" not in run.stderr, (
            f"found at open, in one line, not at the first write: {run.stderr}")
        assert snapshot(state) == before[state], f"nothing may change in {state}: {sorted(snapshot(state))}"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root to mount read-only")
def test_read_only_state_dir(tmp_path: Path) -> None:
    # given a healthy spool on a file system mounted read-only (in a private mount namespace)
    state = tmp_path / "state"
    make_spool(state / "spool.db")
    before = snapshot(state)
    env = {k: v for k, v in os.environ.items() if k not in set(ENV_OVERRIDES) | {"EDGE_CONFIG"}}
    (tmp_path / "edge.toml").write_text("")
    env |= {"EDGE_CONFIG": str(tmp_path / "edge.toml"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    edge_cmd = f"{sys.executable} -m edge queue"
    script = (f"mount --bind {state} {state} && mount -o remount,bind,ro {state} || exit 97; "
              f"{edge_cmd} stats --json --state-dir {state}; echo rc=$?; "
              f"{edge_cmd} requeue-dead --state-dir {state}; echo rc=$?")
    # when the commands run there
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode == 97:
        pytest.skip(f"cannot mount read-only here: {done.stderr.strip()}")
    # then stats reads it, requeue-dead fails at open naming EROFS, and nothing was renamed or written
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[1] == "rc=0", f"stats: {done.stdout}{done.stderr}"
    assert json.loads(lines[0])["depth"] == N, f"stats must read every event: {lines[0]}"
    assert lines[2] == "rc=1" and "EROFS" in done.stderr, f"requeue-dead: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr and "corrupt" not in done.stderr, f"one clear line: {done.stderr}"
    assert snapshot(state) == before, f"nothing may change: {sorted(snapshot(state))}"


def test_read_only_commands_leave_a_corrupt_spool_alone(tmp_path: Path) -> None:
    # given a spool whose header is garbage
    state = tmp_path / "state"
    make_spool(state / "spool.db")
    data = bytearray((state / "spool.db").read_bytes())
    data[:100] = b"\xa5" * 100
    (state / "spool.db").write_bytes(bytes(data))
    # when the read-only commands run
    runs = [edge(["queue", action], state) for action in ("stats", "peek", "dead")]
    # then each says it looks corrupt and leaves it where it is, as it is
    for run in runs:
        assert run.returncode == 1 and "looks corrupt" in run.stderr, f"rc {run.returncode}: {run.stderr}"
    assert not list(state.glob("*.corrupt-*")), f"a read-only command moved the file: {os.listdir(state)}"
    assert (state / "spool.db").read_bytes() == bytes(data), "a read-only command changed the file"
    # and a writer moves it aside and salvages it
    with Spool.open(state / "spool.db") as spool:
        assert spool.recovery is not None, "the writer must find the corruption"
    assert len(list(state.glob("spool.db.corrupt-*"))) == 1, f"moved aside: {os.listdir(state)}"


def test_read_only_commands_write_nothing(tmp_path: Path) -> None:
    # given a healthy spool, closed
    state = tmp_path / "state"
    make_spool(state / "spool.db")
    before = snapshot(state)
    # when every read-only command runs
    runs = [edge(["queue", *args], state) for args in (["stats"], ["peek", "5"], ["dead"])]
    # then they succeed and the spool's files are byte for byte what they were
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert runs[1].stdout.count("det-") == 5, f"peek 5: {runs[1].stdout}"
    after = snapshot(state)
    assert after == before, f"a read-only command changed or created files: {sorted(before)} → {sorted(after)}"


def test_counters_are_rechecked_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # given a spool whose counters drifted from its rows (the fault: `depth 142` with 0 rows in pending)
    path = tmp_path / "spool.db"
    make_spool(path, 3)
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM pending WHERE seq = 3")
        raw.execute("UPDATE meta SET value = 142 WHERE name IN ('depth', 'bytes')")
        raw.execute("DELETE FROM meta WHERE name = 'lost_total'")  # as in a file of an older version
    # when it is opened
    with caplog.at_level("WARNING"), Spool.open(path) as spool:
        stats = spool.stats()
        ids = [r.detection_id for r in spool.peek(10)]
    # then the counters are the table's, and the correction was logged
    with sqlite3.connect(path) as raw:
        size = raw.execute("SELECT sum(size) FROM pending").fetchone()[0]
    assert (stats.depth, stats.bytes, stats.lost_total) == (2, size, 0), f"counters vs rows ({size} bytes): {stats}"
    assert ids == ["det-0000", "det-0001"], f"pending rows: {ids}"
    assert any("depth 142 → 2" in r.getMessage() for r in caplog.records), "the correction must be logged"


def test_salvage_interrupted_by_a_crash_runs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a corrupt spool whose salvage dies half-way (after the file was moved aside)
    path = tmp_path / "spool.db"
    make_spool(path, 50)
    data = bytearray(path.read_bytes())
    data[:100] = b"\x5a" * 100
    path.write_bytes(bytes(data))

    import edge.spool.opening as opening_module  # here: the module is new; the other tests run on older code too

    real = opening_module.salvage

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed during salvage")

    monkeypatch.setattr(opening_module, "salvage", crash)
    with pytest.raises(KeyboardInterrupt):
        Spool.open(path)
    assert len(list(tmp_path.glob("spool.db.corrupt-*"))) == 1, f"moved aside first: {os.listdir(tmp_path)}"
    # when the next process opens the spool
    monkeypatch.setattr(opening_module, "salvage", real)
    with Spool.open(path) as spool:
        report = spool.recovery
    # then the salvage of the moved file runs again instead of starting from an empty spool
    assert report is not None and report.corrupt_path.name.startswith("spool.db.corrupt-"), f"report {report}"
    assert not list(tmp_path.glob("*.salvage-*")), f"marker and temp file must be gone: {os.listdir(tmp_path)}"
    with Spool.open(path) as again:
        assert again.recovery is None, "one salvage only"
        assert again.stats().depth == report.salvaged, f"salvaged {report.salvaged}, spool {again.stats()}"


def test_second_open_in_one_process_is_refused_and_lock_freed_on_close(tmp_path: Path) -> None:
    # given an open spool
    path = tmp_path / "spool.db"
    first = Spool.open(path)
    try:
        # when it is opened a second time for writing
        with pytest.raises(SpoolError, match=f"in use by pid {os.getpid()}"):
            Spool.open(path, owner_name="state dir X")
        first.append([SpoolItem("vehicle-001", b"{}", "det-a", 1.0)])
        # then a read-only look still works beside it
        stats = edge(["queue", "stats", "--json"], tmp_path)
        assert stats.returncode == 0 and json.loads(stats.stdout)["depth"] == 1, f"stats beside the owner: {stats}"
    finally:
        first.close()
    # and once closed, it opens again
    with Spool.open(path) as spool:
        assert spool.stats().depth == 1, f"reopen: {spool.stats()}"
