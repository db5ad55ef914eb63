"""SIGHUP reload: what can change safely is applied, what needs a restart is named, a bad file is rejected."""

from __future__ import annotations

import logging
from pathlib import Path

from edge.config import load_config
from edge.daemon import Daemon


class FakeDetector:
    def __init__(self):
        self.applied = None

    def set_thresholds(self, conf, iou, classes):
        if classes and classes != ["stop sign"]:
            raise ValueError(f"{classes} not among the model's classes")
        self.applied = (conf, iou, classes)


class FakeSource:
    def __init__(self):
        self.fps = None
        self.calls = 0

    def set_fps(self, fps):
        self.fps = fps
        self.calls += 1


def _daemon(tmp_path: Path, text: str) -> tuple[Daemon, Path]:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return Daemon(load_config(path, env={}), path), path


def test_reload_applies_thresholds_and_names_what_needs_a_restart(tmp_path, caplog):
    daemon, path = _daemon(tmp_path, "[detector]\nconfidence = 0.25\n")
    path.write_text('[detector]\nconfidence = 0.5\nclasses = ["stop sign"]\n[source]\ninference_fps = 2\n'
                    '[kafka]\ntopic = "other"\n[log]\nlevel = "DEBUG"\n')
    detector, source = FakeDetector(), FakeSource()
    caplog.set_level(logging.INFO, logger="edge.daemon")
    daemon._apply_reload(detector, source)
    assert detector.applied == (0.5, 0.7, ["stop sign"]), f"thresholds and class filter applied: {detector.applied}"
    assert source.fps == 2 and source.calls == 1, "the sampling rate is applied to the source"
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("reloaded"))
    assert "detector.confidence 0.25 → 0.5" in line and "classes" in line, f"says what changed, from what: {line}"
    assert "source.inference_fps 5.0 → 2.0" in line, f"says the new sampling rate: {line}"
    assert "needs a restart to apply: kafka" in line, f"says kafka needs a restart: {line}"
    caplog.clear()
    daemon._apply_reload(detector, source)
    again = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("reloaded"))
    assert "applied nothing" in again, f"a second reload of the same file changes nothing: {again}"
    assert source.calls == 1, "an unchanged rate is not set again"
    logging.getLogger().setLevel(logging.WARNING)


def test_reload_of_a_broken_file_keeps_the_running_configuration(tmp_path, caplog):
    daemon, path = _daemon(tmp_path, "")
    path.write_text("[detector]\nconfidence = 9\n")
    detector = FakeDetector()
    caplog.set_level(logging.ERROR, logger="edge.daemon")
    daemon._apply_reload(detector, FakeSource())
    assert detector.applied is None, "nothing applied from an invalid file"
    assert any("detector.confidence" in r.getMessage() for r in caplog.records), "the bad key is named"


def test_reload_with_an_unknown_class_is_rejected(tmp_path, caplog):
    daemon, path = _daemon(tmp_path, "")
    path.write_text('[detector]\nclasses = ["unicorn"]\n')
    detector = FakeDetector()
    caplog.set_level(logging.ERROR, logger="edge.daemon")
    daemon._apply_reload(detector, FakeSource())
    assert detector.applied is None and any("unicorn" in r.getMessage() for r in caplog.records), "rejected, named"
