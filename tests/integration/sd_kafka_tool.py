"""Run inside the systemd test namespace (its own loopback): create a topic, or list the detection ids on it."""

from __future__ import annotations

import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            futures[topic].result(10)
            return
        except Exception as exc:  # noqa: BLE001 - broker still starting: retry until the deadline
            if "already exists" in str(exc).lower() or "TOPIC_ALREADY_EXISTS" in str(exc):
                return
            time.sleep(0.5)
    raise SystemExit(f"could not create {topic} on {bootstrap}")


def ids(bootstrap: str, topic: str, seconds: float) -> None:
    """Every detection id on the topic: partitions assigned directly (no group join), read to their end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sd-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen: list[str] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(at_end) < len(partitions):
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
            continue
        seen.append(json.loads(msg.value())["detection_id"])
    consumer.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    action, bootstrap, topic = sys.argv[1:4]
    if action == "create":
        create(bootstrap, topic)
    else:
        ids(bootstrap, topic, float(sys.argv[4]))
