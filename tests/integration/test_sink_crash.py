"""`records worker sink` as a process: killed with SIGKILL mid-stream after it committed at
least one batch, then restarted on the same store; every produced row is there exactly
once (FINAL and the analyst view), none is missing. While it runs, the store answers
over its read-only HTTP endpoint (clickhouse-connect, `records sql`) and Prometheus.
SIGTERM then stops it cleanly."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from pipeline.chdb_owner import owner_file
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer
from sink.sink_options import SinkOptions
from tests.support.cli import chdb_env, run_records
from tests.support.kafka_offsets import end_offsets, lagging_partitions
from tests.support.processes import SinkProcess
from tests.support.sink_store import sink_topic_copies
from tests.support.stored_records import record

TOTAL = 24_000
CHUNK = 1_000


@pytest.fixture
def isolated(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[tuple[SinkOptions, str]]:
    suffix = f".crash-{uuid.uuid4().hex[:10]}"
    options = SinkOptions(group_id=group_id).with_topic_suffix(suffix)
    with sink_topic_copies(kafka_admin, options):
        yield options, suffix


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

        routed = run_records("sql", "-f", "csv", "SELECT count() FROM analyst.calls", env=chdb_env(chdb_path))
        assert routed.returncode == 0, routed.stderr
        assert routed.stdout.splitlines()[1] == str(TOTAL)

        _wait(lambda: second.sample("records_sink_consumer_lag", topic=topic, partition="0") == 0, 10, "lag")
        assert second.sample("records_sink_rows_inserted_total", table="calls") >= TOTAL - committed_at_kill
    finally:
        exit_code = second.kill(signal.SIGTERM)
    assert exit_code == 0, log.read_text()[-3000:]
    assert not owner_file(chdb_path).exists()
