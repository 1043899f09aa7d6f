"""The sink holding an uncommitted batch when another member joins its group, on the real
broker and the real engine (chDB): the revocation callback writes the batch and hands its
offsets over, and the rebalance completes at once.

The sink used to commit inside the callback with its deadline (a helper thread), which
confluent-kafka-python (>= 2.16) makes wait for the consume call serving the callback:
the whole group stood still until the 30 s commit deadline, and the sink then replaced its
consumer (seen once in ~5 runs of tests/faults/test_sink_rebalance.py; here every time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer, Serde
from sink.clickhouse_sink import ClickHouseSink
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions
from sink.sink_process import apply_schema
from tests.support.kafka_offsets import end_offsets
from tests.support.metrics import counter
from tests.support.sink_store import on_topic_copies
from tests.support.stored_records import record

MESSAGES = 300
HOLD_WAIT_S = 120.0  # generous: joining and fetching on a loaded machine take seconds
# Well below the sink's 30 s commit deadline, which the old callback waited out; a
# cooperative rebalance here takes ~5 s (two join rounds).
HANDOVER_S = 20.0


@pytest.fixture
def options(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    # batches that are never due by themselves: only the revocation writes this one
    held = SinkOptions(group_id=group_id, batch_size=100_000, batch_max_s=600.0, lag_every_s=0.0)
    with on_topic_copies(kafka_admin, held, "revoke") as copies:
        yield copies


def _lag(sink: ClickHouseSink, topic: str) -> dict[str, float]:
    """The sink's lag gauge per partition of `topic` (high watermark minus its position)."""
    return {
        sample.labels["partition"]: sample.value
        for family in sink.metrics.consumer_lag.collect()
        for sample in family.samples
        if sample.labels["topic"] == topic
    }


def _committed(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[int, int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in probe.committed(partitions, timeout=10)}
    finally:
        probe.close()


def test_a_member_joining_while_the_sink_holds_a_batch_gets_its_partitions_at_once_and_nothing_is_lost(
    options: SinkOptions, kafka_settings: Settings, ch_client: Client, kafka_bootstrap: str
) -> None:
    apply_schema(ch_client)
    schema = default_catalog().get("ChatMessageRecord")
    topic = next(t.name for t in options.record_topics if schema.full_name in t.value_schemas)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    serialize = AvroSerializer(schema)
    for n in range(MESSAGES):
        producer.produce(topic, key=f"conversation-{n}", value=serialize(record(schema, n)))
    assert producer.flush(30) == 0
    wanted = end_offsets(kafka_bootstrap, [topic])
    assert len(wanted) == 3, f"the messages should cover every partition: {wanted}"

    sink = ClickHouseSink(
        kafka_settings, ch_client, serde=Serde(), metrics=SinkMetrics.create(CollectorRegistry()), options=options
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="sink")
    thread.start()
    visitor: Consumer | None = None
    try:
        # the sink holds every message in one batch, nothing committed
        deadline = time.monotonic() + HOLD_WAIT_S
        while len(_lag(sink, topic)) < 3 or any(_lag(sink, topic).values()):
            assert thread.is_alive(), f"the sink stopped: {errors!r}"
            assert time.monotonic() < deadline, f"the sink never held the batch: lag {_lag(sink, topic)}"
            time.sleep(0.2)
        everything = [TopicPartition(t, p) for t, p in wanted]
        assert all(offset < 0 for offset in _committed(kafka_bootstrap, options.group_id, everything).values())

        visitor = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": options.group_id,
                "enable.auto.commit": False,
                "session.timeout.ms": 10_000,
                "partition.assignment.strategy": "cooperative-sticky",  # as the sink's
            }
        )
        joined = time.monotonic()
        visitor.subscribe([topic])
        while not visitor.assignment() and time.monotonic() < joined + 3 * HANDOVER_S:
            visitor.poll(0.2)
        handover_s = time.monotonic() - joined
        taken = visitor.assignment()
        assert taken, f"the visiting member got no partition in {handover_s:.0f} s"
        # the sink's batch was committed before its partitions were handed over
        committed = visitor.committed(taken, timeout=10)
        expected = {tp.partition: wanted[(topic, tp.partition)] for tp in taken}
        assert {tp.partition: tp.offset for tp in committed} == expected
        assert handover_s < HANDOVER_S, f"the rebalance took {handover_s:.1f} s"
    finally:
        if visitor is not None:
            visitor.close()
        sink.stop()
        thread.join(60)
    assert not thread.is_alive() and not errors, f"the sink did not stop cleanly: {errors!r}"

    # every message stored once, and the sink kept its consumer
    stored = ch_client.query("SELECT count(), uniqExact(event_id) FROM records.chat_messages FINAL").result_rows[0]
    assert stored == (MESSAGES, MESSAGES)
    assert all(o == wanted[(topic, p)] for p, o in _committed(kafka_bootstrap, options.group_id, everything).items())
    assert counter(sink.metrics.consumer_restarts) == 0
    assert counter(sink.metrics.commit_failures) == 0
