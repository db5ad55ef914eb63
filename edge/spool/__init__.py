"""The durable spool between detection and Kafka; its invariants are written at the top of store.py."""

from edge.spool.records import (
    RecoveryReport,
    SpoolClosed,
    SpoolError,
    SpoolFull,
    SpoolItem,
    SpoolRecord,
    SpoolStats,
    Stream,
)
from edge.spool.schema import FORMAT_VERSION
from edge.spool.store import Spool

__all__ = [
    "FORMAT_VERSION",
    "RecoveryReport",
    "Spool",
    "SpoolClosed",
    "SpoolError",
    "SpoolFull",
    "SpoolItem",
    "SpoolRecord",
    "SpoolStats",
    "Stream",
]
