"""The one set of exit codes of every command (listed in `edge --help` and README)."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # failed while running (broker never acknowledged, stage failed, disk stayed full)
    USAGE = 2  # usage or configuration error; the state dir is in use by another process
    BAD_INPUT = 3  # unusable input: model, video, image, GPS track, CSV file
    INTERRUPTED = 130  # SIGINT, as a shell reports it
    BROKEN_PIPE = 141  # the reader of the output went away (`| head`)
    TERMINATED = 143  # SIGTERM: replay and ingest-csv print their summary and can be resumed

    @classmethod
    def for_signal(cls, signum: int) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + int(signum)


EPILOG = ("Exit codes: 0 ok, 1 failed while running, 2 usage or configuration error, 3 unusable input "
          "(model, video, image, GPS track), 130 interrupted (SIGINT), 141 output closed by its reader (e.g. | head), "
          "143 stopped by SIGTERM (replay, ingest-csv: summary printed, resumable).")
