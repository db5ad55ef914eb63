"""What a Kafka error means to the flusher: error classes, `classify`, `describe`, a discarded producer's errors."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from edge.sinks.kafka.config import LOGGER

log = logging.getLogger(LOGGER)

K = KafkaError
# The broker refuses this message for what it is: retrying cannot help.
PERMANENT_MESSAGE_ERRORS = frozenset(
    {K.MSG_SIZE_TOO_LARGE, K.RECORD_LIST_TOO_LARGE, K.INVALID_RECORD, K.INVALID_MSG_SIZE, K._BAD_MSG,
     K._INVALID_ARG, K._VALUE_SERIALIZATION, K._KEY_SERIALIZATION}
)
# Size errors from the broker may be about the whole batch: the message is resent alone before it is condemned.
SIZE_ERRORS = frozenset({K.MSG_SIZE_TOO_LARGE, K.RECORD_LIST_TOO_LARGE})
# The idempotent producer can no longer guarantee order/no-duplicates: destroy it and start a new one.
PRODUCER_BROKEN_ERRORS = frozenset(
    {K._FATAL, K._FENCED, K.PRODUCER_FENCED, K.OUT_OF_ORDER_SEQUENCE_NUMBER, K.INVALID_PRODUCER_EPOCH,
     K.UNKNOWN_PRODUCER_ID, K.INVALID_PRODUCER_ID_MAPPING}
)
# Nothing gets through: no broker, no name resolution, refused credentials, or the topic is not writable.
# Topic errors hold the events (an operator fixes ACLs or creates the topic) rather than dead-lettering
# the whole backlog.
UNREACHABLE_ERRORS = frozenset(
    {K._ALL_BROKERS_DOWN, K._RESOLVE, K._AUTHENTICATION, K.SASL_AUTHENTICATION_FAILED, K._SSL,
     K._MSG_TIMED_OUT, K._TIMED_OUT, K._TRANSPORT, K.REQUEST_TIMED_OUT, K.TOPIC_AUTHORIZATION_FAILED,
     K.CLUSTER_AUTHORIZATION_FAILED, K.UNKNOWN_TOPIC_OR_PART, K._UNKNOWN_TOPIC, K._UNKNOWN_PARTITION,
     K.TOPIC_EXCEPTION}
)
CLIENT_DOWN_ERRORS = UNREACHABLE_ERRORS - {K._TRANSPORT}  # error_cb: one broker's disconnect is not an outage


class Kind(enum.Enum):
    """What an error about one message calls for, checked in this order."""

    PERMANENT = "permanent"  # the message itself is refused: dead-letter it
    BROKEN = "broken"  # the producer can no longer deliver: recreate it
    UNREACHABLE = "unreachable"  # no broker gets it: an outage
    TRANSIENT = "transient"  # anything else: send it again later


def classify(err: KafkaError | None) -> Kind:
    """The Kind of a failed delivery or produce; an unknown error (None) is TRANSIENT."""
    code = err.code() if err is not None else None
    if code in PERMANENT_MESSAGE_ERRORS:
        return Kind.PERMANENT
    if err is not None and breaks_producer(err):
        return Kind.BROKEN
    if code in UNREACHABLE_ERRORS:
        return Kind.UNREACHABLE
    return Kind.TRANSIENT


def breaks_producer(err: KafkaError) -> bool:
    """A fatal error, or one after which the idempotent producer cannot keep its guarantees."""
    return bool(err.fatal()) or err.code() in PRODUCER_BROKEN_ERRORS


def error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def describe(err: KafkaError | None) -> str:
    """`NAME: text` for logs and dead letters."""
    return "unknown error" if err is None else f"{err.name()}: {err.str()}"


def quietly(call: Callable[[], Any]) -> bool:
    """Run `call` on a producer being discarded; False if it raised (logged): the release that follows must happen."""
    try:
        call()
    except KafkaException as exc:  # what a producer with a fatal error answers
        log.debug("discarded kafka producer: %s", exc)
    except Exception:  # a broken client must not stop the release either
        log.exception("error while discarding the kafka producer")
    else:
        return True
    return False
