"""Avro object containers built from single-object bodies read back with fastavro, for
every record schema the sink stores; no Kafka, no ClickHouse."""

from __future__ import annotations

import io
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.avro_binary import read_string
from pipeline.clickhouse_ddl import table_models
from pipeline.serde import AvroSerializer
from sink.avro_container import SINGLE_OBJECT_PREFIX, container, zigzag_varint
from tests.support.avro_strategies import records

SCHEMAS = [model.schema for model in table_models()]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, uuid.UUID) else value


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_a_container_of_single_object_bodies_reads_back_as_the_records(schema: Any, data: st.DataObject) -> None:
    values = data.draw(st.lists(records(schema), min_size=1, max_size=5))
    serialize = AvroSerializer(schema)
    bodies = [serialize(v)[SINGLE_OBJECT_PREFIX:] for v in values]

    read = list(fastavro.reader(io.BytesIO(container(schema, bodies))))

    assert [_plain(r) for r in read] == [_plain(v) for v in values]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_zigzag_varint_is_avros_long_encoding(n: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", n)
    assert zigzag_varint(n) == out.getvalue()


@given(st.text(), st.binary(max_size=8))
def test_read_string_reads_the_leading_avro_string(text: str, rest: bytes) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "string", text)
    encoded = out.getvalue()
    assert read_string(encoded + rest) == (text, len(encoded))


def test_read_string_rejects_a_truncated_body() -> None:
    with pytest.raises(ValueError):
        read_string(zigzag_varint(10) + b"abc")
