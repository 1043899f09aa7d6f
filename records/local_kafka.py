"""The real Apache Kafka broker, run locally: one combined broker + controller (KRaft)
on 127.0.0.1, its jars fetched from Maven Central, its data, log and pid file in one
state directory (`settings.kafka_dir`, default `.data/kafka`).

Start and stop are idempotent. `start` waits until a metadata request succeeds; `stop`
sends SIGTERM to the recorded pid, then SIGKILL after a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from pipeline.config import KafkaConnection, Settings
from pipeline.exceptions import BrokerError
from pipeline.private_files import FILE_MODE, PRIVATE_UMASK, private_dir, private_file, restrict_tree

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "local" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"
DEFAULT_PORT = 9092
HOST = "127.0.0.1"
_COMPLETE_MARKER = ".complete"
_JAVA_HINT = "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
_MVN_HINT = "install Maven (Debian: apt-get install maven)"

# librdkafka logs every refused connection while the broker starts; probes stay quiet.
_SILENT = logging.getLogger("records.local_kafka.probe")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    uptime_s: float | None

    def describe(self) -> str:
        if not self.running:
            return f"kafka broker not running ({self.bootstrap})"
        return f"kafka broker running on {self.bootstrap} (pid {self.pid}, up {self.uptime_s or 0:.0f} s)"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` is not installed or not on PATH: {hint}")
    return path


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def jars_present(libs_dir: Path) -> bool:
    """True if `libs_dir` holds a complete download for the current pom.xml."""
    marker = libs_dir / _COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


def fetch_jars(libs_dir: Path, *, quiet: bool = True) -> bool:
    """Download the broker's jars into `libs_dir` unless a complete copy is there.

    Returns True if it downloaded. The marker, written last and naming the pom's digest,
    makes a half-finished download (or one for another Kafka version) start over.
    """
    if jars_present(libs_dir):
        return False
    mvn = _require("mvn", _MVN_HINT)
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    # One download at a time (a test session and a CLI call may both get here).
    with open(libs_dir.with_name(libs_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jars_present(libs_dir):
            return False
        _download(mvn, libs_dir, quiet=quiet)
    return True


def _download(mvn: str, libs_dir: Path, *, quiet: bool) -> None:
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
        tail = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-3:]
        raise BrokerError("maven could not fetch the Kafka jars: " + " | ".join(tail))
    (libs_dir / _COMPLETE_MARKER).write_text(_pom_digest() + "\n")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM: a port left in TIME_WAIT by a stopped broker counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or None where /proc cannot tell (not Linux)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return [] if Path("/proc/self").exists() else None
    except OSError:
        return None


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (tests start it in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def metadata_ok(connection: KafkaConnection, timeout: float = 2.0) -> bool:
    """True if the cluster answers a metadata request within `timeout` seconds."""
    config: dict[str, Any] = {**connection.as_librdkafka_dict(), "log_level": 0, "logger": _SILENT}
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout; any failure means "not answering"
        return False
    return bool(metadata.brokers)


def _cluster_id() -> str:
    """A random KRaft cluster id, as `StorageTool random-uuid` makes it (without a JVM)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like an option
            return cluster_id


class LocalBroker:
    """One local broker: data, log and pid file in `state_dir`, jars in `libs_dir`."""

    def __init__(
        self,
        state_dir: Path,
        libs_dir: Path,
        *,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        heap: str = "512m",
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.libs_dir = libs_dir.resolve()
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.heap = heap
        # what the broker keeps in state_dir
        self.pid_file = self.state_dir / "broker.pid"
        self.log_file = self.state_dir / "broker.log"
        self.stdout_file = self.state_dir / "broker.stdout"
        self.properties_file = self.state_dir / "server.properties"
        self.data_dir = self.state_dir / "data"

    @classmethod
    def from_settings(cls, settings: Settings, *, port: int = DEFAULT_PORT) -> LocalBroker:
        return cls(settings.kafka_dir, settings.kafka_libs_dir, port=port)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    # ---- state ------------------------------------------------------------------------

    def _recorded(self) -> tuple[int, int] | None:
        """(pid, port) from the pid file, if that process is still our broker."""
        try:
            pid_text, port_text = self.pid_file.read_text().split()
            pid, port = int(pid_text), int(port_text)
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        args = _cmdline(pid)
        if args is not None and not ("kafka.Kafka" in args and str(self.properties_file) in args):
            return None  # the pid was reused by another program
        return pid, port

    def status(self) -> BrokerStatus:
        recorded = self._recorded()
        if recorded is None:
            return BrokerStatus(False, None, self.bootstrap, None)
        pid, port = recorded
        uptime = time.time() - self.pid_file.stat().st_mtime
        return BrokerStatus(True, pid, f"{HOST}:{port}", uptime)

    # ---- start ------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> tuple[BrokerStatus, bool]:
        """Start the broker unless it runs; returns (status, started_now)."""
        current = self.status()
        if current.running:
            if metadata_ok(KafkaConnection(current.bootstrap)):
                return current, False
            raise BrokerError(
                f"the broker process (pid {current.pid}) does not answer on {current.bootstrap}: "
                f"run `records down`, then see {self.log_file}"
            )
        for port in (self.port, self.controller_port):
            if not _port_free(port):
                raise BrokerError(f"port {port} on {HOST} is already in use by another program")
        java = _require("java", _JAVA_HINT)
        fetch_jars(self.libs_dir)
        private_dir(self.state_dir)
        restrict_tree(self.state_dir)  # segments and logs an older version left readable
        self._write_properties()
        self._format_storage(java)
        process = self._launch(java)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited with code {process.returncode}: {self._log_tail()}")
            if metadata_ok(KafkaConnection(self.bootstrap), timeout=1.0):
                return self.status(), True
            time.sleep(0.2)
        tail = self._log_tail()
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s: {tail}")

    def _write_properties(self) -> None:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            # Topics come from pipeline/topics.py (`records topics ensure`), never by accident.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The cleaner looks for compactable logs every second, so tombstones act soon.
            "log.cleaner.backoff.ms": "1000",
        }
        private_file(self.properties_file, "".join(f"{k}={v}\n" for k, v in properties.items()))

    def _format_storage(self, java: str) -> None:
        """Format KRaft storage once (a single voter: --standalone)."""
        if (self.data_dir / "meta.properties").exists():
            return
        command = [
            java,
            "-cp",
            f"{self.libs_dir}/*",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _cluster_id(),
            "-c",
            str(self.properties_file),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False, umask=PRIVATE_UMASK)
        if result.returncode != 0:
            lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
            raise BrokerError("formatting KRaft storage failed: " + (lines[-1] if lines else "no output"))

    def _launch(self, java: str) -> subprocess.Popen[bytes]:
        command = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.state_dir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        # Its own session: the broker outlives the command that started it and ignores
        # the terminal's Ctrl-C. stdout only gets what log4j does not (JVM messages).
        # umask 077: the broker's segments, checkpoints and logs are private to this user.
        fd = os.open(self.stdout_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        with os.fdopen(fd, "ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        private_file(self.pid_file, f"{process.pid} {self.port}\n")
        return process

    def _log_tail(self) -> str:
        """The last error the broker wrote (else its last line), and where its log is."""
        lines: list[str] = []
        for path in (self.log_file, self.stdout_file):
            with contextlib.suppress(OSError):
                lines += [line.strip() for line in path.read_text(errors="replace").splitlines()[-200:] if line.strip()]
        errors = [line for line in lines if " ERROR " in line or " FATAL " in line or "Exception" in line]
        last = (errors or lines or ["(no output)"])[-1]
        return f"{last[:300]} (log: {self.log_file})"

    # ---- stop -------------------------------------------------------------------------

    def stop(self, *, timeout: float = 20.0) -> bool:
        """Stop the broker if it runs; returns True if it was running."""
        recorded = self._recorded()
        if recorded is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        pid, _ = recorded
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            self._signal(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
