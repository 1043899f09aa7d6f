"""The whole pipeline as processes, for fault tests: `records worker streams` and `records
worker sink` started as a user starts them, killed as a bad day kills them, and the
reconciliation (`records reconcile`) as the verdict.

Each test runs its own streams app id (consumer group and changelogs) and its own sink
group on its own chDB directory, both committed at the end of their input topics before
they start, so traffic of other tests on the shared broker is neither read nor disturbed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from prometheus_client.parser import text_string_to_metric_families

from pipeline import topics
from pipeline.chdb_owner import read_owner
from pipeline.clickhouse import connect
from pipeline.config import load_settings
from pipeline.dsr import DpoSigner
from pipeline.event_producer import EventProducer
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from records.local_kafka import free_port
from records.reconcile_read import Sources, reconcile_window
from records.simulate.events import generate
from records.simulate.model import SimulatedEvent, SimulationConfig
from retention_jobs.reconcile import Reconciliation
from tests.support.kafka_offsets import start_group_at_end

RECORDS = str(Path(sys.executable).with_name("records"))
STREAMS_INPUTS = (topics.CHAT, topics.CALL, topics.CONSENT, topics.DSR, topics.CONTACT_FORM)
SINK_INPUTS = (
    topics.CHAT_ENRICHED,
    topics.CALL_ENRICHED,
    topics.CONSENT_LEDGER,
    topics.DSR_RECEIPTS,
    topics.DSR_COMMANDS,
    topics.CONTACT_FORM_ENRICHED,
)
CHANGELOG_SUFFIXES = ("consent-changelog", "erasures-changelog", "dsr-seen-changelog", "__assignor-__leader")


@dataclass(frozen=True)
class Secrets:
    """The pepper, the DPO key pair and the streams stage's command key pair one test's
    processes share."""

    pepper_hex: str = field(default_factory=lambda: secrets.token_hex(32))
    signer: DpoSigner = field(default_factory=lambda: DpoSigner(Ed25519PrivateKey.generate()))
    command_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def keyer(self) -> SubjectKeyer:
        return SubjectKeyer(bytes.fromhex(self.pepper_hex))

    def env(self, directory: Path) -> dict[str, str]:
        directory.mkdir(parents=True, exist_ok=True)
        public = directory / "dpo.pub.pem"
        public.write_bytes(
            self.signer.private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        command, command_public = directory / "command.pem", directory / "command.pub.pem"
        command.write_bytes(self.command_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        command.chmod(0o600)
        command_public.write_bytes(
            self.command_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        return {
            "RECORDS_PEPPER": self.pepper_hex,
            "RECORDS_DPO_PUBLIC_KEYS": str(public),
            "RECORDS_COMMAND_KEY": str(command),
            "RECORDS_COMMAND_PUBLIC_KEYS": str(command_public),
        }


def _base_env(bootstrap: str, data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDS_", "CLICKHOUSE_URL", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP=bootstrap, RECORDS_DATA_DIR=str(data_dir), **extra)
    return env


@dataclass
class Process:
    """One `records worker ...` process with its log and Prometheus endpoint."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None
    log_start: int = 0  # where this run's lines begin in the (shared, appended) log

    def start(self) -> Process:
        self.log_start = len(self.log())
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.name} {datetime.now(UTC).isoformat()}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float) -> None:
        """Wait until this run of the process has logged `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.log()[self.log_start :]:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.exit_code()}):\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def kill(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if not self.alive():
            return
        try:
            self.kill(signal.SIGTERM, timeout=30)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples with these labels (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


def streams_process(bootstrap: str, app_id: str, work: Path, keys: Secrets) -> Process:
    port = free_port()
    env = _base_env(
        bootstrap, work / "streams-data", {**keys.env(work / "keys"), "RECORDS_STREAMS_METRICS_PORT": str(port)}
    )
    command = [RECORDS, "worker", "streams", "--app-id", app_id]
    return Process("streams", command, env, work / "streams.log", port)


def sink_process(
    bootstrap: str, group: str, chdb_path: Path, work: Path, keys: Secrets, *extra: str, batch_size: int = 2000
) -> Process:
    port = free_port()
    env = _base_env(
        bootstrap,
        work / "sink-data",
        {
            **keys.env(work / "keys"),
            "RECORDS_CHDB_PATH": str(chdb_path),
            "RECORDS_SINK_METRICS_PORT": str(port),
        },
    )
    command = [RECORDS, "worker", "sink", "--batch-size", str(batch_size), "--batch-max-s", "0.2"]
    command += ["--http-port", "0", "--retention-every", "0", "--group-id", group, *extra]
    return Process("sink", command, env, work / "sink.log", port)


def wait_sink_owner(sink: Process, chdb_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        owner = read_owner(chdb_path)
        if owner is not None and owner.pid == sink.pid:
            return
        if not sink.alive():
            raise AssertionError(f"the sink exited ({sink.exit_code()}):\n{sink.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the sink did not start:\n{sink.log()[-4000:]}")
        time.sleep(0.1)


# ---- Kafka probes -------------------------------------------------------------------


def _probe(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group or f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )


def end_offsets(bootstrap: str, specs: Iterable[topics.TopicSpec]) -> list[TopicPartition]:
    consumer = _probe(bootstrap)
    try:
        out = []
        for spec in specs:
            for partition in range(spec.partitions):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        high = consumer.get_watermark_offsets(TopicPartition(spec.name, partition), timeout=10)[1]
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                out.append(TopicPartition(spec.name, partition, int(high)))
        return out
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, ends: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
    consumer = _probe(bootstrap, group)
    try:
        parts = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in ends], timeout=10)
    except KafkaException:
        return {}
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in parts}


def caught_up(bootstrap: str, group: str, specs: Iterable[topics.TopicSpec]) -> bool:
    """Whether `group` has committed the end of every partition of `specs`."""
    return not lagging(bootstrap, group, specs)


def lagging(bootstrap: str, group: str, specs: Iterable[topics.TopicSpec]) -> list[str]:
    """The partitions of `specs` whose end `group` has not committed, as
    `topic[partition] committed/end` (what a failed wait reports)."""
    ends = end_offsets(bootstrap, specs)
    done = committed(bootstrap, group, ends)
    behind = [(tp, done.get((tp.topic, tp.partition), -1)) for tp in ends]
    return [f"{tp.topic}[{tp.partition}] {at}/{tp.offset}" for tp, at in behind if at < tp.offset]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Poll until `condition()`; the seconds it took. AssertionError naming `what` on timeout."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (KafkaException, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


# ---- the verdict --------------------------------------------------------------------


def reconcile_since(
    bootstrap: str, chdb_path: Path, keys: Secrets, since: datetime, sources: Sources | None = None
) -> Reconciliation:
    """The reconciliation of the window, read through the running sink's endpoint (or the
    directory itself when no sink runs)."""
    settings = load_settings(
        {"KAFKA_BOOTSTRAP": bootstrap, "RECORDS_CHDB_PATH": str(chdb_path), "RECORDS_DATA_DIR": str(chdb_path.parent)}
    )
    with connect(settings, readonly=True) as client:
        return reconcile_window(
            settings.kafka,
            client,
            serde=Serde(),
            keyer=keys.keyer,
            since=since,
            now=datetime.now(UTC),
            sources=sources,
        )


# ---- traffic ------------------------------------------------------------------------


def simulated(events: int, seed: int, span_days: float = 400.0) -> list[SimulatedEvent]:
    """A deterministic mix of chats, calls, recordings, consent changes and malformed bytes,
    spread over `span_days` (so some are past retention already)."""
    return list(generate(SimulationConfig(events=events, seed=seed, span_days=span_days)))


def produce(
    bootstrap: str,
    keys: Secrets,
    events: Sequence[SimulatedEvent],
    *,
    chunk: int = 200,
    pause_s: float = 0.05,
    progress: Callable[[int], None] | None = None,
    flush_s: float = 60.0,
) -> int:
    """Send the events in chunks with a pause between them (a steady stream); the number
    Kafka confirmed (all of them, within `flush_s` after the last was sent)."""
    settings = load_settings({"KAFKA_BOOTSTRAP": bootstrap})
    with EventProducer(settings.kafka, serde=Serde(), keyer=keys.keyer) as producer:
        for start in range(0, len(events), chunk):
            for event in events[start : start + chunk]:
                if event.record is not None and event.schema_name is not None:
                    producer.send(event.schema_name, event.record, headers=list(event.headers) or None)
                else:
                    assert event.raw is not None
                    producer.send_raw(event.topic, event.raw, key=event.key, headers=list(event.headers) or None)
            producer.poll()
            if progress is not None:
                progress(start + chunk)
            time.sleep(pause_s)
        stats = producer.flush(flush_s)
    assert stats.ok, stats.describe_failures()
    return stats.delivered


# ---- one isolated pipeline ------------------------------------------------------


@dataclass
class Pipeline:
    bootstrap: str
    work: Path
    app_id: str
    sink_group: str
    keys: Secrets = field(default_factory=Secrets)
    started: list[Process] = field(default_factory=list)

    @property
    def chdb_path(self) -> Path:
        return self.work / "chdb"

    def streams(self) -> Process:
        process = streams_process(self.bootstrap, self.app_id, self.work, self.keys)
        self.started.append(process)
        return process.start()

    def sink(self, *extra: str, batch_size: int = 2000) -> Process:
        process = sink_process(
            self.bootstrap, self.sink_group, self.chdb_path, self.work, self.keys, *extra, batch_size=batch_size
        )
        self.started.append(process)
        return process.start()


@contextlib.contextmanager
def isolated_pipeline(bootstrap: str, admin: KafkaAdmin, work: Path) -> Iterator[Pipeline]:
    """A pipeline of its own on `bootstrap`; its processes stopped and changelogs deleted after."""
    admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    tag = uuid.uuid4().hex[:10]
    line = Pipeline(bootstrap, work, f"faults-{tag}", f"faults-sink-{tag}")
    # The app's changelogs exist before it starts, as `records topics ensure` makes them for
    # the real app id (a changelog the worker creates itself is unknown to its metadata for
    # a few seconds: a data-subject request read then crashes the DSR agent and is lost).
    admin.create_topics(
        [
            dataclasses.replace(spec, name=spec.name.replace(topics.STREAMS_APP_ID, line.app_id, 1))
            for spec in (topics.CONSENT_CHANGELOG, topics.ERASURES_CHANGELOG, topics.DSR_SEEN_CHANGELOG)
        ]
    )
    start_group_at_end(bootstrap, line.app_id, STREAMS_INPUTS)
    start_group_at_end(bootstrap, line.sink_group, SINK_INPUTS)
    try:
        yield line
    finally:
        for process in line.started:
            process.stop()
        admin.delete_topics([f"{line.app_id}-{suffix}" for suffix in CHANGELOG_SUFFIXES])
