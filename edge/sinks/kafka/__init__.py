"""The Kafka flusher (its invariants open flusher.py): producer config, error classes, delivery reports."""

from edge.sinks.kafka.config import producer_config, redact
from edge.sinks.kafka.flusher import KafkaFlusher, Step

__all__ = ["KafkaFlusher", "Step", "producer_config", "redact"]
