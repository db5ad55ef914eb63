"""Against a real systemd (PID 1 in private namespaces): Type=notify READY, journald fields, the
progress watchdog, stop, a config error, and the shipped hardened unit running a Python notify service.

The service is tests/integration/sd_test_service.py (edge.service + edge.watchdog); the lead's tests of
the real `edge run` reuse `SystemdNamespace` the same way.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from systemd_harness import (
    SystemdNamespace,
    adapt_shipped_unit,
    namespace_fixture,
    poll,
)

from edge.status import format_status, read_status

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "sd_test_service.py"
UNIT_FILE = REPO / "systemd" / "edge-detector.service"
WARMUP_S = 1.5
WATCHDOG_S = 3


sd = namespace_fixture()


@dataclass
class Service:
    name: str
    control: Path

    def hang(self) -> None:
        self.control.write_text("hang")

    def unhang(self) -> None:
        self.control.unlink(missing_ok=True)


def _test_unit(control: Path, *, mode: str = "", restart: str = "on-failure") -> str:
    return f"""[Unit]
Description=edge systemd test service
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={sys.executable} {SCRIPT}
WorkingDirectory={REPO}
Environment=PYTHONPATH={REPO} EDGE_TEST_CONTROL={control} EDGE_TEST_WARMUP={WARMUP_S} EDGE_TEST_MODE={mode}
WatchdogSec={WATCHDOG_S}
TimeoutStartSec=30
TimeoutStopSec=10
Restart={restart}
RestartSec=1
RestartPreventExitStatus=2
"""


@pytest.fixture
def make_service(sd: SystemdNamespace) -> Iterator:
    started: list[str] = []

    def make(purpose: str, **kw: str) -> Service:
        name = f"edge-sdtest-{purpose}-{uuid.uuid4().hex[:8]}.service"
        control = sd.workdir / f"{name}.control"
        sd.install_unit(name, _test_unit(control, **kw))
        started.append(name)
        return Service(name, control)

    yield make
    for name in started:
        sd.run(["systemctl", "stop", name], timeout=30)


def _messages(sd: SystemdNamespace, unit: str) -> list[str]:
    return [r.get("MESSAGE", "") for r in sd.journal(unit)]


def _restart_after_watchdog(sd: SystemdNamespace, svc: Service, old_pid: str) -> None:
    restarts = poll(lambda: int(sd.show(svc.name, "NRestarts") or 0), WATCHDOG_S + 30, 0.2,
                    "NRestarts ≥ 1 after the watchdog fired")
    svc.unhang()
    assert restarts >= 1, "systemd restarted the service"
    sd.wait_state(svc.name, "active", "running", timeout=30)
    assert sd.show(svc.name, "MainPID") != old_pid, "a new main process runs after the restart"
    msgs = _messages(sd, svc.name)
    assert any("Watchdog timeout" in m for m in msgs), f"systemd logged the watchdog timeout: {msgs[-15:]}"
    assert any("status=6/ABRT" in m for m in msgs), f"the watchdog killed it with SIGABRT: {msgs[-15:]}"


def test_active_only_after_ready(sd, make_service):
    # given a notify service that warms up before READY=1
    svc = make_service("ready")
    # when it is started without waiting
    sd.run(["systemctl", "start", "--no-block", svc.name], check=True)
    # then it is "activating" during the warm-up and "active (running)" only after READY
    states = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states.append(sd.state(svc.name))
        if states[-1] == ("active", "running"):
            break
        time.sleep(0.05)
    assert ("activating", "start") in states, f"activating while warming up: {sorted(set(states))}"
    assert states[-1] == ("active", "running"), f"active after READY: {states[-5:]}"
    started = int(sd.show(svc.name, "ExecMainStartTimestampMonotonic"))
    active = int(sd.show(svc.name, "ActiveEnterTimestampMonotonic"))
    assert active - started >= WARMUP_S * 0.9e6, f"active {(active - started) / 1e6:.2f} s after exec, not before READY"
    status = poll(lambda: re.match(r"frames \d+", sd.show(svc.name, "StatusText")), 10, 0.2, "STATUS= frames N")
    assert status, "STATUS= reaches systemctl status"


def test_journal_has_structured_fields_and_priorities(sd, make_service):
    svc = make_service("journal")
    sd.run(["systemctl", "start", svc.name], check=True, timeout=60)
    records = sd.wait_journal(svc.name, lambda r: "repeated" in r.get("MESSAGE", ""), timeout=20)
    by_message = {r.get("MESSAGE"): r for r in sd.journal(svc.name)}

    detected = by_message.get("detected stop sign")
    assert detected, f"the detection record is in the journal: {list(by_message)[:20]}"
    expected = {"EDGE_STAGE": "detect", "VEHICLE_ID": "veh-test-7", "SESSION_ID": "20260101-abc123",
                "DETECTION_ID": "det-0001", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "edge-detector",
                "CODE_FUNC": "main", "LOGGER": "edge.detect.fake"}
    assert {k: detected.get(k) for k in expected} == expected, f"structured fields: {detected}"
    assert detected.get("CODE_FILE", "").endswith("sd_test_service.py") and detected.get("CODE_LINE"), detected
    assert detected.get("_SYSTEMD_UNIT") == svc.name, "attributed to the unit"

    warning, error = by_message.get("camera slow"), by_message.get("broker unreachable: 127.0.0.1:1")
    assert warning and warning["PRIORITY"] == "4" and warning["EDGE_STAGE"] == "capture", f"warning: {warning}"
    assert error and error["PRIORITY"] == "3" and error["EDGE_STAGE"] == "sdtest", f"error: {error}"
    assert "DETECTION_ID" not in error, "DETECTION_ID only where the record carries one"

    failed = [r["MESSAGE"] for r in sd.journal(svc.name)
              if r.get("MESSAGE", "").startswith("delivery failed") and "repeated" not in r["MESSAGE"]]
    assert len(failed) == 3, f"burst of 3 identical errors let through, the rest suppressed: {failed}"
    summary = records[0]
    assert re.search(r"delivery failed: attempt 19 … repeated 17 times", summary["MESSAGE"]), summary["MESSAGE"]
    assert summary["PRIORITY"] == "3" and summary["EDGE_STAGE"] == "sinks", f"summary keeps level and stage: {summary}"


def test_hung_pipeline_stops_pings_and_systemd_restarts_it(sd, make_service):
    # given a running service whose frame loop stops (the watchdog thread itself keeps running)
    svc = make_service("hang")
    sd.run(["systemctl", "start", svc.name], check=True, timeout=60)
    old_pid = sd.show(svc.name, "MainPID")
    svc.hang()
    # then the watchdog withholds WATCHDOG=1 and systemd kills and restarts the service
    _restart_after_watchdog(sd, svc, old_pid)
    assert any("withholding WATCHDOG=1" in m for m in _messages(sd, svc.name)), "the service said why"


def test_sigstop_main_process_watchdog_restarts(sd, make_service):
    svc = make_service("sigstop")
    sd.run(["systemctl", "start", svc.name], check=True, timeout=60)
    old_pid = sd.show(svc.name, "MainPID")
    sd.run(["kill", "-STOP", old_pid], check=True)
    _restart_after_watchdog(sd, svc, old_pid)


def test_stop_exits_zero_within_timeout(sd, make_service):
    svc = make_service("stop")
    sd.run(["systemctl", "start", svc.name], check=True, timeout=60)
    t0 = time.monotonic()
    sd.run(["systemctl", "stop", svc.name], check=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"stopped in {elapsed:.1f} s, within TimeoutStopSec=10"
    assert sd.state(svc.name)[0] == "inactive", f"inactive, not failed: {sd.state(svc.name)}"
    assert sd.show(svc.name, "ExecMainStatus") == "0" and sd.show(svc.name, "Result") == "success"
    assert any(m.startswith("stopping after") for m in _messages(sd, svc.name)), "SIGTERM handled in the service"


def test_config_error_fails_unit_with_message(sd, make_service):
    svc = make_service("config", mode="config-error")
    result = sd.run(["systemctl", "start", svc.name], timeout=60)
    assert result.returncode != 0, "systemctl start reports the failure"
    sd.wait_state(svc.name, "failed", timeout=20)
    assert sd.show(svc.name, "ExecMainStatus") == "2" and sd.show(svc.name, "NRestarts") == "0", \
        "exit 2 is a configuration error: RestartPreventExitStatus=2, no restart loop"
    sd.wait_journal(svc.name, lambda r: "config error: /etc/edge-detector/edge.toml: kafka.bootstrap_servers"
                    in r.get("MESSAGE", ""), timeout=10)


def _hardened_test_unit(control: Path) -> str:
    python_path = f"{REPO}:{REPO}/.venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    return adapt_shipped_unit(UNIT_FILE, exec_start=f"/usr/bin/python3 {SCRIPT}", service_lines=[
        f"Environment=PYTHONPATH={python_path} EDGE_TEST_CONTROL={control} EDGE_TEST_WARMUP=0.5"])


def _proc_status(sd: SystemdNamespace, pid: str) -> dict[str, str]:
    out = sd.run(["cat", f"/proc/{pid}/status"], check=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="the hardened unit test runs /usr/bin/python3")
def test_shipped_hardened_unit_runs_a_notify_service(sd):
    # given the shipped unit (all its sandboxing) running the test service as an unprivileged user
    name = f"edge-sdtest-hardened-{uuid.uuid4().hex[:8]}.service"
    sd.install_unit(name, _hardened_test_unit(sd.workdir / f"{name}.control"))
    try:
        result = sd.run(["systemctl", "start", name], timeout=60)
        msgs = _messages(sd, name)
        assert result.returncode == 0, f"starts under the sandbox: {result.stderr} {msgs[-10:]}"
        assert sd.state(name) == ("active", "running"), sd.state(name)
        # then the sandbox is in force and READY, journald, the runtime dir and the status file all work
        proc = _proc_status(sd, sd.show(name, "MainPID"))
        assert proc["NoNewPrivs"] == "1" and proc["Seccomp"] == "2" and int(proc["CapBnd"], 16) == 0, proc
        sd.wait_journal(name, lambda r: r.get("MESSAGE") == "detected stop sign" and r.get("VEHICLE_ID") == "veh-test-7")
        status_path = sd.host_path("/run/edge-detector")
        data = poll(lambda: read_status(status_path), 10, 0.2, "status.json in RuntimeDirectory=")
        assert data["state"] == "running" and data["pid"] and "updated_at" in data, data
        assert "frames" in format_status(data), format_status(data)
        t0 = time.monotonic()
        sd.run(["systemctl", "stop", name], check=True, timeout=60)
        assert time.monotonic() - t0 < 30 and sd.show(name, "Result") == "success", "clean stop"
        assert not sd.host_path("/run/edge-detector").exists(), "RuntimeDirectory= removed on stop"
    finally:
        sd.run(["systemctl", "stop", name], timeout=30)


def test_harness_kept_tmp_private(sd):
    inside = sd.run(["findmnt", "-n", "-o", "FSTYPE", "/tmp"]).stdout.strip()
    assert inside == "tmpfs", f"/tmp inside the namespace is a tmpfs, got {inside!r}"
    assert os.stat("/tmp").st_dev != os.stat(sd.host_path("/tmp")).st_dev, "a different /tmp than the host's"
