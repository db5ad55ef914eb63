"""Shared fixtures: where the real test data lives (models, images, videos, NMEA, EXIF); root logging restored."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    return Path(os.environ.get("EDGE_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.fail(f"test data not found at {root}: set EDGE_TEST_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def yolov8n(data_dir: Path) -> Path:
    return data_dir / "models" / "yolov8n.onnx"


@pytest.fixture
def restore_logging():
    """The root logger's handlers and level as they were before the test (for tests that set logging up)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
