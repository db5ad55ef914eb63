"""End-to-end live latency of `edge run`: a real-time looped stream in, its events read back from a local broker.

    .venv/bin/python bench/live_latency.py [--duration S] [--fps F] [--model M] [--video V] [--warmup S]

Tansu broker (edge.localkafka) + ffmpeg serving VIDEO in real time (MPEG-TS over HTTP, looped) + `edge run` for
--duration s. Per event after the warm-up: capture → produce (CreateTime − captured_at), inference
(inference_latency_ms), outside inference (the difference); capture → ack from `edge status --json` at the stop.
CPU s per analysed frame of the edge process (/proc) against a bare session.run loop measured here before the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.clock import parse_iso_time
from edge.config import load_config
from edge.config.loading import ENV_OVERRIDES
from edge.localkafka.broker import LocalBroker
from edge.status import read_status

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: the tests' stream and wait helpers
from tests.integration.stream_helpers import FfmpegStreamServer, ffmpeg_path, free_port  # noqa: E402
from tests.support import wait_until  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOPIC = "bench.live"
REF_FRAMES = 30
OUT_P50, OUT_P99, ACK_OVER_INF_P99 = 5.0, 15.0, 25.0  # targets, ms


def reference_cpu_per_run(model: str, video: str) -> tuple[float, int]:
    """Process CPU seconds per bare session.run on letterboxed frames, the daemon's session options; and threads."""
    import itertools
    import threading

    from edge.detect import Detector
    from edge.sources import open_source

    cfg = load_config(None, env={}, overrides={"detector.model": model, "detector.providers": ["cpu"],
                                               "source.uri": video, "vehicle.session_id": "bench"})
    detector = Detector(cfg.detector, all_classes=True)
    source = open_source(cfg.source)
    try:
        frames = itertools.islice(source.frames(threading.Event()), REF_FRAMES)
        tensors = [detector.preprocess(frame.image)[0] for frame in frames]
    finally:
        source.close()
    session, name = detector.session, detector.info.input_name
    outputs = [session.get_outputs()[0].name]
    for t in tensors[:3]:  # warm-up
        session.run(outputs, {name: t})
    start = time.process_time()
    for t in tensors:
        session.run(outputs, {name: t})
    return (time.process_time() - start) / len(tensors), cfg.detector.intra_op_threads


def write_config(tmp: Path, url: str, args: argparse.Namespace, bootstrap: str) -> Path:
    """The config of the run, as top-level dotted keys (JSON's strings, numbers and lists are TOML's)."""
    keys = {"vehicle.session_id": "bench", "source.uri": url, "source.kind": "stream",
            "source.inference_fps": float(args.fps), "detector.model": str(Path(args.model).resolve()),
            "detector.providers": ["cpu"], "state.state_dir": str(tmp / "state"), "state.runtime_dir": str(tmp / "run"),
            "kafka.bootstrap_servers": bootstrap, "kafka.topic": TOPIC, "gps.provider": "none",
            "latency.window_s": float(args.window)}
    path = tmp / "edge.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def edge_cmd(*argv: str) -> list[str]:
    script = Path(sys.executable).parent / "edge"
    return [str(script), *argv] if script.exists() else [sys.executable, "-m", "edge", *argv]


def child_env() -> dict[str, str]:
    """This environment without what would override the config file or make the child think systemd runs it."""
    drop = {*ENV_OVERRIDES, "EDGE_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def edge_status(config: Path) -> dict:
    out = subprocess.run(edge_cmd("status", "--json", "--config", str(config)), check=False,
                         capture_output=True, text=True, env=child_env(), timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"edge status failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2:].split()  # fields[0] is field 3 (state): utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to tell how loaded the shared machine was."""
    jiffies = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def next_snapshot(status_file: Path, edge: subprocess.Popen, timeout: float = 20.0) -> tuple[float, float, dict]:
    """Waits for the daemon's next status.json write; returns edge's and the machine's CPU seconds then, and it.

    Read in this process: an `edge status` child (a Python start-up) on 2 cores delays frames for seconds."""
    def mtime() -> int:  # the daemon replaces the file whole (rename): once there, it stays
        return status_file.stat().st_mtime_ns if status_file.exists() else 0
    before = mtime()
    wait_until(lambda: mtime() != before or edge.poll() is not None, "the next status snapshot", timeout, 0.02)
    if edge.poll() is not None:
        raise RuntimeError(f"edge run exited with status {edge.returncode}")
    return cpu_seconds(edge.pid), machine_busy(), read_status(status_file.parent) or {}


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"pid {proc.pid} did not exit within {timeout:g} s, killing it", file=sys.stderr)
            proc.kill()
            proc.wait(10)
    return None if proc is None else proc.returncode


def live_run(tmp: Path, args: argparse.Namespace, broker: LocalBroker, procs: dict) -> dict:
    """Runs `edge run` on the stream; returns the window's start (wall), CPU, frames and the last status."""
    stream = procs["ffmpeg"] = FfmpegStreamServer(Path(args.video), free_port())
    stream.start()
    config = write_config(tmp, stream.url, args, broker.bootstrap)
    check = subprocess.run(edge_cmd("config", "check", str(config)), check=False, capture_output=True, text=True,
                           env=child_env())
    if check.returncode != 0:
        raise RuntimeError(f"edge config check failed:\n{check.stdout}{check.stderr}")
    status_file = tmp / "run" / "status.json"
    launched = time.monotonic()
    with open(tmp / "edge.log", "wb") as logf:
        edge = procs["edge"] = subprocess.Popen(edge_cmd("run", "--config", str(config)), stdin=subprocess.DEVNULL,
                                                stdout=logf, stderr=subprocess.STDOUT, env=child_env())
    wait_until(lambda: edge.poll() is not None or (read_status(status_file.parent) or {}).get("frames", 0) > 0,
             "the first analysed frame", 90, 0.2)
    if edge.poll() is not None:
        raise RuntimeError(f"edge run exited with status {edge.returncode} at start")
    time.sleep(args.warmup)
    cpu0, busy0, first = next_snapshot(status_file, edge)
    t_start = time.time()
    remaining = launched + args.duration - time.monotonic()
    if remaining < 6:
        raise RuntimeError(f"--duration {args.duration:g} leaves no measuring time after start-up and warm-up")
    time.sleep(remaining - 5)  # the last snapshot comes within STATUS_EVERY_S (5 s)
    cpu1, busy1, last = next_snapshot(status_file, edge)
    window = time.time() - t_start
    if stream.proc is None or stream.proc.poll() is not None:
        print("note: ffmpeg exited during the run: the source reconnected?")
    rc = stop_process(edge)
    final = edge_status(config)  # the snapshot written at the stop: latency and stages over every event
    return {"t_start": t_start, "window": window, "cpu": cpu1 - cpu0, "busy": busy1 - busy0, "final": final, "rc": rc,
            "last": last,
            "frames": last["frames"] - first["frames"], "dropped": last["frames_dropped"] - first["frames_dropped"]}


def consume_all(bootstrap: str, idle_s: float = 3.0, deadline_s: float = 60.0) -> list[tuple[float, dict]]:
    """Every message of TOPIC as (CreateTime in s, parsed value): assigned partitions from offset 0, until idle."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-live", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    out = []
    try:
        parts = sorted(c.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
        c.assign([TopicPartition(TOPIC, p, 0) for p in parts])
        deadline, last_msg = time.monotonic() + deadline_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_msg < idle_s:
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"consumer error: {m.error()}")
                    continue
                last_msg = time.monotonic()
                _, ts = m.timestamp()
                if ts >= 0:
                    out.append((ts / 1000.0, json.loads(m.value())))
    finally:
        c.close()
    return out


def row(label: str, p50: float | None, p99: float | None) -> str:
    return f"| {label} | " + " | ".join("n/a" if v is None else f"{v:.0f} ms" for v in (p50, p99)) + " |"


def verdict(value: float | None, limit: float | None) -> str:
    return "n/a" if value is None or limit is None else ("met" if value <= limit else "NOT met")


def report(events: list[tuple[float, dict]], run: dict, ref_cpu: float, threads: int) -> None:
    kept = [(ts, ev) for ts, ev in events if parse_iso_time(ev["captured_at"]) >= run["t_start"]
            and ev.get("inference_latency_ms") is not None]
    cap = np.array([(ts - parse_iso_time(ev["captured_at"])) * 1000 for ts, ev in kept])
    inf = np.array([float(ev["inference_latency_ms"]) for _, ev in kept])

    def pct(a: np.ndarray) -> tuple[float | None, float | None]:
        return (float(np.percentile(a, 50)), float(np.percentile(a, 99))) if a.size else (None, None)

    (c50, c99), (i50, i99), (o50, o99) = pct(cap), pct(inf), pct(cap - inf)
    last, final = run["last"], run["final"]  # stages: the window before the stop; final: counts since start
    total = (last.get("stages") or {}).get("total") or {}
    a50, a99 = total.get("p50_ms"), total.get("p99_ms")
    print("\n| | p50 | p99 |\n|---|---|---|")
    print(row("capture → produce", c50, c99))
    print(row("inference (the event's field)", i50, i99))
    print(row("everything outside inference", o50, o99))
    print(row(f"capture → ack (edge status, the last {run['window_s']:g} s)", a50, a99))
    stages = last.get("stages")
    if isinstance(stages, dict):
        for name, s in stages.items():
            s = s if isinstance(s, dict) else {}
            if name != "total":
                print(row(f"stage {name} (edge status, n={s.get('count', '?')})", s.get("p50_ms"), s.get("p99_ms")))
    else:
        print("(edge status has no `stages` yet)")
    frames = run["frames"]
    print(f"\nevents: {len(events)} read back, {len(kept)} after the warm-up")
    print(f"frames analysed in the {run['window']:.1f} s window: {frames}; dropped in the window: {run['dropped']} "
          f"(total since start: {final['frames']} analysed, {final['frames_dropped']} dropped)")
    print(f"edge run exit status: {run['rc']}; CPU in the window: edge run {run['cpu'] / run['window']:.2f} cores, "
          f"whole machine {run['busy'] / run['window']:.2f} of {os.cpu_count()} busy (other load skews the figures)")
    if frames > 0:
        edge_cpu = run["cpu"] / frames
        print(f"CPU per analysed frame, whole edge run process: {edge_cpu * 1000:.1f} ms")
        print(f"CPU per bare session.run (intra_op_threads={threads}): {ref_cpu * 1000:.1f} ms")
        print(f"CPU s per analysed frame outside session.run: {edge_cpu - ref_cpu:.4f} s")
    print(f"\ntargets:\n  outside inference p50 ≤ {OUT_P50:g} ms: {verdict(o50, OUT_P50)}")
    print(f"  outside inference p99 ≤ {OUT_P99:g} ms: {verdict(o99, OUT_P99)}")
    print(f"  capture → ack p99 ≤ inference p99 + {ACK_OVER_INF_P99:g} ms: "
          f"{verdict(a99, None if i99 is None else i99 + ACK_OVER_INF_P99)}")


def read_log(tmp: Path) -> list[str]:
    try:
        return (tmp / "edge.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


def log_warnings(tmp: Path, n: int = 10) -> None:
    """The distinct WARNING / ERROR lines of edge run's log (timestamps cut), with how often each came."""
    seen: dict[str, int] = {}
    for parts in (line.split(None, 2) for line in read_log(tmp)):  # date, time, "LEVEL name: message"
        if len(parts) == 3 and parts[2].startswith(("WARNING", "ERROR", "CRITICAL")):
            seen[parts[2]] = seen.get(parts[2], 0) + 1
    print(f"\nedge run log: {len(read_log(tmp))} lines, {sum(seen.values())} warnings/errors")
    for text, count in list(seen.items())[:n]:
        print(f"  {count}× {text[:200]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds edge run runs (default 60)")
    ap.add_argument("--fps", type=float, default=5.0, help="source.inference_fps (default 5)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after the first frame left out (default 5)")
    ap.add_argument("--window", type=float, default=30.0, help="latency.window_s: edge's stage percentiles cover "
                    "this many seconds before the last snapshot (default 30: after the warm-up)")
    ap.add_argument("--model", default=str(DATA / "models" / "yolov8n.onnx"))
    ap.add_argument("--video", default=str(DATA / "video" / "stop_sign_approach.mp4"))
    args = ap.parse_args()
    if args.duration < args.warmup + 20:  # start-up (model load) and the 5 s status cadence come on top
        ap.error(f"--duration must be at least --warmup + 20 s ({args.warmup + 20:g})")
    if ffmpeg_path() is None:
        print("ffmpeg not found: this benchmark needs it to serve a live stream (apt-get install ffmpeg)",
              file=sys.stderr)
        return 2
    print(f"reference: bare session.run on {REF_FRAMES} letterboxed frames of {args.video} ...", flush=True)
    ref_cpu, threads = reference_cpu_per_run(args.model, args.video)
    tmp = Path(tempfile.mkdtemp(prefix="edge-live-bench-"))
    procs: dict = {"ffmpeg": None, "edge": None}  # an FfmpegStreamServer, the `edge run` process
    broker = LocalBroker(tmp / "broker")
    try:
        broker.start()
        broker.create_topic(TOPIC, partitions=3)
        print(f"live: edge run for {args.duration:g} s at {args.fps:g} fps, broker {broker.bootstrap} ...", flush=True)
        try:
            run = live_run(tmp, args, broker, procs)
            run["window_s"] = args.window
        except (RuntimeError, AssertionError) as exc:  # AssertionError: a wait_until timed out
            run = {"rc": None, "why": str(exc)}
        if run["rc"] != 0:
            why, tail = run.get("why") or f"exited with status {run['rc']}", "\n".join(read_log(tmp)[-40:])
            print(f"failed: {why}\n--- edge run log tail ---\n{tail}", file=sys.stderr)
            if "why" in run:
                return 1
        report(consume_all(broker.bootstrap), run, ref_cpu, threads)
        log_warnings(tmp)
        return 0
    finally:
        stop_process(procs["edge"], signal.SIGKILL, 10)
        if procs["ffmpeg"] is not None:
            procs["ffmpeg"].kill()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
