"""The real Apache Kafka broker, run locally: one combined broker + controller (KRaft)
on 127.0.0.1, its jars from Maven Central, its data and log under `.data/kafka`.

Start and stop are idempotent. `start` waits until a metadata request succeeds; `stop`
sends SIGTERM to the recorded pid, then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from pipeline.exceptions import BrokerError

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "local" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"
DEFAULT_PORT = 9092
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    uptime_s: float | None

    def describe(self) -> str:
        if not self.running:
            return f"kafka broker not running ({self.bootstrap})"
        return f"kafka broker running on {self.bootstrap} (pid {self.pid}, up {self.uptime_s:.0f} s)"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` is not installed or not on PATH: {hint}")
    return path


def fetch_jars(libs_dir: Path, *, quiet: bool = True) -> bool:
    """Download the broker's jars into `libs_dir` unless a complete copy is there.

    Returns True if it downloaded. A marker written after a complete download makes a
    half-finished one start over.
    """
    if (libs_dir / _COMPLETE_MARKER).exists():
        return False
    mvn = _require("mvn", "install Maven (Debian: apt-get install maven)")
    if libs_dir.exists():
        shutil.rmtree(libs_dir)
    libs_dir.mkdir(parents=True)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs_dir}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise BrokerError("maven could not fetch the Kafka jars: " + " | ".join(tail))
    (libs_dir / _COMPLETE_MARKER).write_text("ok\n")
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def metadata_ok(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if a broker at `bootstrap` answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _SILENT})  # type: ignore[dict-item]
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout; any failure means "not answering"
        return False
    return bool(metadata.brokers)


# librdkafka logs every refused connection while the broker starts; probes stay quiet.
_SILENT = logging.getLogger("pipeline.local_kafka.probe")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


class LocalBroker:
    """One local broker in `state_dir` (data, log, pid file) listening on `port`."""

    def __init__(
        self,
        state_dir: Path,
        libs_dir: Path,
        *,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        heap: str = "512m",
    ) -> None:
        self.state_dir = state_dir
        self.libs_dir = libs_dir
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.heap = heap

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def _recorded(self) -> tuple[int, int] | None:
        """(pid, port) from the pid file, if the process is still alive."""
        try:
            pid_text, port_text = self.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid, port = int(pid_text), int(port_text)
        return (pid, port) if _pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        recorded = self._recorded()
        if recorded is None:
            return BrokerStatus(False, None, self.bootstrap, None)
        pid, port = recorded
        uptime = time.time() - self.pid_file.stat().st_mtime
        return BrokerStatus(True, pid, f"127.0.0.1:{port}", uptime)

    def _write_properties(self) -> Path:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "5000",
        }
        path = self.state_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        return path

    def _java(self, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
        java = _require("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
        return subprocess.run(
            [java, "-cp", f"{self.libs_dir}/*", *args], capture_output=capture, text=True, check=False
        )

    def _format_storage(self, properties: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster = self._java("kafka.tools.StorageTool", "random-uuid").stdout.strip().splitlines()[-1]
        result = self._java(
            "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster, "-c", str(properties)
        )
        if result.returncode != 0:
            raise BrokerError("formatting KRaft storage failed: " + (result.stderr or result.stdout).strip()[-300:])

    def start(self, *, timeout: float = 60.0) -> tuple[BrokerStatus, bool]:
        """Start the broker unless it runs; returns (status, started_now)."""
        current = self.status()
        if current.running and metadata_ok(current.bootstrap):
            return current, False
        if current.running:
            raise BrokerError(f"a broker process (pid {current.pid}) exists but does not answer: run `records down`")
        for port in (self.port, self.controller_port):
            if not _port_free(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already in use by another program")
        _require("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
        fetch_jars(self.libs_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_properties()
        self._format_storage(properties)
        java = _require("java", "install a Java 17+ runtime")
        command = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.state_dir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(properties),
        ]
        with open(self.state_dir / "broker.stdout", "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(f"{process.pid} {self.port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited with code {process.returncode}: see {self.log_file}")
            if metadata_ok(self.bootstrap, timeout=1.0):
                return self.status(), True
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s: see {self.log_file}")

    def stop(self, *, timeout: float = 20.0) -> bool:
        """Stop the broker if it runs; returns True if it was running."""
        recorded = self._recorded()
        if recorded is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        pid, _ = recorded
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (tests start it in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
