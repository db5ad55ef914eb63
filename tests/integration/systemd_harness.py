"""A real systemd as PID 1 in private namespaces, for integration tests of units (see ../shared/README.md).

    with SystemdNamespace(workdir) as sd:
        sd.install_unit("x.service", text)
        sd.sh("systemctl start x.service")
        sd.journal("x.service")        # journalctl -u x.service -o json, parsed

Safety (the reason this file exists): booting systemd runs systemd-tmpfiles, which empties /tmp and
/var/tmp, so both get a fresh tmpfs inside the namespace before systemd starts, exactly as the shared
README's recipe does (`&&`: no tmpfs, no systemd). Beyond the recipe, and only making the namespace
more private:
- /var/log/journal gets a tmpfs too, so the namespace's journald neither writes the host's journal
  directory nor shares one journal file with another namespace booted at the same time;
- by default systemd boots `basic.target` (`--unit=basic.target`) instead of the default target: on the
  development machines the default target starts PostgreSQL on the host's data directory and a getty on
  the VM's serial console. `target=None` gives the recipe's exact command line.
Unit files go to the namespace's own /run/systemd/system (a tmpfs of that namespace), not to the host's
/etc. On exit PID 1 gets SIGKILL, which ends every process in the namespace, also when a test failed;
if the test process itself is killed, `unshare --kill-child` and a parent-death signal do the same.

The namespace shares the host's files except /tmp, /var/tmp, /var/log/journal and /run, and has only a
loopback network. Keep test files under the repository (`work_dir()`), never under /tmp.

`private_dirs=("/etc", "/opt", ...)` gives those directories a copy-on-write layer inside the namespace (an
overlay whose upper layer is a tmpfs of the namespace): what a test does there as root (useradd, an install
under /opt, a unit in /etc/systemd/system) is seen inside and vanishes with the namespace, while the host's
directories stay as they were.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from tests.support import WaitTimeout, wait_until

SYSTEMD = "/lib/systemd/systemd"
RECIPE_MOUNTS = "mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp"
JOURNAL_MOUNT = "{ [ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal; }"
UNSHARE = ["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc", "--mount-proc", "--propagation", "private"]
PR_SET_PDEATHSIG = 1
UNIT_DIR = "/run/systemd/system"  # inside the namespace

T = TypeVar("T")


class SystemdUnavailable(RuntimeError):
    """systemd cannot be booted here (not root, a tool missing, namespaces refused): tests skip with this reason."""


def unavailable_reason() -> str | None:
    """Why a namespaced systemd cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (unshare --pid --mount, and systemd as PID 1)"
    for tool in ("setsid", "unshare", "nsenter", "pgrep", "systemctl", "journalctl"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} not found"
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare refused: {probe.stderr.strip() or probe.returncode}"
    return None


def work_dir(base: Path | None = None) -> Path:
    """A fresh directory for files a unit must see: under tests/integration/.work, never under /tmp."""
    path = (base or Path(__file__).resolve().parent / ".work") / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    return path


def poll(fn: Callable[[], T], timeout: float, interval: float = 0.2, message: str = "condition") -> T:
    """tests.support.wait_until, raising TimeoutError (what the systemd tests expect) when `fn` stays falsy."""
    try:
        return wait_until(fn, message, timeout, interval)
    except WaitTimeout as exc:
        raise TimeoutError(str(exc)) from None


class SystemdNamespace:
    """systemd as PID 1 in new pid/mount/net/uts/ipc namespaces; a context manager."""

    def __init__(self, workdir: Path, *, target: str | None = "basic.target", boot_timeout: float = 120.0,
                 private_journal: bool = True, private_dirs: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.private_dirs = private_dirs
        self.target = target
        self.boot_timeout = boot_timeout
        self.private_journal = private_journal
        self.pid: int | None = None  # PID 1 of the namespace, as the host sees it
        self.boot_log = self.workdir / "systemd-boot.log"
        self._proc: subprocess.Popen | None = None
        self._units: list[Path] = []

    # -- life cycle ------------------------------------------------------------------------------------

    def boot_command(self) -> list[str]:
        exec_line = f"exec {SYSTEMD} --system --log-level=warning"
        if self.target:
            exec_line += f" --unit={shlex.quote(self.target)}"
        mounts = RECIPE_MOUNTS + (f" && {JOURNAL_MOUNT}" if self.private_journal else "")
        if self.private_dirs:
            mounts += " && " + self._overlay_mounts()
        # --kill-child: unshare takes the namespace down with it when it dies; see _die_with_parent
        return ["setsid", *UNSHARE, "--kill-child", "bash", "-c", f"{mounts} && {exec_line}"]

    def _overlay_mounts(self) -> str:
        """Shell commands (run inside the new mount namespace, before systemd) that put a tmpfs-backed overlay on
        each private dir. The layers live on a tmpfs mounted over a directory of the work dir, not under /tmp:
        systemd-tmpfiles empties /tmp at boot, which would pull the upper layers from under the overlays."""
        layers = shlex.quote(str(self.workdir / "overlay-layers"))
        steps = [f"mkdir -p {layers}", f"mount -t tmpfs tmpfs {layers}"]
        for i, path in enumerate(self.private_dirs):
            upper, work, target = f"{layers}/{i}/upper", f"{layers}/{i}/work", shlex.quote(path)
            steps += [f"mkdir -p {upper} {work} {target}",
                      f"mount -t overlay overlay -o lowerdir={target},upperdir={upper},workdir={work} {target}"]
        return " && ".join(steps)

    def __enter__(self) -> SystemdNamespace:
        reason = unavailable_reason()
        if reason:
            raise SystemdUnavailable(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _boot(self) -> None:
        with open(self.boot_log, "wb") as log:
            self._proc = subprocess.Popen(self.boot_command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.pid = poll(self._find_pid1, 30, 0.05, "systemd as PID 1 of the new namespace")
        if not self._tmp_is_private():  # cannot happen with `&&`; if it ever does, stop before tmpfiles runs
            os.kill(self.pid, signal.SIGKILL)
            raise RuntimeError("the namespace's /tmp is not a tmpfs: killed its systemd at once")
        shared = [d for d in self.private_dirs if self._mount_types().get(d) != "overlay"]
        if shared:  # a test that writes there as root would change the host: stop before it can
            os.kill(self.pid, signal.SIGKILL)
            raise RuntimeError(f"no private overlay on {shared} in the namespace: killed its systemd at once")
        state = poll(self._system_state, self.boot_timeout, 0.5, "systemctl is-system-running --wait")
        if state not in ("running", "degraded"):
            raise RuntimeError(f"systemd in the namespace is {state!r}: {self.sh('systemctl --failed').stdout}")

    def _find_pid1(self) -> int | None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"unshare exited with {self._proc.returncode}: {self.boot_log.read_text()[-2000:]}")
        todo = [self._proc.pid] if self._proc else []
        while todo:  # setsid may or may not fork: walk the children of the process Popen started
            out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout
            for child in map(int, out.split()):
                if _ns_pid(child) == 1:
                    return child if _comm(child) == "systemd" else None  # bash until it execs systemd
                todo.append(child)
        return None

    def _mount_types(self) -> dict[str, str]:
        """Mount point → file system type in the namespace (the last mount on a path wins)."""
        try:
            mounts = Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines()
        except OSError:
            return {}
        seen = {}
        for line in mounts:  # "... mountpoint options - fstype source ..."
            fields = line.split()
            seen[fields[4]] = fields[fields.index("-") + 1]
        return seen

    def _tmp_is_private(self) -> bool:
        seen = self._mount_types()
        return seen.get("/tmp") == "tmpfs" and seen.get("/var/tmp") == "tmpfs"

    def _system_state(self) -> str:
        try:
            out = self.sh("systemctl is-system-running --wait", timeout=self.boot_timeout).stdout.strip()
        except subprocess.TimeoutExpired:
            return ""
        return out if out in ("running", "degraded", "maintenance", "stopping") else ""

    def close(self) -> None:
        """Removes the unit files written, SIGKILLs the namespace's PID 1 (and with it everything inside)."""
        for path in self._units:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        self._units.clear()
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None

    # -- commands inside ---------------------------------------------------------------------------------

    def _require(self) -> int:
        if self.pid is None:
            raise RuntimeError("the namespace is not running")
        return self.pid

    def run(self, argv: list[str], *, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`argv` inside all the namespace's namespaces (nsenter -a), as root."""
        return subprocess.run(["nsenter", "-t", str(self._require()), "-a", *argv], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def sh(self, cmd: str, *, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], timeout=timeout, check=check)

    def host_path(self, path: str) -> Path:
        """A path of the namespace's own mounts (/run, /tmp) as the host reaches it."""
        return Path(f"/proc/{self._require()}/root") / path.lstrip("/")

    # -- units ---------------------------------------------------------------------------------------------

    def install_unit(self, name: str, text: str) -> None:
        """Writes the unit to the namespace's /run/systemd/system and reloads systemd."""
        self._write(self.host_path(f"{UNIT_DIR}/{name}"), text)

    def install_dropin(self, unit: str, text: str, name: str = "50-test.conf") -> None:
        """A drop-in for `unit` (e.g. to replace ExecStart= of the real unit file)."""
        self._write(self.host_path(f"{UNIT_DIR}/{unit}.d/{name}"), text)

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._units.append(path)
        self.sh("systemctl daemon-reload", check=True)

    def show(self, unit: str, prop: str) -> str:
        """One property: `systemctl show -P prop unit` (ActiveState, SubState, NRestarts, MainPID, Result, ...)."""
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def state(self, unit: str) -> tuple[str, str]:
        return self.show(unit, "ActiveState"), self.show(unit, "SubState")

    def wait_state(self, unit: str, active: str, sub: str | None = None, timeout: float = 60) -> None:
        poll(lambda: self.state(unit)[0] == active and (sub is None or self.state(unit)[1] == sub), timeout, 0.1,
             f"{unit} in state {active}/{sub or '*'} (is {'/'.join(self.state(unit))})")

    def journal(self, unit: str) -> list[dict[str, str]]:
        """Every journal record of the unit, `journalctl -u UNIT -o json`, oldest first."""
        out = self.run(["journalctl", "-u", unit, "-o", "json", "--no-pager", "--all"]).stdout
        records = []
        for line in out.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def wait_journal(self, unit: str, predicate: Callable[[dict[str, str]], bool], timeout: float = 30,
                     count: int = 1) -> list[dict[str, str]]:
        """Polls the unit's journal until `count` records match `predicate`; returns the matches."""
        def matches() -> list[dict[str, str]]:
            found = [r for r in self.journal(unit) if predicate(r)]
            return found if len(found) >= count else []

        return poll(matches, timeout, 0.25, f"{count} journal record(s) of {unit} matching")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it dies (a killed pytest, a CI timeout),
    so that with `unshare --kill-child` no systemd is left running. Start the harness from a long-lived thread."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _ns_pid(pid: int) -> int | None:
    """The pid in its innermost pid namespace (NSpid's last field)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def namespace_fixture(**options: object):  # noqa: ANN201 - a pytest fixture function
    """A module-scoped `sd` fixture: one booted namespace per test module (`options` go to SystemdNamespace),
    torn down even on failure, and a check that the host's /tmp survived (the recipe's one danger)."""
    import tempfile

    import pytest

    @pytest.fixture(scope="module")
    def sd() -> Iterator[SystemdNamespace]:
        marker = Path(tempfile.mkstemp(prefix="edge-systemd-host-marker-", dir="/tmp")[1])
        workdir = work_dir()
        try:
            with SystemdNamespace(workdir, **options) as namespace:  # type: ignore[arg-type]
                yield namespace
        except SystemdUnavailable as exc:
            pytest.skip(f"no namespaced systemd: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if workdir.parent.exists() and not any(workdir.parent.iterdir()):
                workdir.parent.rmdir()
            intact = marker.exists()
            marker.unlink(missing_ok=True)
            assert intact, "the host's /tmp must survive booting systemd in the namespace"

    return sd


def adapt_shipped_unit(unit_file: Path, *, exec_start: str, service_lines: list[str], drop: tuple[str, ...] = (),
                       values: dict[str, str] | None = None) -> str:
    """The shipped unit with what a test machine lacks replaced: no gpsd/modprobe dependencies or host-wide
    directories, user nobody, `exec_start` (the dev venv's interpreter lives under /root, which ProtectHome
    hides), `service_lines` added to [Service], `values` replacing those keys, `drop` keys removed."""
    values = values or {}
    lines = []
    for line in unit_file.read_text().splitlines():
        key = line.split("=", 1)[0]
        if key in ("Wants", "After", "StateDirectory", "ConfigurationDirectory", "Group", *drop):
            continue
        if key == "ExecStart":
            line = f"ExecStart={exec_start}"
        elif key == "User":
            line = "User=nobody\nGroup=nogroup"
        elif key in values:
            line = f"{key}={values[key]}"
        elif line == "[Service]":
            line = "\n".join([line, *service_lines])
        lines.append(line)
    return "\n".join(lines) + "\n"
