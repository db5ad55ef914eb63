"""Helpers for tests against a real gpsd: gpsfake on a free loopback port, the .chk references, polling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support import wait_until

DATA = Path(os.environ.get("EDGE_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
NMEA = DATA / "nmea"
GPS_ROLLOVER_S = 1024 * 7 * 86400  # gpsd 3.22 moves pre-2019 dates this far ahead
HAVE_GPSFAKE = shutil.which("gpsfake") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Gpsfake:
    """`gpsfake -1 -n` replaying one log to a real gpsd on `port`, in its own process group.

    Without --timeout gpsfake never exits and ignores SIGTERM, so it always gets one, and `stop()`
    kills the whole group (gpsfake and its gpsd) by the group id this object started."""

    def __init__(self, log: Path, port: int, *, cycle: float = 0.02, timeout_s: int = 1):
        self.log, self.port = log, port
        self._out = tempfile.TemporaryFile()
        self._text: str | None = None
        self.proc = subprocess.Popen(
            ["gpsfake", "-1", "-n", "-c", str(cycle), "--timeout", str(timeout_s), "-P", str(port), str(log)],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def output(self) -> str:
        """What gpsfake and gpsd printed (kept after stop)."""
        if self._text is not None:
            return self._text
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        if self._text is None:
            self._text = self.output()
            self._out.close()
        wait_until(lambda: not port_open(self.port), f"gpsd on port {self.port} to go away", 5)

    def __enter__(self) -> Gpsfake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chk_fixes(name: str) -> list[dict]:
    """TPV reports with a position from gpsd's expected output for `name`.log."""
    rows = [json.loads(line) for line in (NMEA / f"{name}.log.chk").read_text().splitlines() if line.startswith('{"class":"TPV"')]
    return [r for r in rows if r.get("mode", 0) >= 2 and "lat" in r and "lon" in r]


def same_time_modulo_rollover(a: float, b: float, tol: float = 0.01) -> bool:
    """Same instant, or same time of day with the date moved ~1024 weeks (gpsd 3.22 lands within a day or two)."""
    d = abs(a - b)
    tod = d % 86400
    same_tod = min(tod, 86400 - tod) < tol
    return d < tol or (same_tod and abs(d - GPS_ROLLOVER_S) <= 2 * 86400)
