"""`records worker sink` as a process: killed with SIGKILL mid-stream after it committed at
least one batch, then restarted on the same store; every produced row is there exactly
once (FINAL and the analyst view), none is missing. While it runs, the store answers
over its read-only HTTP endpoint (clickhouse-connect, `records sql`) and Prometheus.
SIGTERM then stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pipeline.access_users import read_owner_credential
from pipeline.clickhouse_http import Owner, owner_file, read_owner
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer
from pipeline.topics import TopicSpec
from sink.clickhouse_sink import SinkOptions
from tests.integration.test_sink import end_offsets, lagging_partitions, record
from tests.integration.test_sink_http import records_cli

TOTAL = 24_000
CHUNK = 1_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SinkProcess:
    def __init__(self, chdb_path: Path, bootstrap: str, group: str, suffix: str, log: Path) -> None:
        self.chdb_path = chdb_path
        self.metrics_port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"}
        env.update(
            RECORDS_CHDB_PATH=str(chdb_path),
            RECORDS_DATA_DIR=str(chdb_path.parent / "data"),
            KAFKA_BOOTSTRAP=bootstrap,
            RECORDS_SINK_METRICS_PORT=str(self.metrics_port),
        )
        command = [sys.executable, "-c", "from records.cli import main; main()", "worker", "sink"]
        command += ["--batch-size", "2000", "--batch-max-s", "0.2", "--http-port", "0", "--retention-every", "0"]
        command += ["--group-id", group, "--topic-suffix", suffix]
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def owner(self, timeout: float = 60.0) -> Owner:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owner = read_owner(self.chdb_path)
            if owner is not None and owner.pid == self.process.pid:
                return owner
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError(f"the sink did not start:\n{self.log.read_text()[-3000:]}")

    def client(self, owner: Owner) -> Client:
        """clickhouse-connect on the sink's endpoint with its owner credential (the endpoint
        has no anonymous access)."""
        login = read_owner_credential(self.chdb_path)
        assert login is not None
        return clickhouse_connect.get_client(
            host=owner.host, port=owner.port, username=login.user, password=login.password.get()
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def sample(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def kill(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(30)


@pytest.fixture
def isolated(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[tuple[SinkOptions, str]]:
    suffix = f".crash-{uuid.uuid4().hex[:10]}"
    options = SinkOptions(group_id=group_id).with_topic_suffix(suffix)
    specs = [TopicSpec(s.name, s.key, s.description, s.partitions) for s in options.record_topics]
    specs.append(TopicSpec(options.dlq_topic, "k", "dlq", 1))
    kafka_admin.create_topics(specs)
    yield options, suffix
    kafka_admin.delete_topics([s.name for s in specs])


def _produce_steadily(bootstrap: str, topic: str, done: threading.Event) -> None:
    schema = default_catalog().get("CallRecord")
    serialize = AvroSerializer(schema)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    for start in range(0, TOTAL, CHUNK):
        for n in range(start, start + CHUNK):
            value = record(schema, n, event_id=f"call-{n:06d}", call_id=f"call-{n:06d}")
            producer.produce(topic, key=value["call_id"].encode(), value=serialize(value))
        producer.poll(0)
        time.sleep(0.1)
    assert producer.flush(30) == 0
    done.set()


def _committed_total(bootstrap: str, group: str, topic: str) -> int:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = probe.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    except KafkaException:  # the group's coordinator is not ready yet
        return 0
    finally:
        probe.close()
    return sum(max(0, tp.offset) for tp in parts)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_kill_9_mid_stream_then_restart_loses_nothing_and_shows_no_duplicate(
    isolated: tuple[SinkOptions, str], kafka_bootstrap: str, chdb_path: Path, tmp_path: Path
) -> None:
    options, suffix = isolated
    group = options.group_id
    topic = next(t.name for t in options.record_topics if "cs.records.CallRecord" in t.value_schemas)
    log = tmp_path / "sink.log"
    produced = threading.Event()
    producer = threading.Thread(target=_produce_steadily, args=(kafka_bootstrap, topic, produced), daemon=True)
    producer.start()

    first = SinkProcess(chdb_path, kafka_bootstrap, group, suffix, log)
    first.owner()
    _wait(lambda: _committed_total(kafka_bootstrap, group, topic) > 0, 60, "no batch committed")
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    committed_at_kill = _committed_total(kafka_bootstrap, group, topic)
    assert 0 < committed_at_kill < TOTAL, "the kill was not mid-stream"

    second = SinkProcess(chdb_path, kafka_bootstrap, group, suffix, log)
    owner = second.owner()
    try:
        producer.join(60)
        assert produced.is_set()
        wanted = end_offsets(kafka_bootstrap, [topic])
        _wait(lambda: not lagging_partitions(kafka_bootstrap, group, wanted), 90, "not caught up")

        client = second.client(owner)
        final_rows, distinct = client.query("SELECT count(), uniqExact(event_id) FROM records.calls FINAL").result_rows[
            0
        ]
        ids = client.query("SELECT arraySort(groupArray(event_id)) FROM analyst.calls").result_rows[0][0]
        stored = client.command("SELECT count() FROM records.calls")
        assert (final_rows, distinct) == (TOTAL, TOTAL)
        assert ids == [f"call-{n:06d}" for n in range(TOTAL)]
        assert stored >= TOTAL  # replayed rows may still be unmerged; FINAL and the views never show them
        with pytest.raises(DatabaseError):
            client.command("INSERT INTO records.calls (event_id) VALUES ('x')")

        routed = records_cli(chdb_path, "sql", "-f", "csv", "SELECT count() FROM analyst.calls")
        assert routed.returncode == 0, routed.stderr
        assert routed.stdout.splitlines()[1] == str(TOTAL)

        _wait(lambda: second.sample("records_sink_consumer_lag", topic=topic, partition="0") == 0, 10, "lag")
        assert second.sample("records_sink_rows_inserted_total", table="calls") >= TOTAL - committed_at_kill
    finally:
        exit_code = second.kill(signal.SIGTERM)
    assert exit_code == 0, log.read_text()[-3000:]
    assert not owner_file(chdb_path).exists()
