"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, EXTEND_TIMEOUT_USEC, STOPPING); journald logging is edge.logs.

Everything here is a no-op or falls back to stderr when the process does not run under systemd, and
nothing reads the environment at import time: `Notifier()`, `watchdog_interval()` and `under_systemd()` read it
when called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
SYSLOG_IDENTIFIER = "edge-detector"
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

Sender = Callable[[str], bool]


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """True when started by systemd: a notify socket, a journal stream on stdout/stderr, or an invocation id."""
    e = _env(env)
    return any(e.get(name) for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID"))


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """WatchdogSec= in seconds when the watchdog is meant for this process (WATCHDOG_PID unset or ours), else None."""
    e = _env(env)
    try:
        usec = int(e.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    wd_pid = e.get("WATCHDOG_PID", "")
    if wd_pid and wd_pid != str(os.getpid() if pid is None else pid):
        return None
    return usec / 1_000_000


def _socket_notify(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (path or @abstract)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def _default_sender() -> Sender:
    try:
        from systemd import daemon
    except ImportError:  # systemd-python missing (not Linux, or not built): same protocol by hand
        return _socket_notify
    return lambda state: bool(daemon.notify(state))


class Notifier:
    """sd_notify messages for a Type=notify service; every method is a no-op (returns False) off systemd.

    Call from the main process (the unit has NotifyAccess=main); threads of that process are fine.
    """

    def __init__(self, send: Sender | None = None, env: Mapping[str, str] | None = None):
        self.enabled = send is not None or bool(_env(env).get("NOTIFY_SOCKET"))
        self._send = send if send is not None else _default_sender()

    def notify(self, *assignments: str) -> bool:
        if not self.enabled:
            return False
        return self._send("\n".join(assignments))

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Push the running start/stop timeout to `seconds` from now (only ever extends, never shortens)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")


    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    @contextlib.contextmanager
    def extending_timeout(self, step: float = 60.0, status: str | None = None) -> Iterator[None]:
        """Keep extending the timeout by `step` every step/2 s while a long start step runs (TensorRT engine build)."""
        if status:
            self.status(status)
        done = threading.Event()

        def keep_extending() -> None:
            while True:
                self.extend_timeout(step)
                if done.wait(step / 2):
                    return

        thread = threading.Thread(target=keep_extending, name="edge-extend-timeout", daemon=True)
        if self.enabled:
            thread.start()
        try:
            yield
        finally:
            done.set()
            if thread.is_alive():
                thread.join(1.0)


def _status(text: str) -> str:
    return "STATUS=" + " ".join(str(text).split())  # one line: a newline would start a new assignment
