"""`edge ingest-csv`: perception-layer CSV files → events → spool → Kafka, resumable; or a dry run."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from edge.cli.args import output_file, positive_seconds
from edge.clock import parse_iso_time
from edge.config import Config, load_for_command
from edge.exitcodes import Exit
from edge.ingest.run import FileReport, Ingest, Options
from edge.signals import stop_on_signals

log = logging.getLogger("edge.ingest")

# Straight to Kafka, librdkafka holds a copy of each chunk's events until they are acknowledged: half the dry run's
# chunk keeps the peak RSS at ~135 MB instead of ~190 MB (bench/csv_bench.py e2e), at the same rate.
DIRECT_CHUNK_BYTES = 512 << 10


DESCRIPTION = """\
Ingest perception-layer CSV files (header required; columns frame_number, timestamp_sec, u, v,
confidence, class_name and optionally vehicle_lat, vehicle_lon, heading, in any order; other columns
are ignored; .gz files accepted). Every valid row becomes a detection event (same schema as live
events) that is produced to Kafka in chunks, each acknowledged before the run's checkpoint moves past
it (the CSV file is the durable copy); what the broker refuses or does not acknowledge within
--stall-timeout is committed to the spool and sent by the flusher. A bad row goes to the
rejects file with its line number and reason and never stops the run. Files of any size are streamed
with bounded memory (there is no mode that loads a whole file). A run that is interrupted or killed
continues where it stopped when started again with the same arguments, and a file that is done is
skipped; ids are derived from session, file name and line, so they are the same every time.
Without KAFKA_BOOTSTRAP_SERVERS (kafka.bootstrap_servers) events are only spooled: the daemon's
flusher sends them later."""


def add_parser(subparsers) -> argparse.ArgumentParser:  # noqa: ANN001 - argparse's private _SubParsersAction
    """Register `ingest-csv` on the CLI's subcommands."""
    p = subparsers.add_parser(
        "ingest-csv", help="ingest perception-layer CSV files into Kafka (resumable; the spool holds what it refuses)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV file (.csv or gzip-compressed)")
    p.add_argument("--config", "-c", help="TOML file (default: $EDGE_CONFIG, then /etc/edge-detector/edge.toml)")
    p.add_argument("--vehicle", help="vehicle id (default: config vehicle.vehicle_id or VEHICLE_ID)")
    p.add_argument("--session", help="session id (default: YYYYMMDD-<6 hex> derived from each file, so ids repeat)")
    p.add_argument("--start-time", help="ISO 8601 time of timestamp_sec 0, for captured_at (default: file modification time)")
    p.add_argument("--dry-run", action="store_true", help="parse, validate, enrich and serialise; send nothing, no checkpoint")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--samples", type=int, default=3, metavar="N", help="dry run: print N sample events (default 3)")
    group.add_argument("--full", action="store_true", help="dry run: print every event as a JSON line on stdout")
    p.add_argument("--rejects", metavar="PATH", help="CSV of rejected rows (default: FILE.rejects.csv beside each input)")
    p.add_argument("--state-dir", help="state directory: spool and ingest progress (default: config state.state_dir)")
    p.add_argument("--force", action="store_true", help="ingest again files already done (same ids: no new events downstream)")
    p.add_argument("--drain-timeout", type=float, default=120.0, metavar="S",
                   help="with Kafka: wait up to S seconds for every event to be acknowledged (default 120)")
    p.add_argument("--stall-timeout", type=positive_seconds, default=10.0, metavar="S",
                   help="with Kafka: when the broker acknowledges nothing for S seconds, the rest goes through the "
                        "spool and the flusher (default 10)")
    p.add_argument("--objects-out", type=output_file, metavar="FILE", help="write the object records (one per "
                   "tracked object, with where it stands) as JSON lines to FILE ('-' = stdout) instead of the spool; "
                   "also with --dry-run")
    p.add_argument("--workers", type=int, default=2, help="conversion threads (default 2)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_ingest_csv)
    return p


class Progress:
    """rows/s on one self-rewriting stderr line on a terminal; a log line every 10 s otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True):
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and stream.isatty()
        self.t0 = time.monotonic()
        self._last = 0.0
        self._base_rows = 0  # rows of files finished before this one
        self._file = ""
        self.shown = False

    def __call__(self, report: FileReport, pos: int, size: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        if report.path != self._file:
            self._file = report.path
        rows = self._base_rows + report.rows
        rate = rows / max(now - self.t0, 1e-9)
        pct = f"{100.0 * pos / size:5.1f}% " if size else ""
        line = f"{Path(report.path).name}: {pct}{report.rows:,} rows, {report.rejected:,} rejected | {rate:,.0f} rows/s"
        if self.tty:
            self.stream.write("\r" + line[:100].ljust(78))
            self.stream.flush()
            self.shown = True
        else:
            log.info("progress: %s", line)

    def file_done(self, report: FileReport) -> None:
        self._base_rows += report.rows

    def done(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _config(args: argparse.Namespace) -> Config:
    return load_for_command(
        args, {"state_dir": "state.state_dir", "vehicle": "vehicle.vehicle_id", "session": "vehicle.session_id"})


def _options(args: argparse.Namespace, cfg: Config) -> Options:
    start = parse_iso_time(args.start_time) if args.start_time else None
    return Options(
        vehicle_id=cfg.vehicle.vehicle_id, camera_id=cfg.vehicle.camera_id, session_id=cfg.vehicle.session_id,
        start_time=start, rejects=args.rejects or "", workers=max(1, args.workers), force=args.force,
        tracking=cfg.tracking if cfg.tracking.enabled else None, camera=cfg.camera,
    )


def cmd_ingest_csv(args: argparse.Namespace) -> int:
    cfg = _config(args)  # ConfigError is reported by edge.cli.main
    try:
        opts = _options(args, cfg)
    except ValueError as exc:
        print(f"--start-time: {exc}", file=sys.stderr)
        return Exit.USAGE
    missing = [f for f in args.files if not Path(f).is_file()]
    for f in missing:
        print(f"{f}: no such file", file=sys.stderr)
    files = [f for f in args.files if f not in missing]
    if args.dry_run:
        return _dry_run(args, opts, files, bool(missing))
    return _ingest(args, cfg, opts, files, bool(missing))


def _dry_run(args: argparse.Namespace, opts: Options, files: list[str], missing: bool) -> int:
    from edge.ingest.sinks import DryRunSink

    sink = DryRunSink(0 if args.full else args.samples, sys.stdout.buffer if args.full else None)
    progress = Progress(enabled=not args.quiet)
    stop = threading.Event()
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack, \
            stop_on_signals(stop, (signal.SIGINT, signal.SIGTERM), "finishing the current chunk, then stopping") as signals:
        objects = _objects_file(stack, args)
        reports = _run_files(Ingest(opts, sink, None, progress, stop, objects=objects), files, progress)
    elapsed = time.monotonic() - t0
    if args.full:
        sys.stdout.flush()
    else:
        for ev in sink.samples:
            print(json.dumps(ev, separators=(",", ":"), ensure_ascii=False))
    lines = _summary(reports, elapsed, dry_run=True, objects_out=args.objects_out)
    lines.append(f"  serialised {sink.events:,} events ({sink.bytes:,} bytes of JSON); nothing sent (dry run)")
    print("\n".join(lines), file=sys.stderr)
    return _exit_code(reports, missing, signals)


def _run_files(ingest: Ingest, files: list[str], progress: Progress) -> list[FileReport]:
    reports = []
    try:
        for f in files:
            if ingest.stop.is_set():
                break
            report = ingest.run_file(Path(f))
            progress.file_done(report)
            reports.append(report)
    finally:
        progress.done()
        for r in ingest._shared_rejects.values():  # noqa: SLF001 - owned by the same package
            r.close()
    return reports


def _ingest(args: argparse.Namespace, cfg: Config, opts: Options, files: list[str], missing: bool) -> int:
    from edge.delivery import Delivery
    from edge.ingest.checkpoint import Checkpoints
    from edge.ingest.direct import DirectWriter
    from edge.ingest.sinks import SpoolWriter

    stop = threading.Event()
    progress = Progress(enabled=not args.quiet)
    t0 = time.monotonic()
    drained = True
    # the delivery first: its spool owns the state dir (a second writer exits 2)
    with Delivery.start(cfg, when_full="block") as delivery, \
            contextlib.closing(Checkpoints(Path(cfg.state.state_dir) / "ingest-progress.db")) as checkpoints:
        # waiting for room is bounded: a disk that stays full stops the run (resumable) instead of hanging it
        room = delivery.sink(live=False, room_timeout=cfg.spool.block_timeout_s, stop=stop)
        sink = spooled = SpoolWriter(room, stop)
        if delivery.flusher is not None:  # with a broker: straight to Kafka, the spool only for what it refuses
            sink = DirectWriter(cfg.kafka, spooled, delivery.metrics, stop, stall_s=args.stall_timeout)
            opts.chunk_bytes = DIRECT_CHUNK_BYTES
        with contextlib.ExitStack() as stack, \
                stop_on_signals(stop, (signal.SIGINT, signal.SIGTERM), "finishing the current chunk, then stopping") as signals:
            objects = _objects_file(stack, args) or room.write_objects
            try:
                reports = _run_files(Ingest(opts, sink, checkpoints, progress, stop, objects=objects), files, progress)
            finally:
                if sink is not spooled:
                    sink.close()
            if delivery.flusher is not None and not stop.is_set():
                drained = delivery.flusher.drain(args.drain_timeout)
        elapsed = time.monotonic() - t0
        stats = delivery.spool.stats()
        snap = delivery.metrics.snapshot()
        delivery.finish(0.0 if stop.is_set() else 5.0)
    lines = _summary(reports, elapsed, dry_run=False, objects_out=args.objects_out)
    accepted = sum(r.written for r in reports)
    if delivery.flusher is None:
        lines.append(f"  spooled {accepted:,} events to {cfg.spool_path()}; no Kafka configured "
                     "(KAFKA_BOOTSTRAP_SERVERS): they wait in the spool for the daemon's flusher")
    else:
        sent, acked, failed = snap.get("sent", 0), snap.get("acked", 0), snap.get("failed", 0)
        rate = 100.0 * acked / accepted if accepted else 100.0  # acked: straight from the file or through the spool
        lines += [
            f"  sent      {sent:>12,}   acked {acked:,}   failed {failed:,}   pending in spool {stats.depth:,}",
            f"  success rate {rate:.2f} % (acked / valid rows of this run)",
            "  delivery latency (chunk sent or event spooled → acked) p50 {:.0f} ms, p99 {:.0f} ms".format(
                _ms(snap, "p50"), _ms(snap, "p99")),
        ]
        if not drained:
            lines.append(f"  not all events acknowledged within {args.drain_timeout:.0f} s: they stay in the spool "
                         "and the daemon (or the next run) sends them")
    if room.no_room:
        lines.append("  stopped: no room in the spool: rerun the same command to continue once there is room")
    print("\n".join(lines), file=sys.stderr)
    code = _exit_code(reports, missing, signals, room.no_room)
    return Exit.FAILED if code == Exit.OK and not drained else code


def _ms(snap: dict, q: str) -> float:
    """Latency quantile in ms from a metrics snapshot (latency_p50_ms, or latency_p50_s)."""
    if snap.get(f"latency_{q}_ms") is not None:
        return float(snap[f"latency_{q}_ms"])
    return 1000.0 * float(snap.get(f"latency_{q}_s") or 0.0)


def _objects_file(stack: contextlib.ExitStack, args: argparse.Namespace):  # noqa: ANN202 - an ObjectSink or None
    """--objects-out: the object records to a JSON-lines file (closed with the stack)."""
    if not args.objects_out:
        return None
    from edge.sinks.jsonl import JsonlSink

    return stack.enter_context(contextlib.closing(JsonlSink(args.objects_out))).write


def _summary(reports: list[FileReport], elapsed: float, *, dry_run: bool, objects_out: str | None = None) -> list[str]:
    rows = sum(r.rows for r in reports)
    rejected = sum(r.rejected for r in reports)
    new_rows = sum(r.processed for r in reports)
    lines = [f"ingest-csv{' (dry run)' if dry_run else ''}: {len(reports)} file(s)"]
    for r in reports:
        state = ("already ingested, skipped" if r.skipped else f"error: {r.error}" if r.error
                 else "done" if r.complete else "stopped: rerun the same command to continue")
        resumed = f", resumed at line {r.resumed_at_line:,}" if r.resumed_at_line else ""
        lines.append(f"  {Path(r.path).name}: session {r.session_id or '-'}, {r.rows:,} rows, {r.accepted:,} valid, "
                     f"{r.rejected:,} rejected{resumed}: {state}")
        if r.rejected:
            lines.append(f"    rejects: {r.rejects_path}")
    lines += [
        f"  parsed    {rows:>12,} rows   rejected {rejected:,}",
        f"  objects   {sum(r.objects for r in reports):>12,}        located {sum(r.located for r in reports):,}"
        + (f" (to {'stdout' if objects_out == '-' else objects_out})" if objects_out
           else " (not written: --objects-out FILE)" if dry_run else " (to the spool)"),
        f"  time      {elapsed:>12.2f} s    throughput {new_rows / max(elapsed, 1e-9):,.0f} rows/s (this run)",
    ]
    return lines


def _exit_code(reports: list[FileReport], missing: bool, signals: list[int], no_room: str | None = None) -> int:
    if signals:
        name = signal.Signals(signals[0]).name
        print(f"interrupted ({name}): run the same command again to continue where it stopped", file=sys.stderr)
        return Exit.for_signal(signals[0])  # SIGINT 130, SIGTERM 143
    if no_room:
        log.error("ingest-csv stopped: %s", no_room)
        return Exit.FAILED
    if missing or any(r.error for r in reports):
        return Exit.BAD_INPUT
    return Exit.OK

