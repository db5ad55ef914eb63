"""Ingest CSV files: read in chunks, convert (in a worker thread, ahead of the writer), hand to a sink, checkpoint."""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edge.clock import iso_utc
from edge.config.objects import CameraConfig, TrackingConfig
from edge.events import recording_session_id
from edge.ingest.checkpoint import Checkpoints, Progress
from edge.ingest.convert import Batch, Converter, Reject
from edge.ingest.reader import CsvFile, InputError
from edge.ingest.rows import FileContext
from edge.ingest.tracking import CsvTracking
from edge.objects.records import ObjectSink

log = logging.getLogger(__name__)

CHUNK_BYTES = 1048576  # larger chunks: fewer, larger numpy operations in the fast path (each has a fixed cost)
AHEAD = 1  # chunks converted ahead of the sink, beyond one per worker: bounds memory to a few chunks


@dataclass
class Options:
    vehicle_id: str
    camera_id: str
    session_id: str = ""  # empty: derived from each file (same file, same ids)
    start_time: float | None = None  # epoch of timestamp_sec 0; None: the file's modification time
    rejects: str = ""  # empty: FILE.rejects.csv beside each input
    chunk_bytes: int = CHUNK_BYTES
    workers: int = 1
    force: bool = False  # ingest again files whose checkpoint says done
    tracking: TrackingConfig | None = None  # None: rows not tracked (track_id null, no object records)
    camera: CameraConfig = field(default_factory=CameraConfig)


@dataclass
class FileReport:
    path: str
    session_id: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    written: int = 0  # accepted events handed to the sink by this run
    processed: int = 0  # rows converted by this run (less than rows when resumed)
    resumed_at_line: int | None = None
    skipped: bool = False  # already ingested (checkpoint done)
    error: str | None = None
    rejects_path: str = ""
    complete: bool = False
    objects: int = 0  # object records made by this run
    located: int = 0  # of them, with a position


class Stopped(Exception):
    """Raised by a sink that was waiting when a stop was asked: its batch is not written."""


class Sink(Protocol):
    """Where events go. `write` is durable on return (the checkpoint follows it)."""

    def write(self, batch: Batch, ctx: FileContext) -> None: ...


def file_context(path: Path, opts: Options) -> FileContext:
    st = path.stat()
    start = opts.start_time if opts.start_time is not None else st.st_mtime
    session = opts.session_id or recording_session_id(path, opts.start_time, opts.vehicle_id, opts.camera_id)
    return FileContext(session, opts.vehicle_id, opts.camera_id, path.name, start)


def file_key(path: Path, ctx: FileContext) -> str:
    st = path.stat()
    return "|".join(map(str, (path.resolve(), st.st_size, st.st_mtime_ns, ctx.session_id, ctx.vehicle_id, ctx.camera_id, ctx.start_time)))


class RejectsFile:
    """CSV of rejected rows: file, line, reason, record. Created on the first reject."""

    HEADER = ("file", "line", "reason", "record")

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._writer = None
        self.dirty = False

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def truncate(self, size: int) -> None:
        """Back to `size` bytes (what a checkpoint recorded); 0 removes the file."""
        self.close()
        if size == 0:
            self.path.unlink(missing_ok=True)
        elif self.size() > size:
            os.truncate(self.path, size)

    def write(self, source: str, rejects: Sequence[Reject]) -> None:
        if not rejects:
            return
        if self._fh is None:
            new = self.size() == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._writer = csv.writer(self._fh)
            if new:
                self._writer.writerow(self.HEADER)
        for r in rejects:
            self._writer.writerow((source, r.line, r.reason, r.raw))
        self.dirty = True

    def sync(self) -> None:
        if self._fh is not None and self.dirty:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.dirty = False

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = self._writer = None


def rejects_path_for(path: Path, opts: Options) -> Path:
    return Path(opts.rejects) if opts.rejects else path.with_name(path.name + ".rejects.csv")


@dataclass
class Ingest:
    """Runs files through converter → sink, with checkpoints when `checkpoints` is given (not for dry runs)."""

    opts: Options
    sink: Sink
    checkpoints: Checkpoints | None = None
    on_progress: Callable[[FileReport, int, int], None] | None = None  # (report, bytes read, file size)
    stop: threading.Event = field(default_factory=threading.Event)
    objects: ObjectSink | None = None  # where object records go (None: counted only)
    _shared_rejects: dict[Path, RejectsFile] = field(default_factory=dict)
    _touched: set[Path] = field(default_factory=set)  # rejects files this run has truncated or continued

    def run(self, paths: Sequence[str | Path]) -> list[FileReport]:
        reports = []
        for p in paths:
            if self.stop.is_set():
                break
            reports.append(self.run_file(Path(p)))
        for r in self._shared_rejects.values():
            r.close()
        return reports

    def _rejects(self, path: Path) -> RejectsFile:
        target = rejects_path_for(path, self.opts)
        if target not in self._shared_rejects:
            self._shared_rejects[target] = RejectsFile(target)
        return self._shared_rejects[target]

    def run_file(self, path: Path) -> FileReport:
        report = FileReport(str(path))
        try:
            csvf = CsvFile(path, self.opts.chunk_bytes)
        except InputError as exc:
            report.error = str(exc)
            log.error("%s", exc)
            return report
        with csvf:
            ctx = file_context(path, self.opts)
            report.session_id = ctx.session_id
            header = csvf.header
            if header.extra:
                log.warning("%s: ignoring extra column(s): %s", path.name, ", ".join(header.extra))
            if header.missing_gps:
                log.warning("%s: no %s column(s): those values are null", path.name, ", ".join(header.missing_gps))
            rejects = self._rejects(path)
            report.rejects_path = str(rejects.path)
            progress = self._start(path, ctx, rejects, report)
            if progress is None:
                return report
            if progress.offset is None:
                progress.offset = csvf.data_offset
            try:
                self._convert_all(csvf, ctx, progress, rejects, report)
            except InputError as exc:
                report.error = str(exc)
                log.error("%s (rows before this point are kept; rerun to retry)", exc)
            finally:
                rejects.sync()
            report.rows, report.accepted, report.rejected = progress.rows, progress.accepted, progress.rejected
        return report

    def _start(self, path: Path, ctx: FileContext, rejects: RejectsFile, report: FileReport) -> Progress | None:
        """The progress to continue from; None if the file is already done."""
        key = file_key(path, ctx)
        first_use = rejects.path not in self._touched
        self._touched.add(rejects.path)
        saved = self.checkpoints.get(key) if self.checkpoints is not None else None
        if saved is not None and saved.done and not self.opts.force:
            report.skipped = True
            report.rows, report.accepted, report.rejected = saved.rows, saved.accepted, saved.rejected
            log.info("%s: already ingested (session %s, %d events); --force sends it again", path.name, ctx.session_id, saved.accepted)
            return None
        if saved is not None and not saved.done and not self.opts.force:
            report.resumed_at_line = saved.next_line
            if saved.rejects_path == str(rejects.path):
                rejects.truncate(saved.rejects_size)
            log.info("%s: resuming at line %d (%d rows done)", path.name, saved.next_line, saved.rows)
            return saved
        if first_use:
            rejects.truncate(0)
        return Progress(key, str(path), ctx.session_id, rejects_path=str(rejects.path))

    def _convert_all(self, csvf: CsvFile, ctx: FileContext, progress: Progress, rejects: RejectsFile, report: FileReport) -> None:
        local = threading.local()
        opts = self.opts
        tracking = CsvTracking(opts.tracking, opts.camera, ctx) if opts.tracking is not None else None

        def convert(data: bytes, first_line: int) -> Batch:
            conv = getattr(local, "conv", None)
            if conv is None:
                conv = local.conv = Converter(csvf.header, ctx)
            batch = conv.convert(data, first_line, iso_utc(time.time()))
            batch.converter = conv  # type: ignore[attr-defined]
            return batch

        pending: deque[tuple[object, Future[Batch]]] = deque()
        with ThreadPoolExecutor(max(1, self.opts.workers), thread_name_prefix="edge-ingest") as pool:
            chunks = csvf.chunks(progress.offset, progress.next_line)
            while not self.stop.is_set():
                while len(pending) < AHEAD + max(1, self.opts.workers):
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    pending.append((chunk, pool.submit(convert, chunk.data, chunk.first_line)))
                if not pending:
                    if csvf.damage is not None:  # every complete line before the damage is written by now
                        raise InputError(csvf.damage)
                    progress.done = True
                    break
                chunk, fut = pending.popleft()
                batch = fut.result()
                records = tracking.apply(batch) if tracking is not None else []
                try:
                    self.sink.write(batch, ctx)
                except Stopped:
                    break
                finally:
                    batch.converter.release(batch)  # type: ignore[attr-defined]
                self._objects(records, report)  # after the events they name
                rejects.write(ctx.source, batch.rejects)
                progress.offset, progress.next_line = chunk.end_offset, chunk.next_line  # type: ignore[attr-defined]
                progress.rows += batch.rows
                progress.accepted += batch.accepted
                progress.rejected += len(batch.rejects)
                report.written += batch.accepted
                report.processed += batch.rows
                self._checkpoint(progress, rejects)
                report.rows, report.accepted, report.rejected = progress.rows, progress.accepted, progress.rejected
                if self.on_progress is not None:
                    self.on_progress(report, csvf.position(), csvf.size)
            for _chunk, fut in pending:
                fut.cancel()
        if progress.done:
            if tracking is not None:
                self._objects(tracking.finish(), report)
            self._checkpoint(progress, rejects)
            report.complete = True

    def _objects(self, records: list, report: FileReport) -> None:  # noqa: ANN001 - ObjectRecords
        if not records:
            return
        report.objects += len(records)
        report.located += sum(r.position_status == "ok" for r in records)
        if self.objects is not None:
            self.objects(records)

    def _checkpoint(self, progress: Progress, rejects: RejectsFile) -> None:
        if self.checkpoints is None:
            return
        rejects.sync()
        progress.rejects_size = rejects.size()
        self.checkpoints.save(progress)
