"""YOLOv8 pre- and post-processing equal to Ultralytics' predictor: letterbox, decode, class-aware NMS, rescale."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
# Ultralytics offsets boxes by class * MAX_WH so one NMS pass never suppresses across classes.
MAX_WH = 7680
MAX_NMS = 30000


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an original image was fitted into the network input, to map boxes back."""

    orig_h: int
    orig_w: int
    gain: float
    pad_x: int
    pad_y: int


def _fit(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, int, int, Letterbox]:
    """The resized image, its top and left offsets in `size` (h, w), and the geometry: Ultralytics' LetterBox
    (auto=False, scaleup=True, center=True)."""
    h0, w0 = image.shape[:2]
    th, tw = size
    gain = min(th / h0, tw / w0)
    # Python's round (banker's) on purpose: Ultralytics uses it, and a 1-pixel shift changes scores.
    new_w, new_h = round(w0 * gain), round(h0 * gain)
    if (w0, h0) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = round((th - new_h) / 2 - 0.1), round((tw - new_w) / 2 - 0.1)
    pad_x, pad_y = round((tw - w0 * gain) / 2 - 0.1), round((th - h0 * gain) / 2 - 0.1)
    return image, top, left, Letterbox(h0, w0, gain, pad_x, pad_y)


def letterbox(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad with grey 114 to `size` (h, w), centred. Returns the padded BGR uint8
    image and the geometry."""
    resized, top, left, geometry = _fit(image, size)
    new_h, new_w = resized.shape[:2]
    bottom, right = size[0] - new_h - top, size[1] - new_w - left
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, dst=out, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
    )
    return padded, geometry


FLOAT32 = np.dtype(np.float32)


def to_tensor(padded: np.ndarray, dtype: np.dtype = FLOAT32) -> np.ndarray:
    """BGR HWC uint8 → RGB NCHW in [0, 1]."""
    blob = cv2.dnn.blobFromImage(padded, scalefactor=1 / 255.0, swapRB=True, crop=False, ddepth=cv2.CV_32F)
    return blob if dtype == np.float32 else blob.astype(dtype)


@functools.cache
def _pad_value(dtype: np.dtype) -> np.floating:
    """The tensor value of a grey 114 pixel, computed as blobFromImage computes every other pixel's."""
    return to_tensor(np.full((1, 1, 3), PAD_VALUE, np.uint8), dtype).flat[0]


_SCALE = np.float32(1 / 255.0)  # what blobFromImage multiplies by (in float32, as convertTo does)


def letterbox_tensor(image: np.ndarray, size: tuple[int, int], dtype: np.dtype = FLOAT32,
                     out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """`to_tensor(letterbox(image, size)[0])`, bit for bit, written into `out` (1×3×h×w of `dtype`) when given.

    Faster: only the resized image is converted (blobFromImage is slow on the whole 640×640) and the grey bands
    are filled in the tensor. A reused `out` matters on a busy machine: a fresh 4.9 MB tensor is new pages
    from the kernel (page faults, huge-page compaction) and cost up to 50 ms a frame there."""
    resized, top, left, geometry = _fit(image, size)
    new_h, new_w = resized.shape[:2]
    if out is None:
        out = np.empty((1, 3, *size), dtype)
    pad = _pad_value(dtype)
    out[:, :, :top] = pad
    out[:, :, top + new_h:] = pad
    out[:, :, top:top + new_h, :left] = pad
    out[:, :, top:top + new_h, left + new_w:] = pad
    inner = out[0, :, top:top + new_h, left:left + new_w]
    for c in range(3):  # RGB planes from BGR pixels, each pixel * float32(1/255) as blobFromImage
        np.multiply(resized[:, :, 2 - c], _SCALE, out=inner[c], casting="unsafe")
    return out, geometry


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS like torchvision.ops.nms: indices kept, highest score first. Loops once per kept box,
    each step vectorised over the remaining candidates."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def decode(
    output: np.ndarray,
    geometry: Letterbox,
    *,
    conf: float,
    iou: float,
    max_det: int,
    class_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, 4+nc, N) raw output → (xyxy in original pixels, confidence, class id), sorted by confidence.

    `class_mask` (nc,) bool keeps only those classes (applied before NMS, as Ultralytics' `classes=`)."""
    pred = output[0]
    if pred.dtype != np.float32:
        pred = pred.astype(np.float32)
    scores = pred[4:]
    best_conf = scores.max(0)  # the class only where it is needed: argmax over all 8400 costs 12× a max
    idx = np.flatnonzero(best_conf > conf)
    cls = scores[:, idx].argmax(0).astype(np.int64)
    if class_mask is not None:
        wanted = class_mask[cls]
        idx, cls = idx[wanted], cls[wanted]
    if idx.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    confs = best_conf[idx]
    if idx.size > MAX_NMS:
        top = np.argsort(-confs, kind="stable")[:MAX_NMS]
        idx, cls, confs = idx[top], cls[top], confs[top]
    cx, cy, w, h = pred[0, idx], pred[1, idx], pred[2, idx], pred[3, idx]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kept = nms(boxes + (cls * MAX_WH)[:, None].astype(np.float32), confs, iou)[:max_det]
    boxes, confs, cls = boxes[kept], confs[kept], cls[kept]
    boxes[:, [0, 2]] -= geometry.pad_x
    boxes[:, [1, 3]] -= geometry.pad_y
    boxes /= geometry.gain
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, geometry.orig_w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, geometry.orig_h)
    return boxes.astype(np.float32), confs.astype(np.float32), cls
