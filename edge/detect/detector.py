"""The detector stage's engine: one ONNX YOLOv8 session, image in, Detections out."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edge.config import DetectorConfig
from edge.detect.model import ModelError, ModelInfo, load_model
from edge.detect.yolo import Letterbox, decode, letterbox_tensor
from edge.types import Detections

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("stop sign", "traffic light")


def class_mask(names: tuple[str, ...], wanted: list[str] | tuple[str, ...]) -> np.ndarray | None:
    """Boolean mask over the model's classes; None keeps every class.

    With no explicit list: stop sign and traffic light when the model knows them, else every class."""
    if not wanted:
        present = [n for n in DEFAULT_CLASSES if n in names]
        if not present:
            return None
        wanted = present
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ModelError(f"detector.classes: {unknown} not among the model's classes ({', '.join(names[:10])}…)")
    return np.isin(np.asarray(names, dtype=object), list(wanted))


@runtime_checkable
class ObjectDetector(Protocol):
    """What the pipeline's stages and the service's reload use of a detector (`Detector`, or a test's fake)."""

    @property
    def model_name(self) -> str: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    provider: str

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
        """The input tensor of `image` (written into `out` when it fits) and how the image was fitted."""
        ...

    def infer(self, tensor: np.ndarray) -> np.ndarray: ...

    def postprocess(self, output: np.ndarray, geometry: Letterbox) -> Detections: ...

    def set_thresholds(self, conf: float, iou: float, classes: list[str]) -> None: ...


class Detector:
    """Letterbox → onnxruntime → decode + NMS. Thread-compatible: preprocess/postprocess are pure, `infer`
    may be called from one thread at a time."""

    def __init__(self, cfg: DetectorConfig, *, state_dir: Path | None = None, all_classes: bool = False):
        self.cfg = cfg
        path = Path(cfg.model)
        self.session, self.info = load_model(
            path,
            cfg.providers,
            intra_op_threads=cfg.intra_op_threads,
            spin_wait=cfg.spin_wait,
            trt_cache_dir=(state_dir / "trt-cache") if state_dir else None,
            trt_fp16=cfg.tensorrt_fp16,
        )
        self.provider = self.session.get_providers()[0]
        self.mask = None if all_classes else class_mask(self.info.names, cfg.classes)
        self.conf = cfg.confidence
        self.iou = cfg.iou
        self._output_names = [self.session.get_outputs()[0].name]

    @property
    def model_name(self) -> str:
        return self.info.path.name

    @property
    def classes(self) -> tuple[str, ...]:
        if self.mask is None:
            return self.info.names
        return tuple(n for n, keep in zip(self.info.names, self.mask) if keep)

    def set_thresholds(self, conf: float, iou: float, classes: list[str]) -> None:
        """Change thresholds and class filter at run time (SIGHUP); validates before applying."""
        mask = class_mask(self.info.names, classes)
        self.conf, self.iou, self.mask = conf, iou, mask

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
        h, w = self.info.imgsz
        if out is not None and (out.shape != (1, 3, h, w) or out.dtype != self.info.input_dtype):
            out = None
        return letterbox_tensor(image, self.info.imgsz, self.info.input_dtype, out)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self._output_names, {self.info.input_name: tensor})[0]

    def postprocess(self, output: np.ndarray, geometry: Letterbox) -> Detections:
        boxes, confs, cls = decode(
            output, geometry, conf=self.conf, iou=self.iou, max_det=self.cfg.max_detections, class_mask=self.mask
        )
        return Detections(boxes, confs, cls, self.info.names)

    def detect(self, image: np.ndarray) -> Detections:
        tensor, geometry = self.preprocess(image)
        return self.postprocess(self.infer(tensor), geometry)

    def warmup(self, runs: int = 1) -> float:
        """Run the network on a blank frame (first runs allocate, and TensorRT builds its engine). Returns ms."""
        h, w = self.info.imgsz
        blank = np.zeros((1, 3, h, w), dtype=self.info.input_dtype)
        start = time.perf_counter()
        for _ in range(runs):
            self.infer(blank)
        ms = (time.perf_counter() - start) * 1000 / runs
        log.info("detector warm-up done: %s on %s, %.0f ms/run", self.model_name, self.provider, ms)
        return ms


def model_summary(info: ModelInfo) -> dict[str, object]:
    return {
        "path": str(info.path),
        "description": info.description,
        "classes": len(info.names),
        "names": list(info.names),
        "imgsz": list(info.imgsz),
        "stride": info.stride,
        "input": {"name": info.input_name, "dtype": str(info.input_dtype)},
        "output_shape": list(info.output_shape),
    }
