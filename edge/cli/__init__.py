"""Command line: the parser, the dispatch with its exit codes; the commands are in edge.cli.replay and edge.cli.commands."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Sequence

from edge import __version__
from edge.config import ConfigError
from edge.exitcodes import EPILOG, Exit
from edge.logs import setup_logging

log = logging.getLogger("edge.cli")
from edge.cli.args import finite_float, output_file, positive_seconds
from edge.cli.commands import (
    cmd_config_check,
    cmd_demo,
    cmd_gps_inspect,
    cmd_gps_watch,
    cmd_model_export,
    cmd_model_info,
    cmd_queue,
    cmd_run,
    cmd_status,
)
from edge.cli.flush import cmd_queue_flush
from edge.cli.replay import cmd_detect, cmd_replay


def _print_config_error(exc: ConfigError) -> None:
    for key, msg in exc.problems:
        print(f"config error: {exc.origin}: {key}: {msg}", file=sys.stderr)



# --- parser -----------------------------------------------------------------------------------


def _with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", "-c", help="TOML file (default: $EDGE_CONFIG, then /etc/edge-detector/edge.toml)")
    return p


def _add_recording_commands(sub) -> None:  # noqa: ANN001 - argparse's private _SubParsersAction
    """replay, detect."""
    p = _with_config(sub.add_parser("replay", help="run the pipeline over a recording (video file, image folder, URL)"))
    p.add_argument("source", help="video file, image folder, camera index, /dev/videoN, rtsp/http URL")
    p.add_argument("--fps", type=float, help="frames per second to analyse (default: config, INFERENCE_FPS, 5)")
    p.add_argument("--out", type=output_file, help="file-only run: write events as JSON lines to this file "
                   "('-' = stdout) instead of the spool and Kafka")
    p.add_argument("--objects-out", type=output_file, help="write the object records (one per tracked object, "
                   "with where it stands) as JSON lines to this file ('-' = stdout) instead of the spool")
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
    when.add_argument("--gps-offset", type=finite_float, help="the video starts S seconds after the track's first fix")
    p.add_argument("--state-dir", help="state directory (spool, engine cache)")
    p.add_argument("--all-classes", action="store_true", help="emit every class the model knows")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_replay)

    p = _with_config(sub.add_parser("detect", help="print detections for images"))
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="ONNX model (default: config detector.model or EDGE_MODEL)")
    p.add_argument("--conf", type=float, help="confidence threshold (default 0.25)")
    p.add_argument("--all-classes", action="store_true", help="every class, not only stop sign / traffic light")
    p.add_argument("--json", action="store_true", help="one JSON object per detection")
    p.set_defaults(func=cmd_detect)


def _add_service_commands(sub) -> None:  # noqa: ANN001
    """demo, run, status, queue."""
    p = _with_config(sub.add_parser("demo", help="the main job on a sample drive: local broker, spool, flusher, consumer"))
    p.add_argument("sample", help="a recorded drive (video file or image folder)")
    p.add_argument("--model", help="ONNX model (default: config detector.model or EDGE_MODEL)")
    p.add_argument("--fps", type=float, help="frames per second to analyse")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the broker's acks")
    p.set_defaults(func=cmd_demo)

    p = _with_config(sub.add_parser("run", help="run the service (what systemd starts)"))
    p.set_defaults(func=cmd_run)

    p = _with_config(sub.add_parser("status", help="fps, drops, detections, spool, broker and GPS of the running service"))
    p.add_argument("--runtime-dir", help="where the service writes status.json (default: config state.runtime_dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    queue = sub.add_parser("queue", help="inspect and act on the spool (durable local queue)")
    qsub = queue.add_subparsers(dest="queue_cmd", required=True, metavar="ACTION")
    for name, text in (
        ("stats", "depth, bytes, oldest unacked age, dead letters, quarantine"),
        ("peek", "the oldest N pending events"),
        ("dead", "dead letters with the error Kafka gave"),
        ("requeue-dead", "move dead letters back to pending"),
        ("purge-dead", "delete dead letters (needs --yes)"),
    ):
        p = _with_config(qsub.add_parser(name, help=text))
        p.add_argument("--state-dir", help="state directory holding spool.db")
        if name in ("peek", "dead"):
            p.add_argument("n", nargs="?", type=int, default=10)
        if name == "stats":
            p.add_argument("--json", action="store_true")
        if name == "purge-dead":
            p.add_argument("--yes", action="store_true")
        p.set_defaults(func=cmd_queue)
    p = _with_config(qsub.add_parser("flush", help="deliver everything pending to the configured broker, then exit "
                                     "(0: the spool is empty; 1: the broker did not take it all within --timeout)"))
    p.add_argument("--state-dir", help="state directory holding spool.db")
    p.add_argument("--timeout", type=positive_seconds, default=300.0,
                   help="give up after S seconds; what is not delivered stays in the spool (default 300)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_queue_flush)


def _add_tool_commands(sub) -> None:  # noqa: ANN001
    """model, gps, ingest-csv, config."""
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

    gps = sub.add_parser("gps", help="check GPS: live fixes from gpsd, or what a photo or track file yields")
    gsub = gps.add_subparsers(dest="gps_cmd", required=True, metavar="ACTION")
    p = _with_config(gsub.add_parser("watch", help="print live fixes from gpsd (to check the antenna)"))
    p.add_argument("--host", help="gpsd host (default: config gps.gpsd_host)")
    p.add_argument("--port", type=int, help="gpsd port (default: config gps.gpsd_port)")
    p.add_argument("--count", "-n", type=int, help="stop after N reports")
    p.set_defaults(func=cmd_gps_watch)
    p = gsub.add_parser("inspect", help="what the EXIF of an image, or an NMEA/GPX track file, yields")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_gps_inspect)

    from edge.ingest.cli import add_parser as add_ingest_parser

    add_ingest_parser(sub)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    p = cfg.add_parser("check", help="validate a config file (and the environment); print every error with its key")
    p.add_argument("file", nargs="?", help="TOML file (default: $EDGE_CONFIG, then /etc/edge-detector/edge.toml)")
    p.add_argument("--show", action="store_true", help="print the effective configuration (secrets masked)")
    p.set_defaults(func=cmd_config_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Dashcam detector: YOLOv8 ONNX → geotagged stop-sign and traffic-light events → spool → Kafka.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"edge-detector {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default: config log.level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_recording_commands(sub)
    _add_service_commands(sub)
    _add_tool_commands(sub)
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


GC_GEN0_THRESHOLD = 20_000  # CPython's 700 runs the collector every few hundred delivered events


def tune_gc() -> None:
    """Delivery allocates short-lived tuples by the hundred thousand a second (spool rows, records, delivery
    reports) and makes next to no cyclic garbage: with the default gen-0 threshold the collector took about a sixth
    of the flusher's CPU (py-spy, bench/drain_bench.py). What is loaded by now never becomes garbage: frozen."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def _dispatch(argv: Sequence[str] | None) -> int:
    from edge.detect.model import ModelError
    from edge.spool.records import SpoolBusy, SpoolError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "INFO")
    tune_gc()
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
