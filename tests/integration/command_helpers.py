"""`python -m edge` in tests: its environment, and what it left (spool rows read-only, figures in its output)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import threading
from pathlib import Path


def edge_env() -> dict[str, str]:
    """This environment without the variables that configure edge (no broker, no EDGE_CONFIG, defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "EDGE_", "INFERENCE_", "VEHICLE_", "CAMERA_"))}


def pending(state: Path, what: str = "count(*)", stream: int = 0) -> int:
    """`SELECT what FROM pending` of the spool in `state` for one stream (0: detection events, 1: object records),
    read-only; 0 before the spool or its tables exist."""
    db = state / "spool.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        columns = {row[1] for row in con.execute("PRAGMA table_info(pending)")}
        if not columns:  # tables not created yet
            return 0
        if "stream" not in columns:  # a format-1 spool, not migrated yet: detection events only
            return con.execute(f"SELECT {what} FROM pending").fetchone()[0] if stream == 0 else 0
        return con.execute(f"SELECT {what} FROM pending WHERE stream = ?", (stream,)).fetchone()[0]
    except sqlite3.OperationalError:  # a spool being created by its writer
        return 0
    finally:
        con.close()


CSV_HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading"


def write_drive_csv(path: Path, rows: int) -> Path:
    """A perception-layer CSV of `rows` valid rows (two detections a frame, both classes, GPS on every row)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(CSV_HEADER + "\n")
        for i in range(rows):
            fh.write(f"{75 + i // 2},{(75 + i // 2) / 30:.3f},{i % 1920}.{i % 97:02d},{i % 1080}.5,0.{5000 + i % 4999},"
                     f"{'stop sign' if i % 3 else 'traffic light'},43.{790000 + i},-79.{314000 + i},{i % 3600 / 10:.1f}\n")
    return path


def checkpointed_rows(state: Path) -> int:
    """Rows `edge ingest-csv` has checkpointed in `state` (read-only); 0 before its progress table exists."""
    db = state / "ingest-progress.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute("SELECT max(rows) FROM progress").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0) if row else 0


def number(pattern: str, text: str) -> int:
    """The integer the regex's first group finds in `text` (thousands separators allowed); fails if absent."""
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output: {text[-1500:]}"
    return int(found.group(1).replace(",", ""))


class Background:
    """A command run in the background (`with Background(cmd, env) as run:`), its stderr read on a thread so that
    a full pipe never stalls it; `output()` is what it wrote so far. Leaving the block kills it if still running."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self._lines.extend(self.proc.stderr), daemon=True)  # type: ignore[arg-type]
        self._reader.start()

    def output(self) -> str:
        return "".join(self._lines)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
