"""Replay fps against a bare `session.run` loop over the same decoded, letterboxed frames, in one run.

    .venv/bin/python bench/replay_fps.py [--model M] [--video V] [--frames N] [--threads T] [--fps F]

Prints both rates, their ratio (target ≥ 1.0) and p50/p99 of the per-frame time spent outside session.run
(target p99 ≤ 10 ms). The two are interleaved (ref, replay, ref, replay, …) and the median of each is
reported, because this machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from edge.app import run_replay
from edge.config import Config, load_config
from edge.detect import Detector
from edge.sources import open_source

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def decoded_letterboxed(cfg: Config, detector: Detector, n: int) -> list[np.ndarray]:
    """The frames replay will analyse, decoded and letterboxed once, outside any timing."""
    source = open_source(cfg.source)
    tensors = []
    try:
        for frame in source.frames(threading.Event()):
            tensors.append(detector.preprocess(frame.image)[0])
            if len(tensors) == n:
                break
    finally:
        source.close()
    return tensors


def bare_loop(detector: Detector, tensors: list[np.ndarray]) -> float:
    """Frames per second of nothing but session.run."""
    session, name = detector.session, detector.info.input_name
    outputs = [session.get_outputs()[0].name]
    start = time.perf_counter()
    for t in tensors:
        session.run(outputs, {name: t})
    return len(tensors) / (time.perf_counter() - start)


def replay(cfg: Config, detector: Detector, n: int) -> tuple[float, list[float], list[float]]:
    result = run_replay(cfg, lambda events: None, detector=detector, limit=n)
    return result.stats.fps, result.stats.overhead_ms, result.stats.overhead_cpu_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DATA / "models" / "yolov8n-untrained.onnx"))
    ap.add_argument("--video", default=str(DATA / "video" / "stop_sign_approach.mp4"))
    ap.add_argument("--frames", type=int, default=40, help="analysed frames per timed run")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (both sides)")
    ap.add_argument("--fps", type=float, default=5.0, help="replay sampling rate")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queue", type=int, default=8, help="frames queued between capture and inference")
    args = ap.parse_args()

    cfg = load_config(None, env={}, overrides={
        "detector.model": args.model, "detector.providers": ["cpu"], "detector.intra_op_threads": args.threads,
        "source.uri": args.video, "source.inference_fps": args.fps, "vehicle.session_id": "bench",
        "source.queue_size": args.queue,
    })
    detector = Detector(cfg.detector, all_classes=True)
    detector.warmup(3)
    tensors = decoded_letterboxed(cfg, detector, args.frames)
    n = len(tensors)
    refs, reps, overhead, overhead_cpu = [], [], [], []
    for _ in range(args.rounds):
        refs.append(bare_loop(detector, tensors))
        fps, ms, cpu_ms = replay(cfg, detector, n)
        reps.append(fps)
        overhead.extend(ms)
        overhead_cpu.extend(cpu_ms)
    ref, rep = statistics.median(refs), statistics.median(reps)
    p50, p99 = np.percentile(overhead, [50, 99])
    c50, c99 = np.percentile(overhead_cpu, [50, 99])
    print(f"model {Path(args.model).name}, video {Path(args.video).name}, {n} frames at {args.fps:g} fps, "
          f"{args.threads} intra-op threads, {args.rounds} interleaved rounds (median)")
    print(f"bare session.run loop : {ref:6.2f} fps   (runs: {', '.join(f'{v:.2f}' for v in refs)})")
    print(f"edge replay           : {rep:6.2f} fps   (runs: {', '.join(f'{v:.2f}' for v in reps)})")
    print(f"ratio replay / bare   : {rep / ref:6.3f}   (target >= 1.0)")
    print(f"per-frame time outside session.run: p50 {p50:.2f} ms, p99 {p99:.2f} ms wall   (target p99 <= 10 ms)")
    print(f"                      of which CPU: p50 {c50:.2f} ms, p99 {c99:.2f} ms (the rest is waiting for a core)")


if __name__ == "__main__":
    main()
