"""sink/denial_state.py: subject keys read straight from Avro bodies, and the denial
times it keeps (they only grow; a denial that raises nothing is not new)."""

from __future__ import annotations

import io

import fastavro
import pytest

from pipeline.clickhouse_ddl import table_models
from pipeline.serde import AvroSerializer
from sink.avro_container import SINGLE_OBJECT_PREFIX
from sink.consent_withdrawal import consent_bound
from sink.denial_state import DenialState, has_key_prefix, prefix_subject_keys, string_reader, time_reader, to_ms
from tests.support.stored_records import record

BOUND = [m for m in table_models() if consent_bound(m) is not None]


@pytest.mark.parametrize("model", BOUND, ids=[m.name for m in BOUND])
def test_subject_keys_read_from_the_body_equal_the_decoded_ones(model) -> None:  # type: ignore[no-untyped-def]
    schema = model.schema
    assert has_key_prefix(schema)
    for keys in ([], ["k1"], ["ä" * 70, "k2", "k3" * 40]):
        body = AvroSerializer(schema)(record(schema, 7, subject_keys=keys))[SINGLE_OBJECT_PREFIX:]
        decoded = fastavro.schemaless_reader(io.BytesIO(body), schema.parsed, None)
        assert [k.decode() for k in prefix_subject_keys(body)] == decoded["subject_keys"] == keys


def test_a_truncated_body_raises_value_error() -> None:
    schema = BOUND[0].schema
    body = AvroSerializer(schema)(record(schema, 7, subject_keys=["key-1"]))[SINGLE_OBJECT_PREFIX:]
    for cut in (5, 15):  # inside event_id, inside source_event_id
        with pytest.raises(ValueError):
            prefix_subject_keys(body[:cut])


def test_denial_times_only_grow_and_only_a_strictly_covered_denial_is_not_new() -> None:
    from datetime import timedelta

    state = DenialState(timedelta(days=1))
    assert state.note([b"a", b"b"], "contact_consent", 1000) is True
    assert state.note([b"a"], "contact_consent", 900) is False  # covered: nothing new to clear
    assert state.note([b"a"], "contact_consent", 1000) is True  # a replay: applied again
    assert state.note([b"a"], "geolocation", 500) is True
    assert state.note([b"b", b"c"], "contact_consent", 1000) is True  # new for c
    assert state.until([b"a", b"x"], "contact_consent") == 1000
    assert state.until([b"x"], "contact_consent") is None
    assert state.hits([b"x", b"c"]) and not state.hits([b"x"])
    assert len(state) == 3


@pytest.mark.parametrize("model", BOUND, ids=[m.name for m in BOUND])
def test_the_row_time_read_from_the_body_equals_the_decoded_one(model) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    schema = model.schema
    field = model.record.time_field
    read = time_reader(schema, field)
    assert read is not None, field
    for when in (datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), datetime(1999, 12, 31, tzinfo=UTC)):
        value = record(schema, 7, subject_keys=["k" * 64, "k2"], **{field: when})
        body = AvroSerializer(schema)(value)[SINGLE_OBJECT_PREFIX:]
        decoded = fastavro.schemaless_reader(io.BytesIO(body), schema.parsed, None)
        assert read(body) == to_ms(decoded[field]) == to_ms(when)
    with pytest.raises(ValueError):
        read(body[:20])


def test_no_time_reader_for_a_field_it_cannot_reach_or_that_is_not_millis() -> None:
    from pipeline.schemas import AvroSchema

    def schema(*fields: dict) -> AvroSchema:  # type: ignore[type-arg]
        return AvroSchema.from_definition({"type": "record", "name": "R", "fields": list(fields)})

    millis = {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    a_map = {"name": "m", "type": {"type": "map", "values": "long"}}
    micros = {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}}
    assert time_reader(schema(a_map, millis), "t") is None
    assert time_reader(schema(micros), "t") is None
    assert time_reader(schema(millis), "missing") is None
    assert time_reader(schema({"name": "s", "type": ["null", "string"]}, millis), "t") is not None


@pytest.mark.parametrize("channel", ["WEB", "MYSTAFF_APP", "äö" * 40])
def test_the_channel_read_from_the_body_equals_the_decoded_one(channel: str) -> None:
    schema = next(m.schema for m in BOUND if m.name == "chat_conversations")
    read = string_reader(schema, "channel")
    assert read is not None
    body = AvroSerializer(schema)(record(schema, 3, subject_keys=["k"], channel=channel))[SINGLE_OBJECT_PREFIX:]
    assert read(body) == fastavro.schemaless_reader(io.BytesIO(body), schema.parsed, None)["channel"] == channel
    with pytest.raises(ValueError):
        read(body[:12])


def test_a_string_reader_reads_null_and_refuses_what_is_not_a_string() -> None:
    from pipeline.schemas import AvroSchema

    schema = AvroSchema.from_definition(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "n", "type": "long"},
                {"name": "s", "type": ["null", "string"]},
                {"name": "b", "type": "bytes"},
            ],
        }
    )
    read = string_reader(schema, "s")
    assert read is not None
    for value in (None, "x"):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema.parsed, {"n": 5, "s": value, "b": b""})
        assert read(out.getvalue()) == value
    assert string_reader(schema, "b") is None  # bytes, not text
    assert string_reader(schema, "n") is None
    assert string_reader(schema, "missing") is None
