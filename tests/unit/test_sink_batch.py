"""Where each consumed message lands in a sink batch (pure: messages are plain values)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import fastavro
import pytest

from pipeline import topics
from pipeline.clickhouse_ddl import table_models
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, WireFormat, registry_client
from sink.avro_container import SINGLE_OBJECT_PREFIX
from sink.batch import Batch, Routes, invalid_bodies, split_group
from sink.sink_options import RECORD_TOPICS
from tests.support.stored_records import record

CATALOG = default_catalog()
MODELS = table_models()


@dataclass
class Msg:
    """A consumed message as the sink sees it (the confluent_kafka.Message accessors)."""

    _topic: str
    _value: bytes | None
    _offset: int
    _partition: int = 0
    _key: bytes | None = b"k"
    _headers: list[tuple[str, bytes]] = field(default_factory=list)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def routes(command_topics: frozenset[str] = frozenset()) -> Routes:
    return Routes(
        tables={m.schema.full_name: m for m in MODELS},
        topics={t.name: t for t in RECORD_TOPICS},
        id_tables=frozenset({"chat_conversations", "consent_ledger"}),
        command_topics=command_topics,
    )


def encoded(name: str, n: int, **overrides: Any) -> bytes:
    schema = CATALOG.get(name)
    return AvroSerializer(schema)(record(schema, n, **overrides))


def test_rows_are_grouped_by_table_and_writer_with_their_prefix_cut() -> None:
    batch = Batch(routes(), AvroDeserializer())
    chat = [encoded("ChatConversationRecord", n) for n in range(3)]
    message = encoded("ChatMessageRecord", 1)
    for offset, value in enumerate(chat):
        batch.add(Msg(topics.CHAT_ENRICHED.name, value, offset + 10, _partition=offset % 2))
    batch.add(Msg(topics.CHAT_ENRICHED.name, message, 20, _partition=1))

    groups = {table: g for (table, _), g in batch.groups.items()}
    assert set(groups) == {"chat_conversations", "chat_messages"}
    assert groups["chat_conversations"].bodies == [v[SINGLE_OBJECT_PREFIX:] for v in chat]
    assert groups["chat_conversations"].ids == ["event_id-0", "event_id-1", "event_id-2"]
    assert groups["chat_messages"].ids == []  # no consent-bound field: ids not needed
    assert batch.offsets == {(topics.CHAT_ENRICHED.name, 0): 13, (topics.CHAT_ENRICHED.name, 1): 21}
    assert batch.first_offsets == {(topics.CHAT_ENRICHED.name, 0): 10, (topics.CHAT_ENRICHED.name, 1): 11}
    assert (batch.rows, batch.messages, batch.rejected) == (4, 4, [])


@pytest.mark.parametrize(
    ("topic", "value", "error"),
    [
        (topics.CHAT_ENRICHED.name, b"plain text", "not Avro: unknown framing"),
        (topics.CHAT_ENRICHED.name, b"\xc3\x01" + bytes(8) + b"\x00", "unknown writer schema fingerprint"),
        (topics.CHAT_ENRICHED.name, encoded("CallRecord", 1), "does not belong on cs.chat.enriched.v1"),
        ("cs.somewhere.else", encoded("CallRecord", 1), "does not read records from"),
    ],
)
def test_undecodable_or_misplaced_messages_become_dead_letters(topic: str, value: bytes, error: str) -> None:
    batch = Batch(routes(), AvroDeserializer())
    batch.add(Msg(topic, value, 41, _partition=2, _key=b"original", _headers=[("trace", b"1")]))

    assert batch.rows == 0
    [rejected] = batch.rejected
    assert rejected.message.value() == value
    assert rejected.letter.source_topic == topic
    assert (rejected.letter.partition, rejected.letter.offset, rejected.letter.stage) == (2, 41, "sink")
    assert error in rejected.letter.error
    assert batch.offsets == {(topic, 2): 42}


def test_tombstones_are_skipped_but_their_offsets_count() -> None:
    batch = Batch(routes(), AvroDeserializer())
    batch.add(Msg(topics.DSR_RECEIPTS.name, None, 5))
    assert (batch.rows, batch.skipped, batch.empty) == (0, 1, False)
    assert batch.offsets == {(topics.DSR_RECEIPTS.name, 0): 6}


def test_command_topics_hand_their_messages_over_untouched() -> None:
    batch = Batch(routes(frozenset({"cs.commands"})), AvroDeserializer())
    batch.add(Msg("cs.commands", b"anything", 0))
    batch.add(Msg("cs.commands", None, 1))
    assert [m.value() for m in batch.commands["cs.commands"]] == [b"anything", None]
    assert (batch.rows, batch.skipped, batch.rejected) == (0, 0, [])


def test_confluent_framed_records_are_reencoded_with_the_current_schema() -> None:
    registry = registry_client("mock://sink-batch")
    schema = CATALOG.get("CallRecord")
    value = record(schema, 3)
    framed = AvroSerializer(schema, wire_format=WireFormat.CONFLUENT, registry=registry)(value)
    batch = Batch(routes(), AvroDeserializer(registry=registry))
    batch.add(Msg(topics.CALL_ENRICHED.name, framed, 0))

    [group] = batch.groups.values()
    assert group.table.name == "calls"
    decoded = fastavro.schemaless_reader(io.BytesIO(group.bodies[0]), schema.parsed, None)
    assert decoded == value


def test_invalid_bodies_are_found_and_split_off() -> None:
    batch = Batch(routes(), AvroDeserializer())
    good = encoded("ChatConversationRecord", 1)
    batch.add(Msg(topics.CHAT_ENRICHED.name, good, 0))
    batch.add(Msg(topics.CHAT_ENRICHED.name, good[:-7], 1))  # truncated: a valid prefix, a broken body
    [group] = batch.groups.values()

    bad = invalid_bodies(group.writer, group.bodies)
    split_group(group, bad)

    assert bad == [1]
    assert [m.offset() for m in group.messages] == [0]
    assert group.ids == ["event_id-1"]
