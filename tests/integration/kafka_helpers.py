"""Helpers for tests against a real Kafka-protocol broker: a cuttable TCP proxy, event makers, a consumer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

HOST = "127.0.0.1"


class TcpProxy:
    """Forwards a loopback port to an upstream `host:port`; `cut()` closes every connection and
    refuses new ones (the port stops listening), `restore()` listens again on the same port."""

    def __init__(self, upstream_port: int | None = None, *, port: int = 0, start_cut: bool = False):
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.connections_total = 0
        # Reserve the port: bind once to learn it, then keep or give it back per start_cut.
        probe = self._bind(port)
        self.port = int(probe.getsockname()[1])
        if start_cut:
            probe.close()
        else:
            self._serve(probe)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @staticmethod
    def _bind(port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(128)
        s.settimeout(0.2)  # accept() wakes up to notice a cut even where close() does not interrupt it
        return s

    def _serve(self, listener: socket.socket) -> None:
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener,), name=f"proxy-{self.port}", daemon=True)
        self._acceptor.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                if listener is self._listener:
                    continue
                return
            except OSError:
                return  # listener closed by cut()/close()
            client.settimeout(None)
            if self.upstream_port is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if listener is not self._listener:  # cut while we were connecting
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
                self.connections_total += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._conns.discard(s)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> None:
        """Close every connection at once and stop listening: new connections are refused."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns = list(self._conns)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() on Linux
            listener.close()
        self._drop(*conns)
        if self._acceptor is not None:
            self._acceptor.join(5)

    def restore(self, deadline_s: float = 5.0) -> None:
        """Listen on the same port again and forward new connections."""
        if self._listener is not None:
            return
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                listener = self._bind(self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._serve(listener)

    def close(self) -> None:
        self.cut()


# ---------------------------------------------------------------- events


@dataclass
class EventSpec:
    """What a test put in: detection ids in order, per vehicle."""

    by_vehicle: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return {i for ids in self.by_vehicle.values() for i in ids}


def event_json(vehicle: str, seq: int, det_id: str, captured_at: float, pad: int = 0) -> bytes:
    """A realistic ~400-byte detection event; `frame_number` is the per-vehicle sequence number."""
    ev = {
        "detection_id": det_id,
        "vehicle_id": vehicle,
        "session_id": "20250101-abcdef",
        "ingested_at": "2025-01-01T00:00:00.000Z",
        "frame_number": seq,
        "timestamp_sec": round(seq / 5.0, 3),
        "pixel_u": 612.5,
        "pixel_v": 402.25,
        "confidence": 0.8731,
        "class_name": "stop sign",
        "vehicle_lat": 37.774929,
        "vehicle_lon": -122.419416,
        "heading": 271.5,
        "camera_id": "cam-front",
        "class_id": 11,
        "bbox": [580.0, 350.5, 645.0, 402.25],
        "inference_latency_ms": 151.2,
        "captured_at": "2025-01-01T00:00:00.000Z",
        "model": "yolov8n.onnx",
        "source": "cam0",
        "gps_source": "gpsd",
        "gps_status": "ok",
        "gps_age_ms": 120,
        "schema_version": 1,
    }
    if pad:
        ev["pad"] = "x" * pad
    return json.dumps(ev, separators=(",", ":")).encode()


def make_items(
    n: int, vehicles: int = 3, *, now: float | None = None, item_cls: Callable[..., object] | None = None
) -> tuple[list[object], EventSpec]:
    """`n` SpoolItems round-robin over `vehicles` vehicles, and the spec of what was made."""
    if item_cls is None:
        from edge.spool import SpoolItem as item_cls  # noqa: N813
    now = time.time() if now is None else now
    spec = EventSpec()
    items = []
    counters = [0] * vehicles
    for i in range(n):
        v = i % vehicles
        vehicle = f"vehicle-{v:03d}"
        seq = counters[v]
        counters[v] += 1
        det = str(uuid.uuid4())
        spec.by_vehicle.setdefault(vehicle, []).append(det)
        items.append(item_cls(key=vehicle, value=event_json(vehicle, seq, det, now), detection_id=det, captured_at=now))
    return items, spec


# ---------------------------------------------------------------- consumer side


@dataclass
class Consumed:
    """What a consumer read from a topic."""

    count: int = 0  # messages, duplicates included
    ids: set[str] = field(default_factory=set)
    # (partition, vehicle) -> per-vehicle sequence numbers in offset order
    seqs: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    header_mismatch: list[str] = field(default_factory=list)
    keys_by_partition: dict[int, set[str]] = field(default_factory=dict)
    variants: dict[str, set[bytes]] = field(default_factory=dict)  # detection_id -> distinct message values

    def duplicates(self) -> int:
        return self.count - len(self.ids)


def consume_until(
    bootstrap: str, topic: str, expected_ids: Iterable[str], deadline_s: float, *, idle_after_s: float = 0.0
) -> Consumed:
    """Read `topic` from the beginning until every expected id was seen (or the deadline), then
    keep reading `idle_after_s` more seconds to catch late duplicates."""
    expected = set(expected_ids)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "reconnect.backoff.max.ms": 500,
        }
    )
    out = Consumed()
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + deadline_s
        stop_at: float | None = None
        while time.monotonic() < (stop_at or deadline):
            msgs = c.consume(num_messages=1000, timeout=0.2)
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                _record(out, m)
            if stop_at is None and expected <= out.ids:
                stop_at = min(deadline, time.monotonic() + idle_after_s)
    finally:
        c.close()
    return out


def _record(out: Consumed, m: object) -> None:
    body = json.loads(m.value())  # type: ignore[attr-defined]
    headers = dict(m.headers() or [])  # type: ignore[attr-defined]
    det = body["detection_id"]
    if headers.get("detection_id", b"").decode() != det or headers.get("content-type") != b"application/json":
        out.header_mismatch.append(det)
    out.count += 1
    out.ids.add(det)
    out.variants.setdefault(det, set()).add(m.value())  # type: ignore[attr-defined]
    key = m.key().decode()  # type: ignore[attr-defined]
    out.keys_by_partition.setdefault(m.partition(), set()).add(key)  # type: ignore[attr-defined]
    out.seqs.setdefault((m.partition(), body["vehicle_id"]), []).append(body["frame_number"])  # type: ignore[attr-defined]


@contextlib.contextmanager
def running(flusher: object) -> Iterator[threading.Event]:
    """Run `flusher.run(stop)` in a thread for the block; stop, join and close it after."""
    stop = threading.Event()
    t = threading.Thread(target=flusher.run, args=(stop,), name="test-flusher", daemon=True)  # type: ignore[attr-defined]
    t.start()
    try:
        yield stop
    finally:
        stop.set()
        t.join(10)
        flusher.close()  # type: ignore[attr-defined]
        assert not t.is_alive(), "flusher thread did not stop within 10 s"


# ---------------------------------------------------------------- a broker replaced on the same address


class ReplaceableBroker:
    """A Tansu broker on a fixed loopback port that a test can stop and replace by a fresh one on the same port:
    the new broker knows no topic and no producer id (Tansu keeps everything in memory)."""

    def __init__(self, log_dir: object):
        from pathlib import Path

        from edge.localkafka.broker import LocalBroker, free_port

        self._log_dir, self._make = Path(str(log_dir)), LocalBroker
        self.port = free_port()
        self.generation = 0
        self.current = self._start()

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _start(self) -> object:
        self.generation += 1
        return self._make(self._log_dir / f"gen{self.generation}", port=self.port).start()

    def create_topic(self, name: str, partitions: int = 3) -> str:
        self.current.create_topic(name, partitions=partitions)  # type: ignore[attr-defined]
        return name

    def stop(self) -> None:
        """Stop the running broker (SIGINT: Tansu ignores SIGTERM); clients see refused connections."""
        self.current.stop()  # type: ignore[attr-defined]

    def start_fresh(self) -> None:
        """A new broker on the same port, with no topic and no producer id."""
        self.current = self._start()

    def close(self) -> None:
        self.current.stop()  # type: ignore[attr-defined]


class AckLog:
    """Records every seq a spool acks, with the time of the ack: `monkeypatch.setattr(Spool, "ack", log.ack)`."""

    def __init__(self, original: Callable[..., None]):
        self._lock = threading.Lock()
        self.acks: list[tuple[float, int]] = []

        def ack(spool: object, seqs: Iterable[int]) -> None:
            seqs = list(seqs)
            now = time.monotonic()
            original(spool, seqs)
            with self._lock:
                self.acks.extend((now, s) for s in seqs)

        self.ack = ack

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.acks)

    def before(self, t: float) -> set[int]:
        """Seqs acked before monotonic time `t`."""
        with self._lock:
            return {s for at, s in self.acks if at < t}

    def first_after(self, t: float) -> float | None:
        """Monotonic time of the first ack at or after `t`, None if there was none."""
        with self._lock:
            return min((at for at, _ in self.acks if at >= t), default=None)

    def seqs(self) -> list[int]:
        with self._lock:
            return [s for _, s in self.acks]
