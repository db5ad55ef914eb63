"""A real live stream on loopback for tests: Debian's ffmpeg serving a video as MPEG-TS over HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import wait_until


def free_port() -> int:
    """A TCP port nobody listens on right now (bound and released: the usual small race is accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def is_serving(port: int) -> bool:
    """True if 127.0.0.1:`port` listens, or has already accepted a client; read from /proc without connecting
    (a connection would be the one client `ffmpeg -listen 1` serves).

    Both states count: `-listen 1` closes its listening socket as soon as it accepts, so a client that is
    already retrying (a source reconnecting after an outage) can take the connection between two polls, and
    the LISTEN state is then never seen although ffmpeg is serving."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl, local_address (hex ip:port), rem_address, st (0A LISTEN, 01 ESTABLISHED)
            if len(fields) > 3 and fields[1].endswith(f":{port:04X}") and fields[3] in ("0A", "01"):
                return True
    return False


class FfmpegStreamServer:
    """`ffmpeg -re -stream_loop -1 -i VIDEO -c copy -f mpegts -listen 1 http://127.0.0.1:PORT/live.ts`.

    Real-time pace, looped, no re-encoding (cheap on a shared machine). `-listen 1` serves a single
    client and then exits, so every connection needs a fresh `start()`.
    """

    def __init__(self, video: Path, port: int, path: str = "live.ts"):
        self.video, self.port = video, port
        self.url = f"http://127.0.0.1:{port}/{path}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        exe = ffmpeg_path()
        assert exe is not None, "ffmpeg not installed"
        self.proc = subprocess.Popen(
            [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", str(self.video), "-c", "copy", "-f", "mpegts", "-listen", "1", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        proc = self.proc
        wait_until(lambda: is_serving(self.port) or proc.poll() is not None, f"ffmpeg to listen on {self.port}",
                   timeout)
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"ffmpeg exited with {proc.returncode} before listening: {err.strip()}")

    def kill(self) -> None:
        """Stop serving at once (SIGKILL: the stream just stops, as when a camera loses power)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
            if self.proc.stderr:
                self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> FfmpegStreamServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
