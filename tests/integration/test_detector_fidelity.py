"""The detector equals Ultralytics' own predictor on two real models (references made by ultralytics 8.4.190)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.detect import Detector

CASES = [
    ("yolov8n.onnx", "yolov8n_predictions.json"),
    ("fall-yolov8s.onnx", "fall-yolov8s_predictions.json"),
]


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize(("model", "reference"), CASES)
def test_matches_ultralytics_predictor(data_dir: Path, model: str, reference: str):
    ref = json.loads((data_dir / "reference" / reference).read_text())
    detector = Detector(DetectorConfig(model=str(data_dir / "models" / model), providers=["cpu"]), all_classes=True)
    assert ref["images"], "reference file lists images"
    for image_name, expected in ref["images"].items():
        image = cv2.imread(str(data_dir / "images" / image_name))
        assert image is not None, f"{image_name} should be readable"
        assert list(image.shape[:2]) == expected["orig_shape"], f"{image_name}: shape differs from the reference"
        got = detector.detect(image)
        unmatched = set(range(len(got)))
        for want in expected["detections"]:
            candidates = [
                (j, _iou(got.xyxy[j].tolist(), want["xyxy"])) for j in unmatched if int(got.class_id[j]) == want["class_id"]
            ]
            assert candidates, f"{model} {image_name}: no {want['class_name']} box left to match {want}"
            j, best = max(candidates, key=lambda c: c[1])
            assert best >= 0.95, f"{model} {image_name}: {want['class_name']} IoU {best:.3f} < 0.95"
            dconf = abs(float(got.confidence[j]) - want["confidence"])
            assert dconf <= 0.01, f"{model} {image_name}: {want['class_name']} confidence off by {dconf:.4f}"
            assert got.class_name(j) == want["class_name"], "class names come from the model metadata"
            unmatched.discard(j)
        assert not unmatched, f"{model} {image_name}: extra boxes {[got.xyxy[j].tolist() for j in unmatched]}"


def test_default_class_filter_keeps_stop_signs_and_traffic_lights(data_dir: Path, yolov8n: Path):
    detector = Detector(DetectorConfig(model=str(yolov8n), providers=["cpu"]))
    assert set(detector.classes) == {"stop sign", "traffic light"}, f"default filter, got {detector.classes}"
    seen = {}
    for name in ("dashcam_stop_sign.jpg", "coco_000000334371_traffic_lights.jpg", "bus.jpg"):
        det = detector.detect(cv2.imread(str(data_dir / "images" / name)))
        seen[name] = sorted({det.class_name(i) for i in range(len(det))})
    assert seen["dashcam_stop_sign.jpg"] == ["stop sign"], f"stop sign found in the dashcam frame: {seen}"
    assert seen["coco_000000334371_traffic_lights.jpg"] == ["traffic light"], f"traffic lights found: {seen}"
    assert seen["bus.jpg"] == [], f"people and the bus are filtered out: {seen}"


def test_fall_model_keeps_all_its_classes(data_dir: Path):
    detector = Detector(DetectorConfig(model=str(data_dir / "models" / "fall-yolov8s.onnx"), providers=["cpu"]))
    assert detector.classes == ("Normal", "Fall"), f"a model without stop signs keeps every class: {detector.classes}"


def test_int8_model_finds_the_same_stop_sign(data_dir: Path):
    detector = Detector(DetectorConfig(model=str(data_dir / "models" / "yolov8n-int8.onnx"), providers=["cpu"]))
    det = detector.detect(cv2.imread(str(data_dir / "images" / "stop_sign_closeup.jpg")))
    assert [det.class_name(i) for i in range(len(det))] == ["stop sign"], "quantised model still sees the stop sign"
    assert np.all(det.confidence > 0.25), "scores above threshold"
