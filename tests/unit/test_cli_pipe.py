"""`edge … | head`: a reader that goes away ends a command quietly with exit 141 (128 + SIGPIPE), no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ENV_OVERRIDES
from edge.exitcodes import Exit
from edge.spool import Spool, SpoolItem
from edge.status import StatusWriter

SNAPSHOT = {
    "state": "running", "fps": 4.96, "frames": 1200, "frames_dropped": 3, "detections": 17, "spool_depth": 42,
    "spool_bytes": 90_000, "spool_oldest_age_s": 12.4, "dead_letters": 1, "broker": "connected", "acked": 15,
    "gps": {"status": "ok", "lat": 52.370216, "lon": 4.895168, "source": "gpsd"},
}
PEEKED = 20_000  # spool records listed by `queue peek`: ~2 MB, far more than a pipe holds (64 KiB)
NOISE = ("Traceback", "BrokenPipeError", "Exception ignored")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of the child: an empty config file, no overrides from the machine running the tests."""
    config = tmp_path / "edge.toml"
    config.write_text("")
    # PYTHONUNBUFFERED too: as in a shell, stdout is block-buffered into a pipe (unbuffered, argparse's --help
    # would swallow the write error itself and exit 0)
    drop = set(ENV_OVERRIDES) | {"CREDENTIALS_DIRECTORY", "EDGE_CONFIG", "PYTHONUNBUFFERED"}
    out = {k: v for k, v in os.environ.items() if k not in drop}
    return out | {"EDGE_CONFIG": str(config)}


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    runtime = tmp_path / "run"
    assert StatusWriter(runtime).write(SNAPSHOT) is not None, "status.json should be written"
    return runtime


def edge_into_gone_reader(args: list[str], env: dict[str, str], tmp_path: Path, *,
                          stream: str = "stdout") -> tuple[int, str]:
    """Runs `python -m edge ARGS` with `stream` ('stdout' or 'stderr') going into a pipe whose reader has already
    gone (like `| true`); the other stream goes to a file. Returns the exit status and what reached the file."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write fails, however short the output
    other = tmp_path / f"{stream}-other.txt"
    with open(other, "wb") as fh:
        pipes = {"stdout": write_end, "stderr": fh} if stream == "stdout" else {"stdout": fh, "stderr": write_end}
        try:
            proc = subprocess.run([sys.executable, "-m", "edge", *args], env=env, timeout=60, **pipes)
        finally:
            os.close(write_end)
    return proc.returncode, other.read_text(errors="replace")


def make_spool(state_dir: Path, n: int) -> None:
    spool = Spool.open(state_dir / "spool.db")
    try:
        body = {"class_name": "stop sign", "confidence": 0.91, "frame_number": 0, "pad": "x" * 40}
        spool.append([
            SpoolItem("vehicle-001", json.dumps(body | {"frame_number": i}).encode(), f"det-{i:08d}", 1.7e9)
            for i in range(n)
        ])
    finally:
        spool.close()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status", "--runtime-dir", "{runtime}"], id="status"),
        pytest.param(["status", "--json", "--runtime-dir", "{runtime}"], id="status-json"),
        pytest.param(["--help"], id="help"),
        pytest.param(["config", "check", "--show", "{config}"], id="config-check-show"),
    ],
)
def test_stdout_reader_gone(args, env, runtime_dir, tmp_path):
    # given a pipe whose reader is gone, when a command writes its output into it
    argv = [a.format(runtime=runtime_dir, config=env["EDGE_CONFIG"]) for a in args]
    rc, err = edge_into_gone_reader(argv, env, tmp_path)
    # then it ends with the documented status, and says nothing about the pipe
    assert rc == Exit.BROKEN_PIPE, f"`edge {' '.join(args)}` into a closed pipe should exit {Exit.BROKEN_PIPE}, got {rc}: {err}"
    assert not any(word in err for word in NOISE), f"no traceback expected on stderr, got: {err}"


def test_head_takes_one_line_of_a_long_listing(env, tmp_path):
    # given a spool with far more pending events than a pipe buffer holds
    state = tmp_path / "state"
    state.mkdir()
    make_spool(state, PEEKED)
    cmd = [sys.executable, "-m", "edge", "queue", "peek", str(PEEKED), "--state-dir", str(state)]
    full = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert full.returncode == 0 and len(full.stdout) > 16 * 65536, (
        f"the listing should succeed and be much longer than a 64 KiB pipe: rc {full.returncode}, "
        f"{len(full.stdout)} bytes, {full.stderr[-500:]!r}")
    # when it is read through `| head -1`
    shell = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -1', "bash", *cmd],
        env=env, capture_output=True, text=True, timeout=120,
    )
    # then head got the first event, and edge stopped quietly with 141 as pipefail reports it
    assert shell.stdout.startswith("#1 det-00000000 "), f"head should print the oldest event, got {shell.stdout!r}"
    assert shell.returncode == Exit.BROKEN_PIPE, (
        f"the pipeline should report {Exit.BROKEN_PIPE} for edge, got {shell.returncode}: {shell.stderr[-2000:]}")
    assert not any(word in shell.stderr for word in NOISE), f"no traceback expected, got: {shell.stderr[-2000:]}"


def test_stderr_reader_gone(env, tmp_path):
    # given a configuration error, reported on stderr, and nobody reading stderr any more
    bad = tmp_path / "bad.toml"
    bad.write_text('[spool]\nwhen_full = "explode"\n')
    rc, out = edge_into_gone_reader(["config", "check", str(bad)], env, tmp_path, stream="stderr")
    # then the command still ends with the documented status (not 120 from a failed final flush, not 1)
    assert rc == Exit.BROKEN_PIPE, f"a closed stderr should end the command with {Exit.BROKEN_PIPE}, got {rc}; stdout: {out}"
    assert out == "", f"nothing expected on stdout, got {out!r}"
