"""One owner per spool: an advisory flock on `<spool>.lock` that names the pid and command line holding it."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from edge.spool.records import SpoolBusy

_HOLDER_WAIT_S = 0.5  # the holder writes its pid right after taking the lock: give it that long to appear
_MAX_COMMAND = 300


def lock_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + ".lock")


def _command_line() -> str:
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = program.parent.name if program.name == "__main__.py" else program.name  # `python -m edge`: "edge"
    argv = [name, *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= _MAX_COMMAND else text[: _MAX_COMMAND - 1] + "…"


class OwnerLock:
    """Held from open to close of a writable spool. The kernel drops a flock when its last descriptor closes, so
    an owner killed with SIGKILL leaves it free; O_CLOEXEC keeps child processes (ffmpeg, a local broker) from
    inheriting it. The file itself is never deleted: a process may be about to lock the same inode."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, what: str) -> OwnerLock:
        """Take the lock or raise SpoolBusy ("<what> is in use by pid N (command)"); OSError when the lock file
        cannot be opened at all (the caller names the errno)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # a lock file left by another user (root after an uninstall): lockable read-only
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SpoolBusy(f"{what} is in use by {holder}") from None
        except OSError:
            os.close(fd)
            raise
        try:  # for the message another process shows; not needed for the lock itself
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\n".encode(), 0)
        except OSError:
            pass
        return cls(path, fd)

    def release(self) -> None:
        """Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


def _holder(fd: int) -> str:
    """"pid N (command)" from the lock file, waiting briefly for a holder that has just taken it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        except OSError:
            text = ""
        pid, _, command = text.partition("\n")
        if pid.strip().isdigit():
            return f"pid {pid.strip()} ({command.strip() or 'command unknown'})"
        if time.monotonic() >= deadline:
            return "another process (its pid is not recorded)"
        time.sleep(0.02)  # polled up to the deadline above
