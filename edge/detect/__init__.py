"""Object detection: YOLOv8 ONNX sessions, Ultralytics-equal pre/post-processing."""

from edge.detect.detector import (
    DEFAULT_CLASSES,
    Detector,
    ObjectDetector,
    class_mask,
    model_summary,
)
from edge.detect.model import ModelError, ModelInfo, load_model

__all__ = ["DEFAULT_CLASSES", "Detector", "ModelError", "ObjectDetector", "ModelInfo", "class_mask", "load_model", "model_summary"]
