"""Reading a topic back (the demo, tests, benchmarks): every message as parsed JSON, from the beginning."""

from __future__ import annotations

import json
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

log = logging.getLogger(__name__)


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[dict]:
    """Every message on `topic` as parsed JSON, duplicates included, with `_partition` and `_offset` added.

    Partitions are assigned directly (a consumer-group join is slow on small brokers) and read to their
    current end."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"edge-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    out: list[dict] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(at_end) < len(partitions):
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    else:
                        log.warning("consumer: %s", msg.error())
                    continue
                event = json.loads(msg.value())
                event["_partition"], event["_offset"] = msg.partition(), msg.offset()
                out.append(event)
    finally:
        consumer.close()
    return out
