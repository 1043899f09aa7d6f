"""The sink's inserts into embedded chDB carry no per-call settings: the writer sets
them once on its session (sink/batch_writer.py), since clickhouse-connect's chDB backend
reads, sets and restores per-call settings with three extra engine calls per insert.
Rows of an older writer schema (a column it lacks takes its default) still insert."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings
from pipeline.schemas import AvroSchema, SchemaCatalog, default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from sink.batch import Batch, Routes
from sink.batch_writer import BatchWriter
from sink.consent_withdrawal import consent_bound, ledger_model
from sink.metrics import SinkMetrics
from sink.sink_options import RECORD_TOPICS
from sink.sink_process import apply_schema
from tests.support.stored_records import record

SETTING = "input_format_avro_allow_missing_fields"


@dataclass
class Msg:
    """A consumed message as the sink sees it (the confluent_kafka.Message accessors)."""

    _value: bytes
    _offset: int

    def topic(self) -> str:
        return topics.CALL_ENRICHED.name

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def test_embedded_inserts_set_their_settings_once_on_the_session(ch_client: Client, chdb_settings: Settings) -> None:
    apply_schema(ch_client)
    current = default_catalog().get("CallRecord")
    old = AvroSchema.from_definition(
        {**current.definition, "fields": [f for f in current.definition["fields"] if f["name"] != "answered_by_user"]}
    )
    catalog = SchemaCatalog(list(default_catalog()))
    catalog.add(old)
    models = table_models(catalog=catalog)
    writer = BatchWriter(
        ch_client,
        kafka=chdb_settings.kafka,
        dlq_topic=topics.DLQ.name,
        metrics=SinkMetrics.create(CollectorRegistry()),
        consent_tables=tuple(t for t in (consent_bound(m) for m in models) if t is not None),
        ledger=ledger_model(models),
        engine_lock=threading.RLock(),
        sole_writer=True,
    )
    routes = Routes(tables={m.schema.full_name: m for m in models}, topics={t.name: t for t in RECORD_TOPICS})
    for first, schema in ((0, current), (100, old)):
        batch = Batch(routes, AvroDeserializer(catalog=catalog))
        for n in range(first, first + 5):
            batch.add(Msg(AvroSerializer(schema)(record(schema, n)), n))
        writer.write(batch)
        writer.reset()

    assert ch_client.command("SELECT count() FROM records.calls FINAL") == 10
    # the old writer's rows are there too, without the field it lacks
    assert ch_client.command("SELECT count() FROM records.calls FINAL WHERE event_id LIKE 'event_id-10_'") == 5
    # set on the session, not per call (per-call settings are restored after each call)
    assert ch_client.query(f"SELECT getSetting('{SETTING}')").result_rows == [(True,)]
