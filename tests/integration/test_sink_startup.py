"""The sink's start-up, real broker and real engine (chDB): a periodic job due at start
(retention) does not delay the first rows; it runs once the first batch is committed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer, Serde
from pipeline.topics import TopicSpec
from sink.clickhouse_sink import ClickHouseSink
from sink.metrics import SinkMetrics
from sink.sink_options import PeriodicJob, SinkOptions
from sink.sink_process import apply_schema
from tests.support.stored_records import record

CHAT = default_catalog().get("ChatConversationRecord")


@pytest.fixture
def options(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    suffix = f".test-{uuid.uuid4().hex[:10]}"
    opts = SinkOptions(group_id=group_id, batch_size=500, batch_max_s=0.3, jobs_wait_s=600.0)
    opts = opts.with_topic_suffix(suffix)
    specs = [*opts.record_topics, TopicSpec(opts.dlq_topic, "k", "dlq", 1)]
    kafka_admin.create_topics([TopicSpec(s.name, s.key, s.description, s.partitions) for s in specs])
    yield opts
    kafka_admin.delete_topics([s.name for s in specs])


def test_a_job_due_at_start_runs_after_the_first_batch_is_stored(
    options: SinkOptions, kafka_settings: Settings, kafka_bootstrap: str, ch_client: Client
) -> None:
    apply_schema(ch_client)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    topic = next(t.name for t in options.record_topics if CHAT.full_name in t.value_schemas)
    serialize = AvroSerializer(CHAT)
    for n in range(20):
        producer.produce(topic, key=str(n), value=serialize(record(CHAT, n)))
    assert producer.flush(30) == 0

    seen: list[int] = []  # rows stored when the job ran
    job = PeriodicJob("probe", 3600.0, lambda client: seen.append(
        int(client.command("SELECT count() FROM records.chat_conversations"))))
    sink = ClickHouseSink(
        kafka_settings, ch_client, serde=Serde(), metrics=SinkMetrics.create(CollectorRegistry()),
        options=options, maintenance=[job],
    )
    sink.subscribe()  # joins before run(), as run_sink does
    thread = threading.Thread(target=sink.run, name="sink")
    thread.start()
    deadline = time.monotonic() + 120
    try:
        while not seen:
            assert thread.is_alive(), "the sink stopped"
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.1)
    finally:
        sink.stop()
        thread.join(30)
    assert seen[0] > 0
