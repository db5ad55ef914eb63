"""Run inside the systemd test namespace (its own loopback): create a topic, or list the detection ids on it."""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

from edge.localkafka.topic import read_topic


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
    print(json.dumps([event["detection_id"] for event in read_topic(bootstrap, topic, seconds)]))


if __name__ == "__main__":
    action, bootstrap, topic = sys.argv[1:4]
    if action == "create":
        create(bootstrap, topic)
    else:
        ids(bootstrap, topic, float(sys.argv[4]))
