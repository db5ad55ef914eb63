"""Bad models and provider fallback: clear messages naming the file and the shapes, never raw onnxruntime noise."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.config import DetectorConfig
from edge.detect import Detector, ModelError
from tests.model_factory import coco_metadata, make_model


def _detector(path: Path, providers=("cpu",)) -> Detector:
    return Detector(DetectorConfig(model=str(path), providers=list(providers)))


def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match=r"missing\.onnx: model file not found"):
        _detector(tmp_path / "missing.onnx")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(ModelError, match=r"junk\.onnx: onnxruntime cannot load the model"):
        _detector(bad)


def test_model_without_metadata(tmp_path):
    path = make_model(tmp_path / "plain.onnx", metadata=None)
    with pytest.raises(ModelError) as info:
        _detector(path)
    msg = str(info.value)
    assert "plain.onnx" in msg and "names, imgsz, stride" in msg, f"message names the file and the keys: {msg}"


def test_wrong_output_shape(tmp_path):
    path = make_model(tmp_path / "wrong.onnx", out_channels=10, metadata=coco_metadata(80))
    with pytest.raises(ModelError) as info:
        _detector(path)
    msg = str(info.value)
    assert "wrong.onnx" in msg and "(1, 84, 8400)" in msg and "(1, 10, 8400)" in msg, f"expected and found shapes: {msg}"


def test_wrong_input_size(tmp_path):
    path = make_model(tmp_path / "small.onnx", imgsz=320, anchors=2100, metadata=coco_metadata(80))
    with pytest.raises(ModelError, match=r"expected input shape \(1, 3, 640, 640\), found \(1, 3, 320, 320\)"):
        _detector(path)


def test_preferred_gpu_providers_fall_back_with_one_clear_line(yolov8n, caplog, capfd):
    caplog.set_level(logging.INFO, logger="edge.detect")
    det = _detector(yolov8n, providers=("tensorrt", "cuda", "cpu"))
    out, err = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records if "detector using" in r.getMessage()]
    assert len(lines) == 1, f"exactly one provider line, got {lines}"
    if det.provider == "CPUExecutionProvider":
        assert "tensorrt" in lines[0] and "cuda" in lines[0], f"the line says why GPU providers were not used: {lines[0]}"
        assert "EP Error" not in out + err and "[E:onnxruntime" not in out + err, f"no raw onnxruntime noise: {(out + err)[:300]}"
