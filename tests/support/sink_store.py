"""The sink's store in tests: rows inserted as the sink inserts them, an erasure command
as the sink executes it, a test's own copies of the sink's topics, and a sink run in a
thread until its group has caught up."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import TableModel, table_models
from pipeline.dsr_contract import CommandEnvelope
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import AvroSerializer
from pipeline.topics import TopicSpec
from sink.avro_container import SINGLE_OBJECT_PREFIX, container
from sink.clickhouse_sink import ClickHouseSink
from sink.dsr_storage import DsrCommand
from sink.erasure_guard import ErasureGuard
from sink.select_insert import insert_container
from sink.sink_options import SinkOptions
from tests.support.kafka_offsets import end_offsets, lagging_partitions


@contextlib.contextmanager
def sink_topic_copies(admin: KafkaAdmin, options: SinkOptions) -> Iterator[list[TopicSpec]]:
    """The record topics `options` reads and its dead-letter topic (one partition), created
    with their partition counts and without their configs, and deleted after."""
    specs = [TopicSpec(s.name, s.key, s.description, s.partitions) for s in options.record_topics]
    specs.append(TopicSpec(options.dlq_topic, "k", "dlq", 1))
    admin.create_topics(specs)
    try:
        yield specs
    finally:
        admin.delete_topics([s.name for s in specs])


@contextlib.contextmanager
def on_topic_copies(admin: KafkaAdmin, options: SinkOptions, name: str) -> Iterator[SinkOptions]:
    """`options` reading a test's own copies of its topics, suffixed `.{name}-<random>`
    (created and deleted by `sink_topic_copies`)."""
    suffixed = options.with_topic_suffix(f".{name}-{uuid.uuid4().hex[:10]}")
    with sink_topic_copies(admin, suffixed):
        yield suffixed


def run_until_caught_up(sink: ClickHouseSink, topics: list[str], timeout: float = 60.0) -> None:
    """Run `sink` in a thread until its group committed every message of `topics`; fails
    if the sink thread dies first (an exception escaped its loop)."""
    bootstrap = sink.settings.kafka.bootstrap
    wanted = end_offsets(bootstrap, topics)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sink.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, name="sink")
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while lagging := lagging_partitions(bootstrap, sink.options.group_id, wanted):
            assert thread.is_alive(), f"the sink stopped: {errors!r}"
            assert time.monotonic() < deadline, f"not caught up: {lagging}"
            time.sleep(0.2)
    finally:
        sink.stop()
        thread.join(30)
    assert not errors, f"the sink raised: {errors!r}"


def store(client: Client, model: TableModel, values: list[dict[str, Any]]) -> None:
    """Insert rows as the sink does: one Avro container through the erasure guard."""
    schema = model.schema
    serialize = AvroSerializer(schema)
    block = container(schema, [serialize(v)[SINGLE_OBJECT_PREFIX:] for v in values])
    row_filter = ErasureGuard(table_models()).row_filter(model)
    insert_container(client, model, [block], {"input_format_avro_allow_missing_fields": "1"}, row_filter=row_filter)


def verified_command(
    request: dict[str, Any],
    keys: list[str] | tuple[str, ...],
    verified_at: datetime,
    new_subject_key: str | None = None,
) -> DsrCommand:
    """A request as the sink executes it after the streams stage verified it; the envelope's
    signature is checked before this point and is not what these tests are about."""
    envelope = CommandEnvelope(
        request["request_id"], request["request_type"], "0" * 64, tuple(keys), verified_at, {}, new_subject_key
    )
    return DsrCommand(request, envelope)


def erasure_command(keys: list[str], verified_at: datetime) -> DsrCommand:
    """An erasure of `keys` as the sink executes it."""
    request = {"request_id": f"erase-{uuid.uuid4().hex[:8]}", "request_type": "ERASURE", "issued_at": verified_at}
    return verified_command(request, keys, verified_at)


def rectification_command(
    keys: list[str], verified_at: datetime, field: str, value: str, new_subject_key: str
) -> DsrCommand:
    """A rectification of `field` to `value` for `keys` as the sink executes it, issued and
    verified at `verified_at`; `new_subject_key` is the key of the corrected value."""
    request = {
        "request_id": str(uuid.uuid4()),
        "request_type": "RECTIFICATION",
        "issued_at": verified_at,
        "rectify_field": field,
        "rectify_value": value,
    }
    return verified_command(request, keys, verified_at, new_subject_key=new_subject_key)


def model(table: str) -> TableModel:
    return next(m for m in table_models() if m.name == table)
