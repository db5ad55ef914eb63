"""Letterbox geometry, NMS and decoding against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.yolo import (
    Letterbox,
    decode,
    letterbox,
    letterbox_tensor,
    nms,
    to_tensor,
)


@pytest.mark.parametrize(
    ("shape", "pads"),
    [
        ((720, 1280), (140, 0)),  # 16:9 → 640x360, 140 px top and bottom
        ((1080, 810), (0, 80)),  # portrait bus.jpg → 480x640, 80 px left and right
        ((640, 640), (0, 0)),
        ((100, 101), (3, 0)),  # 634 rows: 6 px split 3/3 like Ultralytics (round(dh ∓ 0.1))
    ],
)
def test_letterbox_geometry(shape, pads):
    img = np.full((*shape, 3), 255, np.uint8)
    out, geo = letterbox(img, (640, 640))
    assert out.shape == (640, 640, 3), f"output must be 640x640, got {out.shape}"
    top = int(np.argmax(out[:, 320, 0] == 255))
    left = int(np.argmax(out[320, :, 0] == 255))
    assert (top, left) == pads, f"padding (top, left) for {shape} should be {pads}, got {(top, left)}"
    assert out[0, 0, 0] == (114 if any(pads) else 255), "padding is grey 114"
    assert (geo.pad_y, geo.pad_x) == pads, f"geometry pads should be {pads}, got {(geo.pad_y, geo.pad_x)}"


def test_nms_suppresses_overlaps_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    keep = nms(boxes, scores, 0.7)
    assert keep.tolist() == [3, 2], f"box 3 (best) suppresses 0 and 1 (IoU > 0.7); 2 is apart; got {keep.tolist()}"


def _raw(boxes_xywh, scores, nc=3, n=10):
    out = np.zeros((1, 4 + nc, n), np.float32)
    for i, (b, s) in enumerate(zip(boxes_xywh, scores)):
        out[0, :4, i] = b
        out[0, 4:, i] = s
    return out


def test_decode_class_aware_threshold_and_mapping():
    geo = Letterbox(orig_h=320, orig_w=640, gain=1.0, pad_x=0, pad_y=160)
    raw = _raw(
        [(100, 260, 20, 40), (101, 260, 20, 40), (300, 300, 10, 10), (50, 200, 10, 10)],
        [(0.9, 0, 0), (0, 0.8, 0), (0, 0, 0.25), (0.3, 0, 0)],
    )
    boxes, confs, cls = decode(raw, geo, conf=0.25, iou=0.7, max_det=300)
    assert cls.tolist() == [0, 1, 0], f"overlapping boxes of different classes both survive; 0.25 is not > 0.25: {cls.tolist()}"
    np.testing.assert_allclose(boxes[0], [90, 80, 110, 120], err_msg="box mapped back by removing padding")
    mask = np.array([False, True, False])
    _, _, cls2 = decode(raw, geo, conf=0.25, iou=0.7, max_det=300, class_mask=mask)
    assert cls2.tolist() == [1], f"class filter keeps only class 1, got {cls2.tolist()}"


def test_decode_empty_and_clipping():
    geo = Letterbox(orig_h=100, orig_w=100, gain=1.0, pad_x=0, pad_y=0)
    boxes, _, _ = decode(_raw([(5, 5, 20, 20)], [(0.9, 0, 0)]), geo, conf=0.25, iou=0.7, max_det=300)
    assert boxes[0].tolist() == [0, 0, 15, 15], f"boxes clipped to the image, got {boxes[0].tolist()}"
    boxes, _, _ = decode(_raw([], []), geo, conf=0.25, iou=0.7, max_det=300)
    assert boxes.shape == (0, 4), "no candidates → empty result"


@pytest.mark.parametrize("shape", [(720, 1280), (1280, 720), (640, 640), (481, 641), (3, 5), (1080, 1920)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_letterbox_tensor_is_letterbox_then_to_tensor_bit_for_bit(shape, dtype):
    img = np.random.default_rng(7).integers(0, 256, (*shape, 3), np.uint8)
    for size in ((640, 640), (384, 640)):
        fast, geo = letterbox_tensor(img, size, np.dtype(dtype))
        padded, expected_geo = letterbox(img, size)
        slow = to_tensor(padded, np.dtype(dtype))
        assert fast.dtype == slow.dtype and fast.shape == slow.shape, f"{fast.dtype} {fast.shape} vs {slow.dtype} {slow.shape}"
        assert np.array_equal(fast, slow), f"{shape} {size}: max difference {np.abs(fast.astype(float) - slow).max()}"
        assert geo == expected_geo, f"same geometry: {geo} vs {expected_geo}"
