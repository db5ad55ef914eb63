"""Value types of the spool (items in, records out, stats), its errors, and the record checksum."""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from edge.clock import parse_iso_time
from edge.types import SCHEMA_VERSION, DetectionEvent

# Lengths and fixed fields go into the checksum too, so bytes cannot move between key and id unnoticed.
_CRC_HEADER = struct.Struct("<IIid")
_CRC_STREAM = struct.Struct("<i")
_crc32 = zlib.crc32


class Stream(enum.IntEnum):
    """Which Kafka topic a record goes to, stored with each record (the spool's `stream` column). Records of every
    stream share one spool, one seq order and one flusher; the values are on disk: never renumber them."""

    DETECTIONS = 0  # detection events, to kafka.topic
    OBJECTS = 1  # object records (one per tracked physical sign), to kafka.objects_topic


STREAMS = frozenset(int(s) for s in Stream)  # plain ints: the read path compares with them


class SpoolError(Exception):
    """The spool file cannot be used (unsupported format, not a spool, closed); the message names the path."""


class SpoolUnavailable(SpoolError):
    """The spool cannot be opened now (EMFILE, EACCES, EROFS, ENAMETOOLONG, SQLITE_BUSY, ...): nothing was changed."""


class SpoolBusy(SpoolError):
    """Another process owns the spool (and its state directory); the message names its pid and command line."""


class SpoolClosed(SpoolError):
    """The spool was closed; an append that was still waiting for room was not written."""


class SpoolFull(TimeoutError):
    """An append was not written: no room (policy `block` timed out, or the disk is full with nothing to evict)."""


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """What producers append: one event (or object record), already serialised."""

    key: str  # Kafka key (vehicle_id)
    value: bytes  # the event JSON, UTF-8
    detection_id: str  # the id consumers dedupe on (an object record's object_id)
    captured_at: float  # epoch seconds, for captured->acked latency
    schema_version: int = SCHEMA_VERSION
    stream: int = Stream.DETECTIONS  # which topic it goes to

    @classmethod
    def from_event(cls, event: DetectionEvent, captured_at: float | None = None) -> SpoolItem:
        """Serialise a DetectionEvent: key = vehicle_id; captured_at (the start of the delivery latency) is the
        event's capture time unless given."""
        return cls(
            key=event.vehicle_id,
            value=event.to_json().encode("utf-8"),
            detection_id=event.detection_id,
            captured_at=parse_iso_time(event.captured_at) if captured_at is None else captured_at,
            schema_version=event.schema_version,
        )


class SpoolRecord(NamedTuple):
    """What the flusher reads: an item with its place in the spool. A named tuple, not a dataclass: the flusher
    reads hundreds of thousands a second, and a tuple is built in a fifth of a frozen dataclass's time."""

    seq: int  # increasing, oldest first
    key: str
    value: bytes
    detection_id: str
    schema_version: int
    captured_at: float
    enqueued_at: float
    attempts: int
    stream: int = 0  # a Stream value (an int, as read back): the topic it goes to


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot for metrics and `edge queue stats`; `bytes` is the sum of key + value sizes of pending records."""

    depth: int
    bytes: int
    oldest_age_s: float | None  # now - enqueued_at of the oldest pending record
    in_flight: int
    dead: int
    quarantined: int
    evicted_total: int
    appended_total: int
    acked_total: int
    disk_full: bool
    max_bytes: int
    policy: str
    lost_total: int = 0  # events found missing at an open (lost or damaged WAL), over the spool's life


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening a corrupt spool did: where the old file went and what could be read back from it."""

    corrupt_path: Path  # the damaged file, moved aside and kept
    reason: str  # why it was judged corrupt (quick_check output or the error)
    salvaged: int  # records copied into the fresh spool (pending and dead)
    quarantined: int  # records read back but failing their checksum or decoding
    lost: int | None  # records known to have existed and not read back; None when unknown
    unreadable_ranges: int  # damaged stretches of the table that were skipped


@dataclass(frozen=True, slots=True)
class WalLoss:
    """What opening found missing: commits the spool's mark file had seen that the database no longer holds."""

    expected_last_seq: int  # the highest seq committed, from the mark file
    found_last_seq: int  # the highest seq the database holds now
    lost: int  # pending or dead events the mark counted that are gone


def checksum(
    key: bytes, value: bytes, detection_id: bytes, schema_version: int, captured_at: float, stream: int = 0
) -> int:
    """CRC32 over value, key, detection id and the fixed fields (TypeError/struct.error on wrong types). The stream
    goes in only when it is not 0: every row written before streams existed (format 1) keeps its checksum."""
    header = _CRC_HEADER.pack(len(key), len(detection_id), schema_version, captured_at)
    crc = _crc32(header, _crc32(detection_id, _crc32(key, _crc32(value))))
    return _crc32(_CRC_STREAM.pack(stream), crc) if stream else crc
