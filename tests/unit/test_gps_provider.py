"""make_provider, the fixed/none providers, the gpsd provider and `watch` against an in-process fake gpsd."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from edge.config import (
    ConfigError,
    ExifGpsConfig,
    FixedGpsConfig,
    GpsConfig,
    GpsdConfig,
    NoGpsConfig,
    TrackGpsConfig,
)
from edge.gps import (
    ExifProvider,
    FixedProvider,
    GpsdProvider,
    GpsProvider,
    NoneProvider,
    TrackError,
    TrackProvider,
    make_provider,
)
from edge.gps.cli import watch
from edge.gps.nmea import sentence
from edge.types import Frame
from tests.support import wait_until

VERSION = b'{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}\n'


def frame(captured_at: float) -> Frame:
    return Frame(0, 0.0, captured_at, np.zeros((1, 1, 3), np.uint8), "cam")


def tpv(mode=3, lat=52.5, lon=13.4, track=90.0, speed=10.0, **extra) -> bytes:
    obj = {"class": "TPV", "device": "/dev/fake", "mode": mode, "time": "2029-07-25T15:25:05.000Z"}
    obj.update({k: v for k, v in dict(lat=lat, lon=lon, track=track, speed=speed, **extra).items() if v is not None})
    return json.dumps(obj).encode() + b"\n"


class FakeGpsd:
    """Listens on a loopback port, greets like gpsd, sends what the test says; can go away and come back."""

    def __init__(self, port: int = 0):
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.sendall(VERSION)
            with self._lock:
                self.clients.append(conn)
                self.accepted += 1

    def send(self, data: bytes) -> None:
        with self._lock:
            for c in self.clients:
                c.sendall(data)

    def connected(self) -> int:
        with self._lock:
            return len(self.clients)

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone leaves it listening
        except OSError:
            pass
        self.server.close()
        self._thread.join(timeout=2)
        with self._lock:
            for c in self.clients:
                c.close()
            self.clients.clear()


@pytest.fixture
def gpsd():
    server = FakeGpsd()
    try:
        yield server
    finally:
        server.close()


def fast_provider(port: int, **kw) -> GpsdProvider:
    kw.setdefault("max_age_s", 2.0)
    return GpsdProvider("127.0.0.1", port, backoff_initial_s=0.05, backoff_max_s=0.2, read_timeout_s=0.05, **kw)


# --- make_provider --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cfg, kind",
    [
        (NoGpsConfig(), NoneProvider),
        (FixedGpsConfig(fixed_lat=1.0, fixed_lon=2.0), FixedProvider),
        (GpsdConfig(), GpsdProvider),
        (ExifGpsConfig(), ExifProvider),
    ],
)
def test_make_provider_picks_by_config(cfg, kind):
    provider = make_provider(cfg)
    assert isinstance(provider, kind) and isinstance(provider, GpsProvider), f"{cfg.provider}: {provider!r}"
    provider.close()


@pytest.mark.parametrize(
    "settings, keys",
    [
        ({"provider": "fixed", "fixed_lon": 2.0}, ["fixed_lat"]),
        ({"provider": "fixed"}, ["fixed_lat", "fixed_lon"]),
        ({"provider": "track"}, ["track"]),
        ({"provider": "gpsd", "gpsd_host": " "}, ["gpsd_host"]),
        ({"provider": "fixed", "fixed_lat": 1.0, "fixed_lon": 2.0, "gpsd_port": 3000}, ["gpsd_port"]),
    ],
)
def test_bad_combinations_are_refused_by_the_config_itself(settings, keys):
    # a provider without its settings never reaches make_provider: GpsConfig refuses it (`edge config check` too)
    with pytest.raises(ValidationError) as info:
        TypeAdapter(GpsConfig).validate_python(settings)
    named = [err["loc"][-1] for err in info.value.errors()]
    assert named == keys, f"GpsConfig {settings} should name {keys}, got {named}"


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "cannot read"),
        ("$GPRMC,,V,,,,,,,,,,N*53\n", "no usable fixes"),
    ],
)
def test_unusable_track_file_is_an_input_error(tmp_path, content, expected):
    # the file is an input, not configuration: a TrackError (exit 3), not a ConfigError (exit 2)
    path = tmp_path / "drive.nmea"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TrackError) as info:
        make_provider(TrackGpsConfig(track=str(path)))
    assert not isinstance(info.value, ConfigError), f"an unusable track file is not a config error: {info.value!r}"
    assert expected in str(info.value) and "gps.track" in str(info.value), f"names the key and why: {info.value}"


def test_track_provider_from_config(tmp_path):
    lines = [sentence(f"GPRMC,1200{s:02d}.00,A,5000.{s:04d},N,00100.0000,E,1.0,0.0,010120,,,A") for s in range(3)]
    (tmp_path / "d.nmea").write_text("\n".join(lines))
    start = 1577880000.0  # 2020-01-01T12:00:00Z
    provider = make_provider(TrackGpsConfig(track=str(tmp_path / "d.nmea")), track_start=start)
    assert isinstance(provider, TrackProvider), f"{provider!r}"
    fix = provider.fix_for(Frame(1, 1.5, 0.0, np.zeros((1, 1, 3), np.uint8), "video.mp4"))  # media time 1.5 s
    assert fix.status == "ok" and fix.age_ms == 500 and abs(fix.lat - (50 + 0.00015 / 60)) < 1e-9, f"{fix}"


def test_fixed_and_none():
    fix = make_provider(FixedGpsConfig(fixed_lat=-33.9, fixed_lon=18.4, fixed_heading=359.5)).fix_for(frame(5.0))
    assert (fix.lat, fix.lon, fix.heading, fix.source, fix.status, fix.age_ms) == (-33.9, 18.4, 359.5, "fixed", "ok", 0), f"{fix}"
    fix = make_provider(NoGpsConfig()).fix_for(frame(5.0))
    assert (fix.lat, fix.source, fix.status) == (None, "none", "no_fix"), f"{fix}"


# --- gpsd: the step, no sockets -------------------------------------------------------------------

def test_fix_for_picks_latest_at_or_before_capture():
    p = GpsdProvider(max_age_s=2.0)
    assert p.fix_for(frame(100.0)).status == "no_fix", "nothing yet → no_fix"
    p.handle_line(tpv(mode=1, lat=None, lon=None, track=None, speed=None), 99.0)
    assert p.fix_for(frame(100.0)).status == "no_fix", "mode 1 → no_fix"
    p.handle_line(tpv(lat=1.0), 100.0)
    p.handle_line(tpv(lat=2.0, track=359.9999), 101.0)
    p.handle_line(tpv(lat=3.0), 102.0)
    fix = p.fix_for(frame(101.4))
    assert (fix.lat, fix.status, fix.age_ms, fix.time, fix.source) == (2.0, "ok", 400, 101.0, "gpsd"), f"{fix}"
    assert fix.heading == pytest.approx(359.9999) and fix.speed_mps == 10.0, f"{fix}"
    fix = p.fix_for(frame(99.5))
    assert fix.status == "no_fix", f"before the first fix, the latest report is mode 1: {fix}"
    fix = p.fix_for(frame(104.5))
    assert (fix.status, fix.lat, fix.lon, fix.heading, fix.age_ms) == ("stale", None, None, None, 2500), f"{fix}"
    p.handle_line(tpv(mode=2, lat=None), 103.0)
    assert p.fix_for(frame(103.0)).status == "no_fix", "mode 2 without a position is no fix"


@pytest.mark.parametrize(
    "line",
    [
        b"not json", b"\xff\xfe\x00", b"[1,2]", b'{"no":"class"}', b"{",
        tpv(mode="3"), tpv(mode=True), tpv(mode=7), tpv(lat="52.5"), tpv(lat=95.0), tpv(lon=float("inf")),
        tpv(track=[1]), tpv(speed=-1.0), tpv(time=12), tpv(time="yesterday"), b"[" * 100000,
    ],
)
def test_garbage_is_counted_never_raised(line):
    p = GpsdProvider()
    assert p.handle_line(line, 1.0) is None, f"{line[:40]!r} is no report"
    assert p.stats().garbage == 1 and p.history() == [], f"{line[:40]!r}: counted once, nothing kept"


def test_other_classes_are_ignored_and_garbage_logs_are_rate_limited(caplog):
    p = GpsdProvider()
    with caplog.at_level(logging.WARNING, logger="edge.gps.gpsd_provider"):
        for line in (VERSION, b'{"class":"SKY","satellites":[]}', b'{"class":"DEVICES","devices":[]}'):
            p.handle_line(line.strip(), 1.0)
        for _ in range(50):
            p.handle_line(b"garbage", 1.0)
    st = p.stats()
    assert st.garbage == 50 and st.reports == 0 and st.lines == 53, f"{st}"
    assert len(caplog.records) == 1, f"50 garbage lines, one warning: {[r.getMessage() for r in caplog.records]}"


# --- gpsd: through a socket ----------------------------------------------------------------------

def test_live_fixes_through_a_socket(gpsd):
    provider = fast_provider(gpsd.port)
    provider.start()
    try:
        wait_until(lambda: gpsd.connected() == 1, "the provider to connect", 5)
        gpsd.send(b"garbage\n" + tpv(mode=1, lat=None, lon=None) + tpv(lat=48.0, lon=-122.5, track=12.5))
        wait_until(lambda: provider.stats().fixes == 1, "a fix", 5)
        fix = provider.fix_for(frame(time.time()))
        assert (fix.status, fix.lat, fix.lon, fix.heading) == ("ok", 48.0, -122.5, 12.5), f"{fix}"
        assert fix.age_ms is not None and 0 <= fix.age_ms < 2000, f"age of a fresh fix: {fix}"
        assert provider.fix_for(frame(time.time() + 3)).status == "stale", "3 s later the fix is stale"
        st = provider.stats()
        assert st.garbage == 1 and st.reports == 2 and st.connected, f"{st}"
    finally:
        provider.close()


def test_reconnects_after_gpsd_goes_away_and_comes_back(caplog):
    server = FakeGpsd()
    port = server.port
    provider = fast_provider(port)
    caplog.set_level(logging.INFO, logger="edge.gps.gpsd_provider")
    provider.start()
    try:
        wait_until(lambda: server.connected() == 1, "first connection", 5)
        server.send(tpv(lat=1.0))
        wait_until(lambda: provider.stats().fixes == 1, "first fix", 5)
        # when gpsd goes away (listener and connections closed) for a while
        server.close()
        wait_until(lambda: provider.stats().outages == 1, "the outage to be noticed", 5)
        # and comes back on the same port
        server = FakeGpsd(port)
        wait_until(lambda: server.connected() == 1, "reconnection", 5)
        server.send(tpv(lat=2.0))
        wait_until(lambda: provider.stats().fixes == 2, "a fix after the outage", 5)
        st = provider.stats()
        assert st.outages == 1 and st.reconnects == 1 and st.connected, f"one outage, one recovery: {st}"
        assert provider.fix_for(frame(time.time())).lat == 2.0, "the fresh fix is used"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        recoveries = [r for r in caplog.records if "after" in r.getMessage()]
        assert len(warnings) == 1, f"one warning per outage despite retries: {[r.getMessage() for r in warnings]}"
        assert len(recoveries) == 1, f"recovery logged once: {[r.getMessage() for r in caplog.records]}"
    finally:
        provider.close()
        server.close()


def test_silent_gpsd_counts_as_outage(gpsd):
    provider = fast_provider(gpsd.port, idle_timeout_s=0.3)
    provider.start()
    try:
        wait_until(lambda: provider.stats().outages >= 1, "idle connection treated as an outage", 5)
        wait_until(lambda: gpsd.accepted >= 2, "a reconnection attempt", 5)
    finally:
        provider.close()


def test_close_is_prompt_and_idempotent(gpsd):
    provider = fast_provider(gpsd.port)
    provider.start()
    wait_until(lambda: gpsd.connected() == 1, "connection", 5)
    started = time.monotonic()
    provider.close()
    provider.close()
    assert time.monotonic() - started < 1.0, "close returns within a second"
    unreachable = fast_provider(1)  # nothing listens on port 1
    unreachable.start()
    wait_until(lambda: unreachable.stats().outages == 1, "the failed connect to count", 5)
    started = time.monotonic()
    unreachable.close()
    assert time.monotonic() - started < 1.0, "close during backoff returns within a second"


# --- watch (edge gps watch) --------------------------------------------------------------------

def test_watch_prints_reports_until_count():
    server = FakeGpsd()
    out, stop = io.StringIO(), threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(watch(GpsdConfig(gpsd_port=server.port), out, stop, count=3)))
    t.start()
    try:
        wait_until(lambda: server.connected() == 1, "watch to connect", 5)
        server.send(tpv(mode=1, lat=None, lon=None) + tpv(lat=55.5, lon=23.25) + tpv(lat=55.6, lon=23.25) + tpv(lat=9.0))
        t.join(timeout=10)
    finally:
        stop.set()
        t.join(timeout=5)
        server.close()
    text = out.getvalue()
    assert result == [0], f"exit 0 with fixes, got {result}\n{text}"
    report_lines = [line for line in text.splitlines() if " mode=" in line]
    assert len(report_lines) == 3, f"three reports printed:\n{text}"
    assert "mode=nofix" in report_lines[0] and "lat=55.5000000" in report_lines[1], f"\n{text}"
    assert "gps_time=2029-07-25T15:25:05.000Z" in report_lines[1], f"receiver time shown:\n{text}"


def test_watch_without_gpsd_says_so_and_exits_1():
    out, stop = io.StringIO(), threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(watch(GpsdConfig(gpsd_port=1), out, stop)))
    t.start()
    try:
        wait_until(lambda: "unavailable" in out.getvalue(), "the outage to be reported", 5)
    finally:
        stop.set()
        t.join(timeout=5)
    assert result == [1] and not t.is_alive(), f"exit 1 without fixes, got {result}\n{out.getvalue()}"
    assert out.getvalue().count("unavailable") == 1, f"said once per outage:\n{out.getvalue()}"
