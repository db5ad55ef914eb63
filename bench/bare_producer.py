"""The reference of the delivery benchmarks: a bare confluent-kafka producer process, nothing of edge imported.

    python bench/bare_producer.py CONFIG_JSON FILE TOPIC

Produces every line of FILE (key TAB detection_id TAB value, pre-serialised) with the headers the flusher sends,
the librdkafka settings in CONFIG_JSON (edge.sinks.kafka.producer_config, written by the benchmark), and waits for
every delivery report. Exit 0 when every event was acknowledged.
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import Producer


def tsv_line(key: str, detection_id: str, value: bytes) -> bytes:
    """One pre-serialised event as this script reads it: key TAB detection_id TAB value, newline."""
    return b"%s\t%s\t%s\n" % (key.encode(), detection_id.encode(), value)


def main(config_json: str, path: str, topic: str) -> int:
    producer = Producer(json.loads(config_json))
    done = {"ok": 0, "err": 0}

    def on_delivery(err, _msg):  # noqa: ANN001
        done["err" if err else "ok"] += 1

    ct, version = ("content-type", b"application/json"), ("schema_version", "1")
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            key, did, value = line.rstrip(b"\n").split(b"\t", 2)
            while True:
                try:
                    producer.produce(topic, value, key, headers=[("detection_id", did), version, ct], on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            n += 1
    producer.flush(300)
    if done["ok"] != n:
        print(f"bare producer: {done} of {n}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
