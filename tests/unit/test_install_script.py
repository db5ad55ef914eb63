"""install.sh: valid bash, a help text naming its options, bad options refused before anything is changed (the
real install, as root inside a namespaced systemd, is tests/integration/test_install.py)."""

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
    for option in ("--prefix", "--model", "--config", "--cpu", "--gpu", "--wheelhouse", "--no-start", "--uninstall",
                   "--purge", "--dev", "onnxruntime-gpu", "JetPack"):
        assert option in proc.stdout, f"--help should mention {option}"


def test_unknown_option_is_refused():
    proc = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown option: --frobnicate" in proc.stderr, proc.stderr


def test_purge_goes_with_uninstall_only():
    proc = subprocess.run(["bash", str(SCRIPT), "--purge"], capture_output=True, text=True)
    assert proc.returncode == 1 and "--purge goes with --uninstall" in proc.stderr, \
        f"--purge alone is refused before anything is removed: {proc.returncode} {proc.stderr}"


def test_a_missing_wheelhouse_or_config_is_named(tmp_path):
    for option in ("--wheelhouse", "--config"):
        missing = tmp_path / "nope"
        proc = subprocess.run(["bash", str(SCRIPT), option, str(missing)], capture_output=True, text=True)
        assert proc.returncode == 1 and f"{option} {missing}: no such" in proc.stderr, \
            f"{option} with a missing path: one clear line, exit 1: {proc.returncode} {proc.stderr}"
