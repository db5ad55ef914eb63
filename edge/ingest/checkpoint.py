"""Where each CSV ingestion stands: a small SQLite table in the state directory, written after every spool append.

Invariant: a checkpoint is written only after `Spool.append()` returned for every row before its offset,
so a run killed at any moment and started again from the checkpoint loses nothing. Rows after the last
checkpoint may already be in the spool; they are appended again with the same detection ids (at most
one chunk; consumers deduplicate on detection_id).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS progress (
    file_key     TEXT PRIMARY KEY,   -- path, size, mtime, session, vehicle: same arguments, same file
    path         TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    offset       INTEGER NOT NULL,   -- bytes of the (decompressed) file consumed
    next_line    INTEGER NOT NULL,
    rows         INTEGER NOT NULL,
    accepted     INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    rejects_path TEXT NOT NULL,
    rejects_size INTEGER NOT NULL,   -- length of the rejects file when this was written
    done         INTEGER NOT NULL,
    updated_at   REAL NOT NULL
);
"""


@dataclass
class Progress:
    file_key: str
    path: str
    session_id: str
    offset: int | None = None  # None: just after the header
    next_line: int = 2
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    rejects_path: str = ""
    rejects_size: int = 0
    done: bool = False


class CheckpointError(RuntimeError):
    """The progress file cannot be used (another format version, not a database)."""


class Checkpoints:
    """The progress table of `edge ingest-csv` (one row per input file and arguments)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            elif row[0] != str(FORMAT_VERSION):
                raise CheckpointError(f"{self.path}: progress format {row[0]}, this version reads {FORMAT_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

    def get(self, file_key: str) -> Progress | None:
        row = self._db.execute(
            "SELECT file_key, path, session_id, offset, next_line, rows, accepted, rejected, rejects_path, "
            "rejects_size, done FROM progress WHERE file_key=?",
            (file_key,),
        ).fetchone()
        if row is None:
            return None
        p = Progress(*row)
        p.done = bool(p.done)
        return p

    def save(self, p: Progress) -> None:
        """Durable on return (synchronous=FULL)."""
        self._db.execute(
            "INSERT OR REPLACE INTO progress VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (p.file_key, p.path, p.session_id, p.offset, p.next_line, p.rows, p.accepted, p.rejected,
             p.rejects_path, p.rejects_size, int(p.done), time.time()),
        )

    def forget(self, file_key: str) -> None:
        self._db.execute("DELETE FROM progress WHERE file_key=?", (file_key,))

    def close(self) -> None:
        self._db.close()
