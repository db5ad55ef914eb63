"""Tiny ONNX graphs with chosen shapes and metadata, for the detector's bad-model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(path: Path, *, out_channels: int = 84, anchors: int = 8400, imgsz: int = 640,
               metadata: dict[str, str] | None = None) -> Path:
    """A graph 'images' (1,3,H,W) → 'output0' (1, out_channels, anchors) built from a reshape of a pooled
    input, so onnxruntime really runs it; `metadata` as Ultralytics writes it (None: no metadata)."""
    pooled = imgsz // 32
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, out_channels, anchors])
    nodes = [
        helper.make_node("AveragePool", ["images"], ["p"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("ReduceMean", ["p"], ["m"], keepdims=0),
        helper.make_node("Expand", ["m", "shape"], ["output0"]),
    ]
    shape = numpy_helper.from_array(np.array([1, out_channels, anchors], np.int64), "shape")
    graph = helper.make_graph(nodes, "fake", [inp], [out], initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    del pooled
    onnx.save(model, str(path))
    return path


def coco_metadata(nc: int = 80) -> dict[str, str]:
    names = {i: f"class{i}" for i in range(nc)}
    if nc > 11:
        names[9], names[11] = "traffic light", "stop sign"
    return {"names": repr(names), "imgsz": "[640, 640]", "stride": "32", "task": "detect"}
