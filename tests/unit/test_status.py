"""edge.status: status.json round trip, `edge status` text, and the Prometheus textfile format."""

from __future__ import annotations

import json
import os
import re
import stat
import threading

import pytest

from edge.status import (
    STATUS_FILE,
    GpsView,
    Metric,
    Snapshot,
    StatusWriter,
    format_status,
    metrics_from_status,
    read_status,
    render_prometheus,
    write_prometheus,
)

# what the service writes: a real Snapshot, so that these tests cannot drift from the writer
SNAPSHOT = Snapshot(
    state="running", fps=4.96, frames=1200, frames_dropped=3, detections=17, spool_depth=42, spool_bytes=90_000,
    spool_oldest_age_s=12.4, dead_letters=1, evicted=0, broker="connected", acked=15,
    gps=GpsView("ok", 52.370216, 4.895168, "gpsd"),
).to_dict()


def test_write_then_read_round_trip(tmp_path):
    runtime = tmp_path / "run" / "edge-detector"  # created when missing
    written = StatusWriter(runtime, clock=lambda: 1_800_000_000.25).write(SNAPSHOT)
    data = read_status(runtime)
    assert data == written and data["fps"] == 4.96 and data["gps"]["status"] == "ok", data
    assert data["pid"] == os.getpid() and data["updated_at"] == "2027-01-15T08:00:00.250Z", data
    assert sorted(p.name for p in runtime.iterdir()) == [STATUS_FILE], "no temporary file left behind"
    assert stat.S_IMODE((runtime / STATUS_FILE).stat().st_mode) == 0o644, "readable by `edge status` users"


def test_readers_never_see_a_torn_file(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(SNAPSHOT)
    stop, bad = threading.Event(), []

    def read_loop() -> None:
        while not stop.is_set():
            if read_status(tmp_path) is None:
                bad.append(1)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for i in range(300):
        writer.write({**SNAPSHOT, "frames": i, "padding": "x" * (i * 37 % 5000)})
    stop.set()
    reader.join()
    assert not bad, f"{len(bad)} reads saw a missing or partial status.json"


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]"])
def test_read_status_missing_or_corrupt(tmp_path, content):
    if content is not None:
        (tmp_path / STATUS_FILE).write_text(content)
    assert read_status(tmp_path) is None, f"None for {content!r}"


def test_write_failure_is_counted_not_raised(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    writer = StatusWriter(blocker)
    assert writer.write(SNAPSHOT) is None and writer.failures == 1, "logged and counted"


def test_format_status_full():
    now = 1_800_000_010.0
    text = format_status({**SNAPSHOT, "updated_at": "2027-01-15T08:00:07Z", "pid": os.getpid()}, now=now)
    for expected in ("state:       running", "(3 s ago)", "fps:         5.0", "1200 read, 3 dropped",
                     "detections:  17", "42 waiting, oldest 12 s, 1 dead letters", "broker:      connected, 15 acked",
                     "gps:         ok 52.37022,4.89517 (gpsd)"):
        assert expected in text, f"{expected!r} in:\n{text}"
    assert "WARNING" not in text, text


def test_format_status_partial_stale_and_dead_process():
    text = format_status({"updated_at": "2027-01-15T08:00:00Z", "pid": 2**22 + 12345}, now=1_800_000_100.0)
    assert "fps:         n/a" in text and "gps:         n/a" in text, "missing keys shown as n/a"
    assert "status is 100 s old" in text and "process 4206649 is not running" in text, text


PROM_LINE = re.compile(r'^(# HELP edge_\w+ .+|# TYPE edge_\w+ (gauge|counter)|edge_\w+(\{(\w+="([^"\\]|\\.)*",?)+\})? '
                       r'(-?[0-9.e+]+|NaN|[+-]Inf))$')


def test_prometheus_textfile_format(tmp_path):
    path = tmp_path / "edge_detector.prom"
    write_prometheus(path, {
        "fps": 4.5, "edge_frames_total": Metric(10, "Frames read", "counter"), "up": True, "skipped": None,
        "broker_up": Metric(0, "Broker", labels={"state": 'down "x"\\n\n'}), "bad-name.x": 1,
    })
    text = path.read_text()
    lines = text.splitlines()
    assert all(PROM_LINE.match(line) for line in lines), [line for line in lines if not PROM_LINE.match(line)]
    assert "edge_fps 4.5" in lines and "edge_frames_total 10" in lines and "edge_up 1" in lines, text
    assert "# TYPE edge_frames_total counter" in lines and "# HELP edge_frames_total Frames read" in lines, text
    assert 'edge_broker_up{state="down \\"x\\"\\\\n\\n"} 0' in lines, "label values escaped"
    assert "edge_bad_name_x 1" in lines and "skipped" not in text, "names sanitised, None left out"
    for name in ("edge_fps", "edge_broker_up"):  # HELP and TYPE precede the samples of each metric
        i = lines.index(f"# TYPE {name} gauge")
        assert lines[i - 1].startswith(f"# HELP {name} ") and lines[i + 1].startswith(name), lines[i - 1:i + 2]
    assert text.endswith("\n") and sorted(p.name for p in tmp_path.iterdir()) == [path.name], "atomic, no tmp left"


def test_prometheus_special_values():
    text = render_prometheus({"a": float("nan"), "b": float("inf"), "c": 2**60})
    assert "edge_a NaN" in text and "edge_b +Inf" in text and f"edge_c {float(2**60)!r}" in text, text


def test_metrics_from_status_and_writer_textfile(tmp_path):
    prom = tmp_path / "textfile" / "edge.prom"
    StatusWriter(tmp_path, prometheus_path=prom, clock=lambda: 1_800_000_000.0).write(SNAPSHOT)
    text = prom.read_text()
    for expected in ("edge_fps 4.96", "edge_frames_total 1200", "edge_frames_dropped_total 3",
                     "edge_detections_total 17", "edge_spool_depth 42", "edge_spool_oldest_age_seconds 12.4",
                     'edge_broker_up{state="connected"} 1', 'edge_gps_fix{status="ok"} 1',
                     "edge_status_updated_timestamp_seconds 1800000000"):
        assert expected in text.splitlines(), f"{expected!r} in:\n{text}"
    metrics = metrics_from_status({"broker": "down", "gps": None})
    assert metrics["edge_broker_up"].value is False and metrics["edge_gps_fix"].value is False, metrics
    assert metrics["edge_fps"] is None, "missing keys give no sample"
    json.dumps(read_status(tmp_path))  # still plain JSON


def test_snapshot_of_the_stages_types_is_what_status_shows():
    from edge.metrics import Metrics
    from edge.pipeline import PipelineStats
    from edge.sources import SourceStats
    from edge.spool import SpoolStats
    from edge.types import GpsFix

    stats = PipelineStats(frames=10, detections=4, last_fix=GpsFix(52.1, 4.3, 90.0, source="gpsd", status="ok"))
    spool = SpoolStats(depth=3, bytes=900, oldest_age_s=2.0, in_flight=0, dead=0, quarantined=0, evicted_total=0,
                       appended_total=7, acked_total=4, disk_full=False, max_bytes=1 << 20, policy="drop_oldest",
                       lost_total=2)
    snap = Snapshot.of(pipeline=stats, source=SourceStats(dropped=1), spool=spool, broker="unreachable",
                       delivery=Metrics().snapshot(), native={"native_log_lines": 5})
    text = format_status({**snap.to_dict(), "updated_at": "2027-01-15T08:00:00Z", "pid": os.getpid()},
                         now=1_800_000_001.0)
    for expected in ("10 read, 1 dropped", "detections:  4", "3 waiting", "LOST 2", "broker:      unreachable",
                     "gps:         ok 52.10000,4.30000 (gpsd)"):
        assert expected in text, f"{expected!r} in:\n{text}"
    metrics = metrics_from_status(snap.to_dict())
    assert metrics["edge_broker_up"].value is False and metrics["edge_spool_lost_total"].value == 2, metrics
