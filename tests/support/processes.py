"""The workers as a user runs them: `records worker sink` and `records worker streams` as
subprocesses of the test, with their logs in files and their metrics on free ports."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clickhouse_connect.driver.client import Client
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from prometheus_client.parser import text_string_to_metric_families

from pipeline import topics
from pipeline.chdb_owner import Owner, read_owner
from pipeline.kafka.admin import KafkaAdmin
from records.child_process import terminate
from records.local_kafka import free_port
from tests.support.cli import RECORDS, chdb_env, cli_env
from tests.support.endpoint import owner_client
from tests.support.kafka_offsets import start_group_at_end
from tests.support.worker_secrets import COMMAND_KEY, PEPPER_HEX, trusted_keys_env

# What the streams worker reads, and the topics faust creates for an app id (`{app_id}-{name}`).
STREAMS_INPUTS = (topics.CHAT, topics.CALL, topics.CONSENT, topics.DSR, topics.CONTACT_FORM)
CHANGELOGS = ("consent-changelog", "erasures-changelog", "dsr-seen-changelog", "__assignor-__leader")


class SinkProcess:
    """`records worker sink` on the embedded store at `chdb_path`, reading the topics with
    `suffix` under `group`; its output goes to `log`, its metrics to a free port."""

    def __init__(
        self,
        chdb_path: Path,
        bootstrap: str,
        group: str,
        suffix: str,
        log: Path,
        *,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.chdb_path = chdb_path
        self.metrics_port = free_port()
        # It trusts the test DPO and streams workers' keys unless the caller's environment or
        # `extra_env` names others.
        trusted = trusted_keys_env(log.parent / f"{log.stem}-keys")
        env = trusted | chdb_env(
            chdb_path, KAFKA_BOOTSTRAP=bootstrap, RECORDS_SINK_METRICS_PORT=str(self.metrics_port), **(extra_env or {})
        )
        command = [*RECORDS, "worker", "sink"]
        command += ["--batch-size", "2000", "--batch-max-s", "0.2", "--http-port", "0", "--retention-every", "0"]
        command += ["--group-id", group, "--topic-suffix", suffix]
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def owner(self, timeout: float = 60.0) -> Owner:
        """The sink's owner record of the store, once it has started serving it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owner = read_owner(self.chdb_path)
            if owner is not None and owner.pid == self.process.pid:
                return owner
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError(f"the sink did not start:\n{self.log.read_text()[-3000:]}")

    def client(self, owner: Owner) -> Client:
        """clickhouse-connect on the sink's endpoint, logged in with its owner credential."""
        return owner_client(owner, self.chdb_path)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of the first sample `name` with `labels` on the metrics endpoint, if any."""
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def kill(self, sig: signal.Signals) -> int:
        """Send `sig` and return the exit code."""
        self.process.send_signal(sig)
        return self.process.wait(30)


@dataclass
class WorkerProcess:
    """`records worker streams --app-id APP_ID` on `bootstrap`, with the test pepper and
    trusting the test DPO key (`worker_secrets`); `start` returns once the worker is ready."""

    app_id: str
    bootstrap: str
    data_dir: Path
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # more options of `records worker streams`

    def start(self, timeout: float = 90.0) -> None:
        """Start the worker and wait until it says it is ready; fails with its log otherwise."""
        env = cli_env(
            without=("RECORDS_PEPPER_FILE", "RECORDS_GEOIP_CITY_DB"),
            KAFKA_BOOTSTRAP=self.bootstrap,
            RECORDS_DATA_DIR=str(self.data_dir),
            RECORDS_PEPPER=PEPPER_HEX,
            RECORDS_STREAMS_METRICS_PORT=str(self.metrics_port),
            **self.extra_env,
        )
        env.update(trusted_keys_env(self.data_dir))  # writes command.pub.pem, for a sink to trust
        command_key = self.data_dir / "command.pem"
        command_key.write_bytes(COMMAND_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        env["RECORDS_COMMAND_KEY"] = str(command_key)
        self.log_path = self.data_dir / f"worker-{time.monotonic_ns()}.log"
        command = [str(Path(sys.executable).with_name("records")), "worker", "streams", "--app-id", self.app_id]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if "Worker ready" in self.log():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.log()[-3000:]}")

    @property
    def command_public_key(self) -> Path:
        """The public half of the key the worker signs its commands with (for a sink to trust)."""
        return self.data_dir / "command.pub.pem"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        if self.process is not None:
            terminate(self.process, 30)

    def log(self) -> str:
        """Everything the worker wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """(name, sorted labels) -> value of every `_total` sample on the metrics endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.endswith("_total")
        }


@contextlib.contextmanager
def running_streams(bootstrap: str, admin: KafkaAdmin, work: Path, name: str) -> Iterator[WorkerProcess]:
    """A streams worker of a fresh app id (`name` in it) on every topic of the topic plan,
    its group starting at the current end of its inputs; its changelogs deleted after."""
    admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    app_id = f"cs-streams-{name}-{uuid.uuid4().hex[:8]}"
    start_group_at_end(bootstrap, app_id, STREAMS_INPUTS)
    worker = WorkerProcess(app_id, bootstrap, work / app_id)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        admin.delete_topics([f"{app_id}-{suffix}" for suffix in CHANGELOGS])
