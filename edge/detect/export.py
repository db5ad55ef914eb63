"""`edge model export`: Ultralytics weights → ONNX with the metadata the detector reads (optional extra)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class ExportError(Exception):
    """Export impossible; the message says what to install or fix."""


def export_onnx(weights: str, *, imgsz: int = 640, out_dir: Path | None = None) -> Path:
    """Export with opset and shapes the detector expects (static 1×3×imgsz×imgsz, no NMS in the graph)."""
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ExportError(
            "ultralytics is not installed: pip install 'edge-detector[export]' (or pip install ultralytics)"
        ) from None
    try:
        model = YOLO(weights)
        produced = Path(model.export(format="onnx", imgsz=imgsz, dynamic=False, simplify=True, nms=False))
    except Exception as exc:  # noqa: BLE001 - ultralytics raises many types (download, torch, onnx)
        raise ExportError(f"{weights}: {type(exc).__name__}: {exc}") from None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / produced.name
        produced.replace(target)
        produced = target
    log.info("exported %s → %s", weights, produced)
    return produced
