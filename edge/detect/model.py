"""ONNX model loading: Ultralytics metadata, shape checks, execution providers (TensorRT ▸ CUDA ▸ CPU)."""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDER_NAMES.items()}


class ModelError(Exception):
    """The model cannot be used; the message names the file, what was expected and what was found."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the detector needs to know about a YOLOv8 ONNX export."""

    path: Path
    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (h, w)
    stride: int
    input_name: str
    input_dtype: np.dtype
    output_shape: tuple[int | str, ...]
    task: str
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.names)


def _parse_literal(path: Path, key: str, raw: str) -> object:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        raise ModelError(f"{path}: metadata '{key}' is not a Python literal: {raw[:80]!r} ({exc})") from None


def read_model_info(path: Path, session) -> ModelInfo:  # noqa: ANN001 - onnxruntime.InferenceSession
    """Check an Ultralytics detect export and read names, imgsz and stride from its metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in ("names", "imgsz", "stride") if k not in meta]
    if missing:
        raise ModelError(
            f"{path}: not an Ultralytics YOLO export: metadata lacks {', '.join(missing)} "
            f"(expected keys names, imgsz, stride as written by `yolo export format=onnx`; found {sorted(meta) or 'none'})"
        )
    names_raw = _parse_literal(path, "names", meta["names"])
    if isinstance(names_raw, dict):
        names = tuple(str(names_raw[i]) for i in sorted(names_raw))
    elif isinstance(names_raw, (list, tuple)):
        names = tuple(str(n) for n in names_raw)
    else:
        raise ModelError(f"{path}: metadata 'names' should be a dict or list, found {type(names_raw).__name__}")
    imgsz_raw = _parse_literal(path, "imgsz", meta["imgsz"])
    if isinstance(imgsz_raw, int):
        imgsz_raw = [imgsz_raw, imgsz_raw]
    if not (isinstance(imgsz_raw, (list, tuple)) and len(imgsz_raw) == 2 and all(isinstance(v, int) for v in imgsz_raw)):
        raise ModelError(f"{path}: metadata 'imgsz' should be [h, w], found {meta['imgsz']!r}")
    imgsz = (int(imgsz_raw[0]), int(imgsz_raw[1]))
    stride = int(_parse_literal(path, "stride", meta["stride"]))  # type: ignore[arg-type]
    task = meta.get("task", "detect")
    if task != "detect":
        raise ModelError(f"{path}: task is {task!r}; only 'detect' models are supported")

    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected 1 input 'images' (1, 3, H, W), found {len(inputs)}")
    inp = inputs[0]
    ishape = tuple(inp.shape)
    if len(ishape) != 4 or ishape[1] != 3 or (
        all(isinstance(d, int) for d in ishape[2:]) and tuple(ishape[2:]) != imgsz
    ):
        raise ModelError(f"{path}: expected input shape (1, 3, {imgsz[0]}, {imgsz[1]}), found {ishape}")
    if inp.type not in ("tensor(float)", "tensor(float16)"):
        raise ModelError(f"{path}: expected a float or float16 input tensor, found {inp.type}")
    nc = len(names)
    anchors = sum((imgsz[0] // s) * (imgsz[1] // s) for s in (8, 16, 32))
    oshape = tuple(outputs[0].shape)
    ok = len(oshape) == 3 and oshape[1] == 4 + nc and (oshape[2] == anchors or not isinstance(oshape[2], int))
    if not ok:
        raise ModelError(
            f"{path}: expected output shape (1, {4 + nc}, {anchors}) = (batch, 4 box + {nc} classes, anchors) "
            f"for a YOLOv8 detect head without NMS, found {oshape}"
        )
    return ModelInfo(
        path=path,
        names=names,
        imgsz=imgsz,
        stride=stride,
        input_name=inp.name,
        input_dtype=np.dtype(np.float16 if inp.type == "tensor(float16)" else np.float32),
        output_shape=oshape,
        task=task,
        description=meta.get("description", ""),
    )


@contextlib.contextmanager
def _captured_native_output() -> Iterator[list[str]]:
    """Capture what onnxruntime prints on fd 1 and 2 (native logs and its Python fallback prints) so it can be
    reported as one clear line instead of raw errors. The text lands in the yielded list on exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    captured: list[str] = []
    py_output = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(py_output), contextlib.redirect_stderr(py_output):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace") + py_output.getvalue())


def _reason(provider: str, text: str) -> str:
    """Why onnxruntime could not use `provider`, from its captured output."""
    lib = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}.get(provider, "")
    m = re.search(rf"providers_{lib}\.so with error: ([^\n]*?)(?:\s*$|\n)", text, re.M) if lib else None
    if m:
        return f"its libraries could not be loaded ({m.group(1).strip()})"
    if provider == "TensorrtExecutionProvider" and "install TensorRT" in text:
        return "TensorRT libraries are not installed"
    if provider == "CUDAExecutionProvider" and "Require cuDNN" in text:
        m2 = re.search(r"Require (cuDNN [^.]*\.\* and CUDA [^.]*\.\*)", text)
        return f"CUDA runtime missing ({m2.group(1) if m2 else 'cuDNN/CUDA'} required)"
    return "session did not accept it"


def create_session(
    path: Path,
    providers: Sequence[str],
    *,
    intra_op_threads: int = 0,
    spin_wait: bool = False,
    trt_cache_dir: Path | None = None,
    trt_fp16: bool = True,
):
    """An onnxruntime session with the preferred providers that are present; logs the one really used."""
    ort = _import_onnxruntime()
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found (set detector.model or EDGE_MODEL; get one with `edge model export` or install.sh)"
        )
    wanted = [PROVIDER_NAMES[p] for p in providers]
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    if not chosen:
        raise ModelError(f"{path}: none of the configured providers {list(providers)} is available ({sorted(available)})")
    opts = _session_options(ort, intra_op_threads, spin_wait)
    provider_args = _provider_args(chosen, trt_cache_dir or path.parent / "trt-cache", trt_fp16)
    try:
        with _captured_native_output() as captured:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=provider_args)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/etc. types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: onnxruntime cannot load the model: {first}") from None
    _log_provider_used(path, wanted, available, session.get_providers(), "".join(captured))
    return session


def _import_onnxruntime() -> ModuleType:
    """onnxruntime, or a ModelError that says which extra to install."""
    try:
        import onnxruntime as ort
    except ImportError:  # the project's extras `cpu` / `gpu` carry it: a bare `pip install` has neither
        raise ModelError("onnxruntime is not installed: pip install 'edge-detector[cpu]' (or [gpu] on x86_64 with "
                         "an NVIDIA driver; on Jetson JetPack's onnxruntime-gpu wheel)") from None
    return ort


def _session_options(ort: ModuleType, intra_op_threads: int, spin_wait: bool):  # noqa: ANN202 - ort.SessionOptions
    """Session options: the thread count (0: onnxruntime's default) and, unless asked for, no busy-waiting."""
    opts = ort.SessionOptions()
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    if not spin_wait:
        # Busy-waiting workers steal the cores that decoding and pre/post-processing need on a small device.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _provider_args(chosen: Sequence[str], trt_cache: Path, trt_fp16: bool) -> list[object]:
    """The `providers` argument of InferenceSession: TensorRT with its engine and timing caches (the folder is
    created), the others by name."""
    provider_args: list[object] = []
    for p in chosen:
        if p == "TensorrtExecutionProvider":
            cache = str(trt_cache)
            provider_args.append(
                (p, {"trt_fp16_enable": trt_fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                     "trt_timing_cache_enable": True, "trt_timing_cache_path": cache})
            )
            Path(cache).mkdir(parents=True, exist_ok=True)
        else:
            provider_args.append(p)
    return provider_args


def _log_provider_used(path: Path, wanted: Sequence[str], available: set[str], got: Sequence[str], native: str) -> None:
    """Log the provider the session really uses; a warning names each preferred one skipped and why."""
    used = got[0]
    skipped = []
    for p in wanted:
        if p == used:
            break
        if p not in available:
            skipped.append(f"{_SHORT[p]}: not in this onnxruntime build")
        elif p not in got:
            skipped.append(f"{_SHORT[p]}: {_reason(p, native)}")
    if skipped:
        log.warning("detector using %s for %s; preferred providers unavailable: %s", _SHORT.get(used, used), path.name, "; ".join(skipped))
    else:
        log.info("detector using %s for %s", _SHORT.get(used, used), path.name)


def load_model(path: Path, providers: Sequence[str] = ("cpu",), **kwargs) -> tuple[object, ModelInfo]:
    """Session plus validated metadata."""
    session = create_session(path, providers, **kwargs)
    return session, read_model_info(path, session)
