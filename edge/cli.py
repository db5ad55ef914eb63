"""Command line: replay | detect | model info/export | config check (and the commands later issues add)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edge import __version__
from edge.clock import iso_utc, parse_iso_time
from edge.config import ConfigError, find_config_file, load_config, load_for_command
from edge.exitcodes import EPILOG, Exit
from edge.logs import setup_logging

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
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _print_config_error(exc: ConfigError) -> None:
    for key, msg in exc.problems:
        print(f"config error: {exc.origin}: {key}: {msg}", file=sys.stderr)


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
    with stop_on_signals(stop, (signal.SIGTERM,), "stopping: finishing the frames in flight") as signals:  # summary, 143
        delivery = None if args.out else Delivery.start(cfg, when_full="block")  # a replay must not lose events
        if delivery is None:
            sink = JsonlSink(args.out)
        else:  # blocks while the spool has no room, for a bounded time: a disk that stays full ends the replay
            sink = SpoolSink(delivery.spool, live=False, room_timeout=cfg.spool.block_timeout_s, stop=stop)
        drained = True
        try:
            result = run_replay(
                cfg, sink.write, limit=args.limit, start_time=start_time, gps_offset=args.gps_offset, stop=stop,
                on_tick=progress, all_classes=args.all_classes,
            )
        finally:
            progress.done()
            if delivery is None:
                sink.close()
            else:  # a stop asked for is quick: what is not delivered stays in the spool
                drained = delivery.finish(0.0 if signals else args.drain_timeout)
    no_room = getattr(sink, "no_room", None)
    if delivery is None:
        tail = [f"  events written: {sink.written} to {'stdout' if args.out == '-' else args.out}"]
    else:
        lost = f", not spooled: {sink.not_spooled} (no room)" if sink.not_spooled else ""
        tail = [f"  events spooled: {sink.written}{lost}", *delivery.report()]
    stopped = f"stopped by {signal.Signals(signals[0]).name}" if signals else "stopped: no room" if no_room else None
    _print_summary(result, tail, stopped=stopped)
    if signals:
        return Exit.for_signal(signals[0])
    if no_room:
        log.error("replay stopped: %s", no_room)
        return Exit.FAILED
    return Exit.OK if drained else Exit.FAILED


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


# --- model ------------------------------------------------------------------------------------


def cmd_model_info(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from edge.detect import load_model, model_summary

    _session, info = load_model(Path(args.path), ("cpu",))
    summary = model_summary(info)
    summary["providers_available"] = ort.get_available_providers()
    summary["onnxruntime"] = ort.__version__
    if args.json:
        print(json.dumps(summary, indent=2))
        return Exit.OK
    print(f"model       {summary['path']}")
    print(f"description {summary['description']}")
    print(f"input       {info.input_name} (1, 3, {info.imgsz[0]}, {info.imgsz[1]}) {info.input_dtype}")
    print(f"output      {tuple(info.output_shape)}")
    print(f"stride      {info.stride}")
    print(f"classes     {info.num_classes}: " + ", ".join(f"{i}={n}" for i, n in enumerate(info.names[:20]))
          + (" …" if info.num_classes > 20 else ""))
    print(f"providers   {', '.join(summary['providers_available'])} (onnxruntime {ort.__version__}; "
          "listed is not the same as usable: the detector logs the one it really got)")
    return Exit.OK


def cmd_model_export(args: argparse.Namespace) -> int:
    from edge.detect.export import ExportError, export_onnx

    try:
        out = export_onnx(args.weights, imgsz=args.imgsz, out_dir=Path(args.out_dir) if args.out_dir else None)
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return Exit.BAD_INPUT
    print(out)
    return Exit.OK


# --- config -----------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    path = find_config_file(args.file)
    cfg = load_config(path)  # ConfigError is reported by main()
    print(f"{path or '<defaults>'}: OK")
    if args.show:
        shown = cfg.model_dump(mode="json")
        print(json.dumps(shown, indent=2))
    return Exit.OK



# --- queue ------------------------------------------------------------------------------------


def _open_spool_for_cli(args: argparse.Namespace, *, write: bool = False):  # noqa: ANN202
    """Writers (requeue-dead, purge-dead) own the spool like any writer; the rest only read it (SQLite mode=ro):
    no lock, never a move or salvage, nothing written, so that they work beside the running service."""
    from edge.delivery import open_spool
    from edge.spool.reader import SpoolReader

    cfg = load_for_command(args, {"state_dir": "state.state_dir"})
    if not cfg.spool_path().exists():
        print(f"no spool at {cfg.spool_path()} (nothing recorded yet, or another state directory)", file=sys.stderr)
        return None
    if write:
        return open_spool(cfg)
    return SpoolReader.open(cfg.spool_path(), max_bytes=cfg.spool.max_bytes, when_full=cfg.spool.when_full)


def _record_line(rec) -> str:  # noqa: ANN001
    age = time.time() - rec.enqueued_at
    try:
        body = json.loads(rec.value)
        what = f"{body.get('class_name')} {body.get('confidence')} frame {body.get('frame_number')}"
    except ValueError:
        what = f"{len(rec.value)} bytes (not JSON)"
    return f"#{rec.seq} {rec.detection_id} key={rec.key} age {age:.0f}s attempts {rec.attempts}: {what}"


def cmd_queue(args: argparse.Namespace) -> int:
    action = args.queue_cmd
    if action == "purge-dead" and not args.yes:
        print("purge-dead deletes dead letters for good: add --yes", file=sys.stderr)
        return Exit.USAGE
    spool = _open_spool_for_cli(args, write=action in ("requeue-dead", "purge-dead"))
    if spool is None:
        return Exit.FAILED
    try:
        if action == "stats":
            st = spool.stats()
            data = {k: getattr(st, k) for k in st.__dataclass_fields__}
            if args.json:
                print(json.dumps(data))
            else:
                age = "-" if st.oldest_age_s is None else f"{st.oldest_age_s:.0f} s"
                print(f"depth {st.depth} events, {st.bytes} bytes of {st.max_bytes} ({st.policy} when full)")
                print(f"oldest unacked {age}; dead letters {st.dead}; quarantined {st.quarantined}")
                print(f"evicted {st.evicted_total}; appended {st.appended_total}; acked {st.acked_total}"
                      + (f"; LOST {st.lost_total} (WAL lost or damaged)" if st.lost_total else "")
                      + ("; DISK FULL" if st.disk_full else ""))
        elif action == "peek":
            for rec in spool.peek(args.n):
                print(_record_line(rec))
        elif action == "dead":
            for rec, error, when in spool.dead_letters(args.n):
                print(f"{_record_line(rec)}\n    error: {error} (at {iso_utc(when, 'seconds')})")
        elif action == "requeue-dead":
            print(f"requeued {spool.requeue_dead()} dead letters")
        elif action == "purge-dead":
            print(f"purged {spool.purge_dead()} dead letters")
    finally:
        spool.close()
    return Exit.OK


# --- demo / run / status ------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    cfg = load_for_command(args, {"sample": "source.uri", "model": "detector.model", "fps": "source.inference_fps"})
    return run_demo(cfg, drain_timeout=args.drain_timeout)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.app import session_for
    from edge.daemon import Daemon
    from edge.native import capture_native_output, quiet_native_libraries
    from edge.service import setup_logging as service_logging

    path = find_config_file(args.config)
    cfg = load_config(path)
    level = args.log_level or cfg.log.level
    # the session is known before the first record, so that every record carries SESSION_ID
    session_id = session_for(cfg, cfg.source.uri, None)
    native = capture_native_output()  # before the handler exists: it must write to the rebound sys.stderr
    try:
        context = service_logging(level, vehicle_id=cfg.vehicle.vehicle_id, session_id=session_id)
        quiet_native_libraries(level)
        return Daemon(cfg, path, context, session_id=session_id).run()
    finally:
        if native is not None:
            native.close()


def cmd_status(args: argparse.Namespace) -> int:
    from edge.status import format_status, read_status

    cfg = load_for_command(args, {"runtime_dir": "state.runtime_dir"})
    data = read_status(Path(cfg.state.runtime_dir))
    if data is None:
        print(f"no status in {cfg.state.runtime_dir}: is edge-detector running? (systemctl status edge-detector)",
              file=sys.stderr)
        return Exit.FAILED
    print(json.dumps(data, indent=2) if args.json else format_status(data))
    return Exit.OK


# --- gps --------------------------------------------------------------------------------------


def cmd_gps_watch(args: argparse.Namespace) -> int:
    from edge.gps.cli import watch

    cfg = load_for_command(args, {"host": "gps.gpsd_host", "port": "gps.gpsd_port"})
    stop = threading.Event()
    try:
        return watch(cfg.gps, sys.stdout, stop, count=args.count)
    except KeyboardInterrupt:
        stop.set()
        return Exit.OK


def cmd_gps_inspect(args: argparse.Namespace) -> int:
    from edge.gps.cli import inspect

    status = Exit.OK
    for path in args.files:
        rc = inspect(path, sys.stdout)
        status = max(status, {0: Exit.OK, 1: Exit.FAILED}.get(rc, Exit.BAD_INPUT))
    return status

# --- parser -----------------------------------------------------------------------------------


def _finite_float(text: str) -> float:
    """argparse type: a finite number (nan or inf is no offset; a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _output_file(text: str) -> str:
    """argparse type for --out: '-', or a file name the file system can hold in a folder that exists, checked
    before the model loads (a usage error, exit 2, not a failure after the run)."""
    if text == "-":
        return text
    path = Path(text)
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255  # what Linux file systems allow
    size = len(os.fsencode(path.name))
    if size > limit:  # before any stat of the path itself, which would fail with ENAMETOOLONG
        raise argparse.ArgumentTypeError(f"file name of {size} bytes: the file system allows at most {limit}")
    try:
        if not text or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is not a file name")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: folder {path.parent} does not exist")
    except OSError as exc:  # a folder name too long, a path too long
        raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Dashcam detector: YOLOv8 ONNX → geotagged stop-sign and traffic-light events → spool → Kafka.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"edge-detector {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default: config log.level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", help="TOML file (default: $EDGE_CONFIG, then /etc/edge-detector/edge.toml)")
        return p

    p = with_config(sub.add_parser("replay", help="run the pipeline over a recording (video file, image folder, URL)"))
    p.add_argument("source", help="video file, image folder, camera index, /dev/videoN, rtsp/http URL")
    p.add_argument("--fps", type=float, help="frames per second to analyse (default: config, INFERENCE_FPS, 5)")
    p.add_argument("--out", type=_output_file, help="file-only run: write events as JSON lines to this file "
                   "('-' = stdout) instead of the spool and Kafka")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds to wait at the end for Kafka to acknowledge spooled events (default 60)")
    p.add_argument("--limit", type=int, help="stop after N analysed frames")
    p.add_argument("--model", help="ONNX model (default: config detector.model or EDGE_MODEL)")
    p.add_argument("--session", help="session id (default: derived from the recording, so ids repeat on replay)")
    # two ways to place the video on the track's clock: one at a time
    when = p.add_mutually_exclusive_group()
    when.add_argument("--start-time", help="ISO 8601 time the recording started (default: the container's creation "
                      "time, else the file's modification time)")
    p.add_argument("--gps-track", help="NMEA 0183 or GPX log of the drive: positions interpolated at each frame")
    when.add_argument("--gps-offset", type=_finite_float, help="the video starts S seconds after the track's first fix")
    p.add_argument("--state-dir", help="state directory (spool, engine cache)")
    p.add_argument("--all-classes", action="store_true", help="emit every class the model knows")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_replay)

    p = with_config(sub.add_parser("detect", help="print detections for images"))
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="ONNX model (default: config detector.model or EDGE_MODEL)")
    p.add_argument("--conf", type=float, help="confidence threshold (default 0.25)")
    p.add_argument("--all-classes", action="store_true", help="every class, not only stop sign / traffic light")
    p.add_argument("--json", action="store_true", help="one JSON object per detection")
    p.set_defaults(func=cmd_detect)

    model = sub.add_parser("model", help="inspect or export models").add_subparsers(dest="model_cmd", required=True, metavar="ACTION")
    p = model.add_parser("info", help="class names, input/output shapes, providers available")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_info)
    p = model.add_parser("export", help="export Ultralytics weights (.pt) to ONNX with metadata (needs the 'export' extra)")
    p.add_argument("weights", help="e.g. yolov8n.pt (downloaded by ultralytics when given by name)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--out-dir", help="directory for the .onnx (default: next to the weights)")
    p.set_defaults(func=cmd_model_export)

    p = with_config(sub.add_parser("demo", help="the main job on a sample drive: local broker, spool, flusher, consumer"))
    p.add_argument("sample", help="a recorded drive (video file or image folder)")
    p.add_argument("--model", help="ONNX model (default: config detector.model or EDGE_MODEL)")
    p.add_argument("--fps", type=float, help="frames per second to analyse")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the broker's acks")
    p.set_defaults(func=cmd_demo)

    p = with_config(sub.add_parser("run", help="run the service (what systemd starts)"))
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("status", help="fps, drops, detections, spool, broker and GPS of the running service"))
    p.add_argument("--runtime-dir", help="where the service writes status.json (default: config state.runtime_dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    gps = sub.add_parser("gps", help="check GPS: live fixes from gpsd, or what a photo or track file yields")
    gsub = gps.add_subparsers(dest="gps_cmd", required=True, metavar="ACTION")
    p = with_config(gsub.add_parser("watch", help="print live fixes from gpsd (to check the antenna)"))
    p.add_argument("--host", help="gpsd host (default: config gps.gpsd_host)")
    p.add_argument("--port", type=int, help="gpsd port (default: config gps.gpsd_port)")
    p.add_argument("--count", "-n", type=int, help="stop after N reports")
    p.set_defaults(func=cmd_gps_watch)
    p = gsub.add_parser("inspect", help="what the EXIF of an image, or an NMEA/GPX track file, yields")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_gps_inspect)

    from edge.ingest.cli import add_parser as add_ingest_parser

    add_ingest_parser(sub)

    queue = sub.add_parser("queue", help="inspect and act on the spool (durable local queue)")
    qsub = queue.add_subparsers(dest="queue_cmd", required=True, metavar="ACTION")
    for name, text in (
        ("stats", "depth, bytes, oldest unacked age, dead letters, quarantine"),
        ("peek", "the oldest N pending events"),
        ("dead", "dead letters with the error Kafka gave"),
        ("requeue-dead", "move dead letters back to pending"),
        ("purge-dead", "delete dead letters (needs --yes)"),
    ):
        p = with_config(qsub.add_parser(name, help=text))
        p.add_argument("--state-dir", help="state directory holding spool.db")
        if name in ("peek", "dead"):
            p.add_argument("n", nargs="?", type=int, default=10)
        if name == "stats":
            p.add_argument("--json", action="store_true")
        if name == "purge-dead":
            p.add_argument("--yes", action="store_true")
        p.set_defaults(func=cmd_queue)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    p = cfg.add_parser("check", help="validate a config file (and the environment); print every error with its key")
    p.add_argument("file", nargs="?", help="TOML file (default: $EDGE_CONFIG, then /etc/edge-detector/edge.toml)")
    p.add_argument("--show", action="store_true", help="print the effective configuration (secrets masked)")
    p.set_defaults(func=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every command, with its exit code; a reader that goes away (`| head`) ends it quietly with Exit.BROKEN_PIPE."""
    try:
        try:
            return _dispatch(argv)
        finally:
            # flushed here, inside the try, so that a closed pipe surfaces now and not in the interpreter's
            # final flush, where it is a traceback and exit 120 (--help and --version exit from parse_args;
            # logging swallows its own write errors and leaves them in stderr's buffer)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(ValueError):  # a stream a command closed has nothing left to write
                    stream.flush()
    except BrokenPipeError:
        _discard_unwritable_output()
        return Exit.BROKEN_PIPE


def _dispatch(argv: Sequence[str] | None) -> int:
    from edge.detect.model import ModelError
    from edge.spool.records import SpoolBusy, SpoolError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "INFO")
    try:
        return args.func(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return Exit.USAGE
    except ModelError as exc:
        log.error("%s", exc)
        return Exit.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        raise  # not a failure of the command: main() ends it quietly
    except SpoolError as exc:  # one line, before the generic clause (whose imports may fail on EMFILE)
        if isinstance(exc, SpoolBusy):  # another process owns the state dir: run this one later, or elsewhere
            log.error("%s", exc)
            return Exit.USAGE
        log.error("failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return Exit.FAILED
    except Exception as exc:  # noqa: BLE001 - the last boundary: a clear line, not a traceback
        from edge.gps import TrackError
        from edge.sources import SourceError

        if isinstance(exc, (SourceError, TrackError)):
            log.error("%s", exc)
            return Exit.BAD_INPUT
        log.error("failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return Exit.FAILED


def _discard_unwritable_output() -> None:
    """Points stdout and stderr, where what is still buffered cannot be written, at /dev/null.

    The recipe of the signal module's "Note on SIGPIPE": the interpreter flushes both at exit and would
    raise again. SIGPIPE itself stays ignored (the service writes to sockets)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                with contextlib.suppress(OSError, ValueError):  # a stream without a descriptor (tests)
                    os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
