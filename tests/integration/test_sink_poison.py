"""A poison message does not stop the sink (issue 11, finding 5): with a schema registry
configured, a Confluent-framed message whose schema id the registry does not have, or
whose registered schema the catalog does not know, is dead-lettered with a reason and the
sink goes on storing the messages after it. Real broker, real chDB, the `mock://` registry
the sink builds from SCHEMA_REGISTRY_URL."""

from __future__ import annotations

import dataclasses
import json
import struct
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.dead_letter import parse_headers
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer, WireFormat
from records.wiring import Wiring
from sink.clickhouse_sink import ClickHouseSink
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions
from sink.sink_process import apply_schema
from tests.support.kafka_reads import read_topic
from tests.support.sink_store import on_topic_copies, run_until_caught_up
from tests.support.stored_records import record

UNKNOWN_RECORD = {
    "type": "record",
    "name": "NotInTheCatalog",
    "namespace": "cs.records",
    "fields": [{"name": "event_id", "type": "string"}],
}


@pytest.fixture
def sink_options(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    options = SinkOptions(group_id=group_id, batch_size=50, batch_max_s=0.3)
    with on_topic_copies(kafka_admin, options, "poison") as copies:
        yield copies


def test_confluent_messages_with_unknown_schemas_are_dead_lettered_and_the_sink_goes_on(
    sink_options: SinkOptions, kafka_settings: Settings, ch_client: Client, kafka_bootstrap: str
) -> None:
    apply_schema(ch_client)
    settings = dataclasses.replace(kafka_settings, schema_registry_url=f"mock://poison-{uuid.uuid4().hex[:8]}")
    serde = Wiring(settings).serde  # what `records worker sink` builds from SCHEMA_REGISTRY_URL
    sink = ClickHouseSink(
        settings, ch_client, serde=serde, metrics=SinkMetrics.create(CollectorRegistry()), options=sink_options
    )
    registry = sink.deserializer.registry
    assert registry is not None, "SCHEMA_REGISTRY_URL must give the sink a registry"
    # Registered, but not a record type of this pipeline: decoding it used to raise SchemaError
    # out of the batch, and the sink exited (and again after every restart).
    foreign_id = registry.register_schema("foreign-value", Schema(json.dumps(UNKNOWN_RECORD), "AVRO"))
    missing_id = foreign_id + 1000  # never registered
    calls = default_catalog().get("CallRecord")
    topic = next(t.name for t in sink_options.record_topics if calls.full_name in t.value_schemas)
    good_before = record(calls, 1)
    good_after = record(calls, 2)
    confluent = AvroSerializer(calls, wire_format=WireFormat.CONFLUENT, registry=registry)

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"good-1", value=confluent(good_before))
    for schema_id in (foreign_id, missing_id):
        producer.produce(topic, key=b"poison", value=b"\x00" + struct.pack(">I", schema_id) + b"\x02x")
    producer.produce(topic, key=b"good-2", value=confluent(good_after))
    assert producer.flush(30) == 0

    run_until_caught_up(sink, [t.name for t in sink_options.record_topics])

    stored = ch_client.query("SELECT event_id FROM records.calls FINAL ORDER BY event_id").result_rows
    assert stored == [(good_before["event_id"],), (good_after["event_id"],)]
    letters = read_topic(kafka_bootstrap, sink_options.dlq_topic, 2)
    assert [m.key() for m in letters] == [b"poison", b"poison"]
    reasons = {}
    for message in letters:
        headers = parse_headers(message.headers())
        assert headers["dlq.stage"] == "sink" and headers["dlq.source.topic"] == topic
        assert headers["dlq.error.class"] == "SerdeError"
        reasons[int.from_bytes(message.value()[1:5], "big")] = headers["dlq.error"]
    assert f"schema id {foreign_id}" in reasons[foreign_id] and "NotInTheCatalog" in reasons[foreign_id]
    assert f"schema id {missing_id} not found in the registry" in reasons[missing_id]
