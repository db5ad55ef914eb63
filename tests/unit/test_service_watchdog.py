"""edge.watchdog: heartbeats and the progress watchdog that pings only while every stage progresses."""

from __future__ import annotations

import logging
import threading
import time

from edge.watchdog import Heartbeat, ProgressWatchdog


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


class Pings:
    def __init__(self) -> None:
        self.count = 0

    def watchdog(self) -> bool:
        self.count += 1
        return True


def test_heartbeat_ages_and_beats():
    clock = Clock()
    hb = Heartbeat("frames", clock=clock)
    assert hb.alive(5), "alive at creation: the stage gets max_age to beat first"
    clock.t += 6
    assert not hb.alive(5) and hb.age() == 6, "stale after max_age without a beat"
    hb.beat()
    assert hb.alive(5) and hb.beats == 1, "a beat refreshes it"
    check = hb.check(5)
    assert check() and check.__name__ == "frames (beat within 5 s)", check.__name__


def test_tick_pings_only_when_every_check_passes(caplog):
    clock, pings = Clock(), Pings()
    frames, flusher = Heartbeat("frames", clock=clock), Heartbeat("flusher", clock=clock)
    wd = ProgressWatchdog(pings, 30, [frames.check(10), flusher.check(10)])
    assert wd.tick() and pings.count == 1, "all progressing: ping"
    # when the flusher stops while frames keep coming
    clock.t += 11
    frames.beat()
    with caplog.at_level(logging.WARNING, logger="edge.watchdog"):
        assert not wd.tick() and not wd.tick(), "one stage stuck: no ping"
    assert pings.count == 1 and wd.withheld == 2
    assert [r.getMessage() for r in caplog.records].count(
        "watchdog: withholding WATCHDOG=1, no progress in: flusher (beat within 10 s) "
        "(systemd restarts the service after WatchdogSec=30s without a ping)") == 1, "said once, with the stage"
    # then pings resume once it beats again
    flusher.beat()
    assert wd.tick() and pings.count == 2


def test_a_raising_check_withholds_the_ping():
    pings = Pings()

    def broken() -> bool:
        raise RuntimeError("stats unavailable")

    wd = ProgressWatchdog(pings, 30, [lambda: True, broken])
    assert not wd.tick() and pings.count == 0 and wd.failing() == ["broken"], "raising = not progressing"


def test_legitimately_idle_source_keeps_pinging():
    clock, pings = Clock(), Pings()
    frames = Heartbeat("frames", clock=clock)
    reconnecting = True
    wd = ProgressWatchdog(pings, 30, [lambda: reconnecting or frames.alive(10)])
    clock.t += 100
    assert wd.tick(), "a camera in an outage that is reconnecting is idle, not hung"
    reconnecting = False
    assert not wd.tick(), "no frames and not reconnecting: hung"


def test_run_pings_at_half_interval_and_stops_at_once():
    pings = Pings()
    hb = Heartbeat("loop")
    wd = ProgressWatchdog(pings, 0.2, [hb.check(1.0)])
    stop = threading.Event()
    thread = threading.Thread(target=wd.run, args=(stop,))
    thread.start()
    time.sleep(0.55)
    stop.set()
    t0 = time.monotonic()
    thread.join(2)
    assert not thread.is_alive() and time.monotonic() - t0 < 0.2, "sees stop at once"
    assert 4 <= pings.count <= 8, f"a ping every 0.1 s (interval/2), got {pings.count}"


def test_run_never_pings_from_a_bare_timer():
    pings = Pings()
    hb = Heartbeat("frames")
    wd = ProgressWatchdog(pings, 0.1, [hb.check(0.05)])
    stop = threading.Event()
    thread = threading.Thread(target=wd.run, args=(stop,))
    time.sleep(0.1)  # the stage never beats
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(2)
    assert pings.count == 0, "no progress, no ping, however long the timer runs"


def test_run_without_watchdog_returns_at_once():
    wd = ProgressWatchdog(Pings(), None, [lambda: True])
    t0 = time.monotonic()
    wd.run(threading.Event())
    assert time.monotonic() - t0 < 0.1 and wd.pings == 0, "WatchdogSec= unset: nothing to do"
