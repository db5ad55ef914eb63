"""The other commands: model, config check, queue, demo, run (the service), status, gps."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from edge.clock import iso_utc
from edge.config import find_config_file, load_config, load_for_command
from edge.exitcodes import Exit

log = logging.getLogger("edge.cli")


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
    from edge import logs
    from edge.app import session_for
    from edge.daemon import Daemon
    from edge.native import capture_native_output, quiet_native_libraries
    from edge.signals import service_signals

    path = find_config_file(args.config)
    cfg = load_config(path)
    level = args.log_level or cfg.log.level
    # the session is known before the first record, so that every record carries SESSION_ID
    session_id = session_for(cfg, cfg.source.uri, None)
    native = capture_native_output()  # before the handler exists: it must write to the rebound sys.stderr
    try:
        context = logs.setup_logging(level, service=True, vehicle_id=cfg.vehicle.vehicle_id, session_id=session_id)
        quiet_native_libraries(level)
        stop, reload = threading.Event(), threading.Event()
        with service_signals(stop, reload):
            return Daemon(cfg, path, context, session_id=session_id).run(stop, reload)
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

    # gpsd whatever provider the file names: its gpsd settings (if any) apply, the other provider's are left out
    cfg = load_for_command(args, {"host": "gps.gpsd_host", "port": "gps.gpsd_port"}, gps__provider="gpsd")
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
