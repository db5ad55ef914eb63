"""CSV ingestion (`edge ingest-csv`): perception-layer CSV rows → DetectionEvents → spool → Kafka, resumable.

Layout: `reader` streams a file in chunks of whole lines; `convert` turns a chunk into events and rejects
(`fast`: vectorised numpy path for regular chunks, with `columns`: its field parsers and `template`: its
event layout derived from DetectionEvent; `rows`: the exact one-row-at-a-time path and the validation
rules, `ids`: vectorised UUIDv5); `run` drives files through a sink (`sinks`: spool, dry run)
with checkpoints (`checkpoint`); `cli` is the command.
"""

from edge.ingest.run import FileReport, Ingest, Options

__all__ = ["FileReport", "Ingest", "Options"]
