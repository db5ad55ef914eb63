"""`edge gps watch` (live fixes from gpsd, for installers) and `edge gps inspect FILE` (EXIF or track)."""

from __future__ import annotations

import queue
import threading
from typing import TextIO

from edge.clock import iso_or_dash
from edge.config import GpsdConfig
from edge.gps.exif import read_exif
from edge.gps.gpsd_provider import GpsdProvider, Sample
from edge.gps.nmea import TrackPoint
from edge.gps.tiff import is_image
from edge.gps.track import TrackError, load_track

EXIT_OK, EXIT_NOTHING, EXIT_UNREADABLE = 0, 1, 2


def _iso(epoch: float | None) -> str:
    return iso_or_dash(epoch)


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_sample(s: Sample) -> str:
    """One line per report: arrival time, mode, position, heading, speed, receiver time."""
    mode = {0: "none", 1: "nofix", 2: "2D", 3: "3D"}.get(s.mode, str(s.mode))
    return (
        f"{_iso(s.received)} mode={mode} lat={_num(s.lat, '.7f')} lon={_num(s.lon, '.7f')} "
        f"heading={_num(s.heading, '.1f')} speed={_num(s.speed_mps, '.2f')}m/s gps_time={_iso(s.gps_time)}"
    )


def watch(cfg: GpsdConfig, out: TextIO, stop: threading.Event, count: int | None = None) -> int:
    """Print gpsd's reports one line each until `stop` is set or `count` lines were printed.

    Returns 0 if at least one report had a fix, 1 otherwise (gpsd unreachable or no fix)."""
    lines: queue.Queue[Sample] = queue.Queue(maxsize=1000)  # the reader never blocks: drop when full

    def offer(sample: Sample) -> None:
        try:
            lines.put_nowait(sample)
        except queue.Full:
            pass

    provider = GpsdProvider(cfg.gpsd_host, cfg.gpsd_port, max_age_s=cfg.max_age_s, on_sample=offer)
    print(f"watching gpsd at {cfg.gpsd_host}:{cfg.gpsd_port} (Ctrl-C to stop)", file=out, flush=True)
    printed = fixes = announced = 0
    provider.start()
    try:
        while not stop.is_set() and (count is None or printed < count):
            try:
                sample = lines.get(timeout=0.2)
            except queue.Empty:
                st = provider.stats()
                if not st.connected and st.outages > announced:  # once per outage
                    announced = st.outages
                    print(f"gpsd at {cfg.gpsd_host}:{cfg.gpsd_port} unavailable, retrying", file=out, flush=True)
                continue
            print(format_sample(sample), file=out, flush=True)
            printed += 1
            fixes += sample.has_fix
    finally:
        provider.close()
    st = provider.stats()
    print(f"{printed} reports, {fixes} with a fix, {st.garbage} garbage lines, {st.outages} outages", file=out, flush=True)
    return EXIT_OK if fixes else EXIT_NOTHING


def _point(p: TrackPoint) -> str:
    return (
        f"{_iso(p.time)} lat={p.lat:.7f} lon={p.lon:.7f} course={_num(p.course, '.1f')} "
        f"speed={_num(p.speed_mps, '.2f')}m/s"
    )


def inspect(path: str, out: TextIO) -> int:
    """Print what an image's EXIF or a track file (NMEA/GPX, detected by content) yields.

    Exit codes: 0 usable position(s), 1 readable but nothing usable, 2 unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=out)
        return EXIT_UNREADABLE
    if is_image(head):
        result = read_exif(path)
        f = result.fix
        print(f"{path}: image EXIF", file=out)
        print(
            f"  lat={_num(f.lat, '.7f')} lon={_num(f.lon, '.7f')} heading={_num(f.heading, '.1f')} "
            f"speed={_num(f.speed_mps, '.2f')}m/s time={_iso(f.time)} status={f.status}",
            file=out,
        )
        for problem in result.problems:
            print(f"  problem: {problem}", file=out)
        if not result.readable:
            return EXIT_UNREADABLE
        return EXIT_OK if f.status == "ok" else EXIT_NOTHING
    try:
        track = load_track(path)
    except TrackError as exc:
        print(f"unreadable: {exc}", file=out)
        return EXIT_UNREADABLE
    print(f"{path}: {track.format} track", file=out)
    print(f"  fixes: {len(track)}", file=out)
    label = "bad sentences" if track.format == "nmea" else "bad points"
    print(f"  {label}: {track.bad}", file=out)
    if track.format == "nmea":
        print(f"  epochs without fix: {track.no_fix}, undated positions: {track.undated}", file=out)
    if track.first is None or track.last is None:
        print("  no usable fixes", file=out)
        return EXIT_NOTHING
    print(f"  first: {_point(track.first)}", file=out)
    print(f"  last:  {_point(track.last)}", file=out)
    span = track.last.time - track.first.time
    print(f"  span: {span:.1f} s, gaps > 5 s: {track.gaps(5.0)}", file=out)
    return EXIT_OK
