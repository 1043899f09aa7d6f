"""A fresh, throw-away stack for the benchmark: its own Kafka broker on free ports, data
in a temporary directory, the topics, a random pepper and a DPO key pair; and the real
workers started as `records worker ...` subprocesses, observed through their
Prometheus metrics and /proc.

Nothing here touches the user's `.data` or the default ports; leaving `fresh_stack`
stops the broker and deletes the directory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings, load_settings
from pipeline.dsr import generate_keypair
from pipeline.exceptions import RecordsError
from pipeline.kafka.admin import KafkaAdmin, ensure_topics, watermarks
from pipeline.topics import ALL_TOPICS
from records.child_process import terminate
from records.local_kafka import LocalBroker, free_port

# Settings of the user's environment that must not leak into the benchmark's stack.
_OWN_ENV = (
    "CLICKHOUSE_URL",
    "RECORDS_CHDB_PATH",
    "RECORDS_PEPPER_FILE",
    "RECORDS_GEOIP_CITY_DB",
    "RECORDS_DPO_KEY_PASSPHRASE",
    "RECORDS_COMMAND_KEY",
    "RECORDS_COMMAND_PUBLIC_KEYS",
    "SCHEMA_REGISTRY_URL",
)


def records_command() -> list[str]:
    """How to run `records` with this interpreter (the installed script if there is one)."""
    script = Path(sys.executable).with_name("records")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from records.cli import main; main()"]


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MB; 0.0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far, in seconds (all its threads,
    the embedded engine's included); 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Stack:
    root: Path
    broker: LocalBroker
    settings: Settings
    env: dict[str, str]
    admin: KafkaAdmin
    on_spawn: Callable[[WorkerProcess], None] | None = None  # told of every worker started

    def topic_total(self, names: list[str]) -> int:
        """Messages on `names` (high minus low watermark, all partitions)."""
        return sum(high - low for low, high in watermarks(self.admin, names).values())

    def run_records(self, *args: str) -> str:
        """Run `records <args>` to its end with the stack's environment: its stdout, or
        RecordsError naming the command with the end of its stderr."""
        done = subprocess.run([*records_command(), *args], env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            command = " ".join(itertools.takewhile(lambda arg: not arg.startswith("-"), args))
            raise RecordsError(f"benchmark: `records {command}` failed: {done.stderr.strip()[-300:]}")
        return done.stdout

    def spawn(self, name: str, args: list[str], *, env: Mapping[str, str] | None = None) -> WorkerProcess:
        """Start `records <args>` with the stack's environment (plus `env`)."""
        metrics_port = free_port()
        process_env = {
            **self.env,
            "RECORDS_STREAMS_METRICS_PORT": str(metrics_port),
            "RECORDS_SINK_METRICS_PORT": str(metrics_port),
            **(env or {}),
        }
        log_path = self.root / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*records_command(), *args], env=process_env, stdout=log, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(name, process, started, metrics_port, log_path)
        if self.on_spawn is not None:
            self.on_spawn(worker)
        return worker


@contextlib.contextmanager
def fresh_stack(base: Settings | None = None, *, keep: bool = False) -> Iterator[Stack]:
    """Broker, topics and secrets in a new temporary directory; all removed on exit
    unless `keep` (the broker is stopped either way; worker logs are under logs/)."""
    base = base or load_settings()
    root = Path(tempfile.mkdtemp(prefix="records-bench-"))
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = LocalBroker(root / "kafka", base.kafka_libs_dir, port=port, controller_port=controller_port)
    admin: KafkaAdmin | None = None
    try:
        broker.start()
        env = {k: v for k, v in os.environ.items() if k not in _OWN_ENV}
        secrets_dir = root / "data" / "secrets"
        env.update(
            {
                "KAFKA_BOOTSTRAP": broker.bootstrap,
                "RECORDS_DATA_DIR": str(root / "data"),
                "RECORDS_CACHE_DIR": str(base.cache_dir),
                "RECORDS_PEPPER": secrets.token_hex(32),
                "RECORDS_DPO_PRIVATE_KEY": str(secrets_dir / "dpo.pem"),
                "RECORDS_DPO_PUBLIC_KEYS": str(secrets_dir / "dpo.pub.pem"),
                "RECORDS_STREAMS_METRICS_PORT": "0",
                "RECORDS_SINK_METRICS_PORT": "0",
            }
        )
        settings = load_settings(env)
        assert settings.dpo_private_key is not None
        secrets_dir.mkdir(parents=True)
        generate_keypair(settings.dpo_private_key, settings.dpo_public_keys[0])
        assert settings.command_private_key is not None  # the streams stage signs the sink's commands
        generate_keypair(settings.command_private_key, settings.command_public_keys[0])
        admin = KafkaAdmin(settings.kafka)
        ensure_topics(admin, ALL_TOPICS)
        yield Stack(root, broker, settings, env, admin)
    finally:
        if admin is not None:
            admin.close()
        broker.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class WorkerProcess:
    """A `records worker ...` subprocess and what the benchmark reads from it."""

    name: str
    process: subprocess.Popen[bytes]
    started: float  # perf_counter() at spawn
    metrics_port: int
    log_path: Path
    peak_rss: float = field(default=0.0)

    def metric(self, family: str) -> float:
        """The sum over labels of a counter (`<family>_total`); 0.0 before the endpoint is up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        name = f"{family}_total"
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
            raise RecordsError(f"{self.name} exited with code {self.process.returncode}: " + " | ".join(tail))

    def stop(self) -> None:
        """Remember the peak RSS, then SIGTERM (SIGKILL after 60 s)."""
        if self.process.poll() is None:
            self.peak_rss = peak_rss_mb(self.process.pid)
        terminate(self.process, 60)


def wait_for(
    what: str, check: Callable[[], bool], workers: list[WorkerProcess], *, timeout: float, every: float = 0.2
) -> float:
    """Poll `check` until true; returns perf_counter() at that moment. Raises if a worker
    dies or `timeout` passes."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        for worker in workers:
            worker.check()
        if time.perf_counter() > deadline:
            raise RecordsError(f"benchmark: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
