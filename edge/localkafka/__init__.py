"""A local Kafka-protocol broker (Tansu, in memory) and a topic reader, for `edge demo`, tests and benchmarks."""

from edge.localkafka.broker import LocalBroker
from edge.localkafka.topic import read_topic

__all__ = ["LocalBroker", "read_topic"]
