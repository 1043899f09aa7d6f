"""The sink reads a row's event id and subject keys from the front of its Avro body
without decoding the rest (consumers/avro_container.read_keys), for every stored record
schema that starts with event_id, source_event_id, subject_keys; no Kafka, no ClickHouse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.avro_container import SINGLE_OBJECT_PREFIX, has_keyed_prefix, read_keys
from pipeline.clickhouse_ddl import table_models
from pipeline.serde import AvroSerializer
from tests.avro_strategies import records

KEYED = [model.schema for model in table_models() if has_keyed_prefix(model.schema)]


def test_every_table_with_subject_keys_has_the_keyed_prefix() -> None:
    with_keys = {m.schema.full_name for m in table_models() if m.has_subject_keys}
    assert with_keys and with_keys <= {s.full_name for s in KEYED}


@pytest.mark.parametrize("schema", KEYED, ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_read_keys_gives_the_records_event_id_and_subject_keys(schema: Any, data: st.DataObject) -> None:
    value = data.draw(records(schema))
    keys = data.draw(st.lists(st.text(max_size=70), max_size=40))
    value = {**value, "subject_keys": keys}
    body = AvroSerializer(schema)(value)[SINGLE_OBJECT_PREFIX:]

    assert read_keys(body) == (str(value["event_id"]), keys)
