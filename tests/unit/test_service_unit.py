"""systemd/edge-detector.service: the settings the service relies on, `systemd-analyze verify`, and exposure ≤ 2.5."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edge-detector.service"
MAX_EXPOSURE = 2.5
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize(("key", "value"), [
    ("Type", "notify"), ("NotifyAccess", "main"),
    ("ExecStart", "/opt/edge-detector/venv/bin/edge run --config /etc/edge-detector/edge.toml"),
    ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ("WatchdogSec", "30"), ("TimeoutStartSec", "300"), ("TimeoutStopSec", "30"),
    ("Restart", "on-failure"), ("RestartSec", "5"), ("RestartPreventExitStatus", "2"),
    ("User", "edge-detector"),
    ("StateDirectory", "edge-detector"), ("RuntimeDirectory", "edge-detector"),
    ("ConfigurationDirectory", "edge-detector"), ("EnvironmentFile", "-/etc/edge-detector/credentials.env"),
    ("PrivateDevices", "no"), ("DevicePolicy", "closed"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"), ("SystemCallFilter", "@system-service"),
])
def test_unit_setting(key, value):
    assert value in _settings().get(key, []), f"{key}={value} in {UNIT.name}"


def test_unit_names_no_group_or_device_path_that_may_be_missing():
    # a missing group fails the unit (216/GROUP), a missing path makes PID 1 warn: install.sh's drop-in names them
    settings = _settings()
    assert "SupplementaryGroups" not in settings, f"no SupplementaryGroups= in the shipped unit: {settings.get('SupplementaryGroups')}"
    paths = [v for v in settings["DeviceAllow"] if v.startswith("/")]
    assert not paths, f"DeviceAllow= by class only in the shipped unit, got paths {paths}"


def test_unit_allows_cameras_gpus_and_gps_serial():
    allowed = {v.split()[0] for v in _settings()["DeviceAllow"]}
    for dev in ("char-video4linux", "char-drm", "char-nvidia*", "char-nvgpu*", "char-ttyUSB", "char-ttyACM"):
        assert dev in allowed, f"DeviceAllow={dev} rw"
    assert _settings()["StartLimitBurst"] and _settings()["StartLimitIntervalSec"], "a start limit"
    assert {"network-online.target", "gpsd.service"} <= set(" ".join(_settings()["After"]).split()), "ordering"


@needs_analyze
def test_unit_verifies_clean(tmp_path):
    # the venv's `edge` exists only on an installed vehicle: verify a copy that starts /bin/true instead
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("ExecStart=/opt/edge-detector/venv/bin/edge", "ExecStart=/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not problems, f"systemd-analyze verify: {result.stdout}{result.stderr}"


@needs_analyze
def test_unit_exposure_at_most_2_5():
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    if match is None and "--offline" in result.stderr:
        pytest.skip(f"systemd-analyze without --offline (systemd < 250): {result.stderr.strip()}")
    assert match, f"an exposure line: {result.stdout[-500:]} {result.stderr[-500:]}"
    assert float(match.group(1)) <= MAX_EXPOSURE, f"exposure {match.group(1)} > {MAX_EXPOSURE}:\n{result.stdout}"
