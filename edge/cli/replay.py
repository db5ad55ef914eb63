"""`edge replay` (a recording through the pipeline, with progress and a summary) and `edge detect` (photos)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
import time

from edge.clock import parse_iso_time
from edge.config import ConfigError, load_for_command
from edge.exitcodes import Exit

log = logging.getLogger("edge.cli")


class _Progress:
    """One self-rewriting line on a terminal; a log line every 10 s otherwise."""

    def __init__(self, stream=sys.stderr, enabled: bool = True):  # noqa: ANN001
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and stream.isatty()
        self._last = 0.0

    def __call__(self, stats) -> None:  # noqa: ANN001 - PipelineStats
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and now - self._last < 10:
            return
        self._last = now
        fps = stats.fps
        line = f"frames {stats.frames}"
        total = stats.expected_frames
        if total:
            pct = min(100.0, 100.0 * stats.frames / total)
            eta = (total - stats.frames) / fps if fps > 0 else 0
            line = f"{pct:5.1f}% frames {stats.frames}/{total} ETA {eta:4.0f}s"
        line += f" | {fps:5.2f} fps | detections {stats.detections}"
        if self.tty:
            self.stream.write("\r" + line.ljust(78))
            self.stream.flush()
        else:
            log.info("progress: %s", line)

    def done(self) -> None:
        if self.tty and self._last:  # once, after a line was drawn
            self._last = 0.0
            self.stream.write("\n")
            self.stream.flush()



# --- replay -----------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    import signal

    from edge.app import run_replay
    from edge.delivery import Delivery, SpoolSink
    from edge.signals import stop_on_signals
    from edge.sinks.jsonl import JsonlSink

    track = {"gps__provider": "track"} if args.gps_track else {}
    cfg = load_for_command(args, {
        "source": "source.uri", "fps": "source.inference_fps", "model": "detector.model",
        "session": "vehicle.session_id", "state_dir": "state.state_dir", "gps_track": "gps.track",
    }, **track)
    try:
        start_time = parse_iso_time(args.start_time) if args.start_time else None
    except ValueError as exc:
        raise ConfigError("--start-time", [("source.start_time", f"not an ISO 8601 time: {exc}")]) from None

    progress = _Progress(enabled=not args.quiet)
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        signals = stack.enter_context(  # summary, 143
            stop_on_signals(stop, (signal.SIGTERM,), "stopping: finishing the frames in flight"))
        # a replay must not lose events: the spool blocks while it has no room, for a bounded time (a disk that
        # stays full ends the replay); --out writes a file instead
        delivery = None if args.out else stack.enter_context(Delivery.start(cfg, when_full="block"))
        sink: JsonlSink | SpoolSink
        if delivery is None:
            sink = stack.enter_context(contextlib.closing(JsonlSink(args.out)))
        else:
            sink = delivery.sink(live=False, room_timeout=cfg.spool.block_timeout_s, stop=stop)
        # object records: to their file, else beside the events in the spool; a file-only run without the option
        # only counts them
        objects = stack.enter_context(contextlib.closing(JsonlSink(args.objects_out))) if args.objects_out else None
        object_sink = objects.write if objects is not None else None if delivery is None else sink.write_objects
        stack.callback(progress.done)
        result = run_replay(
            cfg, sink.write, limit=args.limit, start_time=start_time, gps_offset=args.gps_offset, stop=stop,
            on_tick=progress, all_classes=args.all_classes, objects=object_sink,
        )
        progress.done()
        # a stop asked for is quick: what is not delivered stays in the spool
        drained = True if delivery is None else delivery.finish(0.0 if signals else args.drain_timeout)
    no_room = getattr(sink, "no_room", None)
    if delivery is None:
        tail = [f"  events written: {sink.written} to {'stdout' if args.out == '-' else args.out}"]
    else:
        lost = f", not spooled: {sink.not_spooled} (no room)" if sink.not_spooled else ""
        if sink.objects_not_spooled:
            lost += f"; object records not spooled: {sink.objects_not_spooled}"
        tail = [f"  events spooled: {sink.written - sink.objects_written}{lost}", *delivery.report()]
    tail.insert(0, _objects_line(result.stats, args.objects_out, spooled=delivery is not None))
    stopped = f"stopped by {signal.Signals(signals[0]).name}" if signals else "stopped: no room" if no_room else None
    _print_summary(result, tail, stopped=stopped)
    if signals:
        return Exit.for_signal(signals[0])
    if no_room:
        log.error("replay stopped: %s", no_room)
        return Exit.FAILED
    return Exit.OK if drained else Exit.FAILED


def _objects_line(stats, objects_out: str | None, *, spooled: bool) -> str:  # noqa: ANN001 - PipelineStats
    where = ("stdout" if objects_out == "-" else objects_out) if objects_out else "the spool" if spooled else None
    to = f" to {where}" if where else " (not written: give --objects-out FILE)"
    return f"  objects: {stats.objects}, located {stats.objects_located}{to}"


def _print_summary(result, tail: list[str], stopped: str | None = None) -> None:  # noqa: ANN001
    st = result.stats
    p50, p99 = st.percentiles(st.overhead_ms)
    i50, _ = st.percentiles(st.inference_ms)
    classes = ", ".join(f"{k}: {v}" for k, v in sorted(st.by_class.items())) or "none"
    src = result.source_stats
    lines = [
        f"replay of {result.source_name} {stopped or 'done'}: session {result.session_id}",
        f"  frames {st.frames} in {st.elapsed:.1f} s ({st.fps:.2f} fps), frames with detections {st.frames_with_detections}",
        f"  detections {st.detections} ({classes})",
        f"  inference p50 {i50:.1f} ms; overhead outside session.run p50 {p50:.1f} ms, p99 {p99:.1f} ms",
    ]
    if stopped and st.expected_frames:
        lines.append(f"  frames not analysed: {max(0, st.expected_frames - st.frames)} of {st.expected_frames}; "
                     "replay again to analyse all (same detection ids: consumers deduplicate)")
    corrupt = getattr(src, "corrupt_frames", 0)
    if corrupt:
        lines.append(f"  corrupt frames skipped: {corrupt}")
    print("\n".join(lines + tail), file=sys.stderr)


# --- detect -----------------------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from edge.app import open_detector

    cfg = load_for_command(args, {"model": "detector.model", "conf": "detector.confidence"})
    detector = open_detector(cfg, all_classes=args.all_classes)
    status = Exit.OK
    for name in args.images:
        image = cv2.imread(name, cv2.IMREAD_COLOR)
        if image is None:
            print(f"{name}: cannot read as an image (missing, unreadable or not an image)", file=sys.stderr)
            status = Exit.BAD_INPUT
            continue
        det = detector.detect(image)
        if args.json:
            for i in range(len(det)):
                print(json.dumps({
                    "image": name, "class_id": int(det.class_id[i]), "class_name": det.class_name(i),
                    "confidence": round(float(det.confidence[i]), 4),
                    "xyxy": [round(float(v), 2) for v in det.xyxy[i]],
                }))
        else:
            print(f"{name}: {len(det)} detection(s)")
            for i in range(len(det)):
                x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
                print(f"  {det.class_name(i):<16} {float(det.confidence[i]):.3f}  [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
    return status
