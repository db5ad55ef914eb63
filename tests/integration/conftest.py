"""Fixtures for tests against a real Kafka-protocol broker (Tansu): a shared broker, a broker behind a
cuttable proxy, a fresh topic per test, a real spool."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edge.localkafka.broker import BrokerError, LocalBroker, find_broker_binary
from tests.support import open_spool


def _require_tansu() -> None:
    try:
        find_broker_binary()
    except BrokerError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tansu(tmp_path_factory) -> Iterator[LocalBroker]:
    """One broker for the session: tests isolate themselves with their own topic."""
    _require_tansu()
    with LocalBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture
def kafka_topic(tansu: LocalBroker) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    tansu.create_topic(name, partitions=3)
    return name


@dataclass
class ProxiedBroker:
    """A broker whose advertised address is a proxy the test can cut: every client connection goes through it."""

    broker: LocalBroker
    proxy: object  # kafka_helpers.TcpProxy

    @property
    def bootstrap(self) -> str:
        return self.proxy.address  # type: ignore[attr-defined]

    def create_topic(self, partitions: int = 3) -> str:
        """A fresh topic (the proxy must be up: the controller is reached through it)."""
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.broker.create_topic(name, partitions=partitions)
        return name


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory) -> Iterator[ProxiedBroker]:
    from kafka_helpers import TcpProxy

    _require_tansu()
    proxy = TcpProxy(None, start_cut=True)  # reserve the port the broker will advertise
    broker = LocalBroker(tmp_path_factory.mktemp("tansu-proxied"), advertised_port=proxy.port)
    with broker:
        proxy.upstream_port = broker.port
        proxy.restore()
        try:
            yield ProxiedBroker(broker, proxy)
        finally:
            proxy.close()


@pytest.fixture
def spool(tmp_path):
    s = open_spool(tmp_path / "spool.db", commit_interval_ms=0.0)  # the production default
    try:
        yield s
    finally:
        s.close()
