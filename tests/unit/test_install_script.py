"""install.sh: valid bash, a help text naming its options, unknown options refused (a real install would create
users and services on this machine: that part is exercised by hand and by the systemd tests' unit file)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "install.sh"


def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, f"bash -n: {proc.stderr}"


def test_help_lists_the_options():
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for option in ("--prefix", "--model", "--no-start", "--uninstall", "--dev", "onnxruntime-gpu", "JetPack"):
        assert option in proc.stdout, f"--help should mention {option}"


def test_unknown_option_is_refused():
    proc = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown option: --frobnicate" in proc.stderr, proc.stderr
