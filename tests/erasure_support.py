"""Helpers of the erasure and trust-hole tests (issue 11): rows of any stored record type,
a sink run in a thread until caught up, and reading a topic back. Not a test module; kept
apart from tests/integration/test_sink.py so no test module imports another."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.clickhouse_ddl import TableModel, table_models
from pipeline.serde import AvroSerializer
from sink.avro_container import SINGLE_OBJECT_PREFIX, container
from sink.clickhouse_sink import ClickHouseSink
from sink.dsr_storage import CommandHeaders, DsrCommand
from sink.erasure_guard import ErasureGuard

# Rows must be younger than their retention, or ClickHouse's TTL drops them on insert.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def record(schema_definition: dict[str, Any], n: int, **overrides: Any) -> dict[str, Any]:
    """A valid value of a record schema with every optional field set; ids derive from `n`,
    times are NOW unless overridden."""
    named: dict[str, Any] = {}

    def value(name: str, node: Any) -> Any:
        if isinstance(node, list):
            return value(name, next(b for b in node if b != "null"))
        if isinstance(node, str):
            if node in named:
                return value(name, named[node])
            return {
                "string": f"{name}-{n}",
                "int": n % 1000,
                "long": n,
                "double": 60.0 + n / 1000,
                "float": 1.5,
                "boolean": True,
                "bytes": b"x",
            }[node]
        kind = node["type"]
        if node.get("logicalType") == "timestamp-millis":
            return NOW
        if node.get("logicalType") == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}-{n}"))
        if kind == "enum":
            named[node["name"]] = node
            return node["symbols"][0]
        if kind == "array":
            return [f"{name}-{n}"] if name == "subject_keys" else []
        if kind == "map":
            return {"calls": n}
        return value(name, kind)

    out = {f["name"]: value(f["name"], f["type"]) for f in schema_definition["fields"]}
    if "channel" in out:
        out["channel"] = "WEB"
    out.update(overrides)
    return out


def end_offsets(bootstrap: str, names: list[str]) -> dict[tuple[str, int], int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}"})
    try:
        metadata = probe.list_topics(timeout=10)
        out = {}
        for name in names:
            for partition in metadata.topics[name].partitions:
                _low, high = probe.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                if high > 0:
                    out[(name, partition)] = high
        return out
    finally:
        probe.close()


def _lagging(bootstrap: str, group: str, wanted: dict[tuple[str, int], int]) -> dict[str, int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = probe.committed([TopicPartition(t, p) for t, p in wanted], timeout=10)
    except KafkaException as exc:
        return {"committed offsets unavailable": exc.args[0].code()}
    finally:
        probe.close()
    return {
        f"{tp.topic}[{tp.partition}]": tp.offset for tp in committed if tp.offset < wanted[(tp.topic, tp.partition)]
    }


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
        while lagging := _lagging(bootstrap, sink.options.group_id, wanted):
            assert thread.is_alive(), f"the sink stopped: {errors!r}"
            assert time.monotonic() < deadline, f"not caught up: {lagging}"
            time.sleep(0.2)
    finally:
        sink.stop()
        thread.join(30)
    assert not errors, f"the sink raised: {errors!r}"


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message)
        return got
    finally:
        consumer.close()


def store(client: Client, model: TableModel, values: list[dict[str, Any]]) -> None:
    """Insert rows as the sink does: one Avro container through the erasure guard."""
    schema = model.schema
    serialize = AvroSerializer(schema)
    block = container(schema, [serialize(v)[SINGLE_OBJECT_PREFIX:] for v in values])
    guard = ErasureGuard(table_models())
    if not guard.insert(client, model, block, {"input_format_avro_allow_missing_fields": "1"}):
        client.raw_insert(model.qualified, insert_block=block, fmt="Avro")


def erasure_command(keys: list[str], verified_at: datetime) -> DsrCommand:
    """An erasure as the sink executes it (its signature is not what these tests are about)."""
    request = {"request_id": f"erase-{uuid.uuid4().hex[:8]}", "request_type": "ERASURE", "issued_at": verified_at}
    return DsrCommand(request, CommandHeaders(tuple(keys), verified_at=verified_at))


def model(table: str) -> TableModel:
    return next(m for m in table_models() if m.name == table)
