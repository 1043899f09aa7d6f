"""What one sink batch holds, and how a consumed message gets there. Pure: no Kafka or
ClickHouse calls; the sink adds messages and later writes what the batch collected.

A message lands in exactly one place:
- a row: its Avro body (without the 10-byte single-object prefix) in the group of its
  table and writer schema, so each group becomes one Avro container and one INSERT;
- a command: the whole message, for the handler registered for its topic (DSR work);
- a dead letter: not Avro, an unknown writer schema (a fingerprint, or a registry schema
  id, that is not in the registry or whose schema the catalog does not know), or a record
  type that does not belong to its topic; written to the DLQ with the original key, bytes
  and headers, never raised out of the batch (a poison message must not stop the sink);
- skipped: a tombstone (value None) of a compacted topic; nothing to store.
Whatever the place, its offset + 1 becomes the partition's offset to commit.

Confluent-framed messages (magic 0 + schema id) cannot go to ClickHouse as they are:
they are decoded (registry lookup) and re-encoded as the current schema's body.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import fastavro

from pipeline.avro_binary import read_string
from pipeline.clickhouse_ddl import TableModel
from pipeline.dead_letter import DeadLetter
from pipeline.schemas import AvroSchema, SchemaError
from pipeline.serde import SINGLE_OBJECT_MAGIC, AvroDeserializer, SerdeError
from pipeline.topics import TopicSpec
from sink.avro_container import SINGLE_OBJECT_PREFIX

STAGE = "sink"


class KafkaMessage(Protocol):
    """The part of confluent_kafka.Message the sink reads."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> Any: ...  # list of (name, value) pairs or None


def header_pairs(message: KafkaMessage) -> list[tuple[str, bytes | None]]:
    """A message's headers as (name, bytes) pairs, whatever form the client gave them in."""
    raw = message.headers() or ()
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]


@dataclass
class Group:
    """Bodies of one table written with one writer schema: one container, one INSERT."""

    table: TableModel
    writer: AvroSchema
    collect_ids: bool
    bodies: list[bytes] = field(default_factory=list)
    messages: list[KafkaMessage] = field(default_factory=list)  # parallel to bodies, for dead letters
    ids: list[str] = field(default_factory=list)  # event ids, when collect_ids

    def add(self, body: bytes, message: KafkaMessage) -> None:
        if self.collect_ids:
            self.ids.append(read_string(body)[0])
        self.bodies.append(body)
        self.messages.append(message)


@dataclass(frozen=True)
class Rejected:
    """A message for the dead-letter topic and why."""

    message: KafkaMessage
    letter: DeadLetter


@dataclass(frozen=True)
class Routes:
    """Which table each record type of each subscribed topic goes to.

    tables: record schema full name -> table; topics: the record topics the sink reads;
    id_tables: tables whose event ids the batch collects (consent-bound tables and the
    consent ledger: the withdrawal step selects rows by id).
    """

    tables: Mapping[str, TableModel]
    topics: Mapping[str, TopicSpec]
    id_tables: frozenset[str] = frozenset()
    command_topics: frozenset[str] = frozenset()

    def route(self, topic: str, writer: AvroSchema) -> TableModel:
        spec = self.topics.get(topic)
        if spec is None:
            raise SerdeError(f"the sink does not read records from {topic}")
        if writer.full_name not in spec.value_schemas:
            raise SerdeError(f"{writer.full_name} does not belong on {topic}")
        table = self.tables.get(writer.full_name)
        if table is None:
            raise SerdeError(f"no table stores {writer.full_name}")
        return table


class Batch:
    """Messages consumed since the last commit, sorted into groups, commands and dead letters."""

    def __init__(
        self,
        routes: Routes,
        deserializer: AvroDeserializer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = routes
        self.deserializer = deserializer
        self._clock = clock
        self.started_at: float | None = None
        self.groups: dict[tuple[str, bytes], Group] = {}
        self.commands: dict[str, list[KafkaMessage]] = {}
        self.rejected: list[Rejected] = []
        self.offsets: dict[tuple[str, int], int] = {}  # next offset to consume (= to commit)
        self.first_offsets: dict[tuple[str, int], int] = {}  # where to rewind if the batch is dropped
        self.messages = 0
        self.bytes = 0
        self.skipped = 0
        self.by_topic: dict[str, int] = {}  # messages per topic (metrics are counted per batch)
        self.skipped_by_topic: dict[str, int] = {}
        # (topic, fingerprint) -> group, or the error every message of that pair gets
        self._routes: dict[tuple[str, bytes], Group | SerdeError] = {}

    # ---- filling --------------------------------------------------------------------

    def add(self, message: KafkaMessage) -> None:
        """Sort one message in; the hot path (a row of a known writer) is a few dict lookups."""
        topic = message.topic() or ""
        position = (topic, message.partition() or 0)
        offset = message.offset() or 0
        if self.started_at is None:
            self.started_at = self._clock()
        self.messages += 1
        self.by_topic[topic] = self.by_topic.get(topic, 0) + 1
        if position not in self.first_offsets:
            self.first_offsets[position] = offset
        self.offsets[position] = offset + 1
        value = message.value()
        if topic in self.routes.command_topics:
            self.commands.setdefault(topic, []).append(message)
            return
        if value is None:
            self.skipped += 1
            self.skipped_by_topic[topic] = self.skipped_by_topic.get(topic, 0) + 1
            return
        self.bytes += len(value)
        if value[:2] == SINGLE_OBJECT_MAGIC:
            route = self._routes.get((topic, value[2:SINGLE_OBJECT_PREFIX]))
            if route is None:
                route = self._route(topic, value)
            if isinstance(route, Group):
                try:
                    route.add(value[SINGLE_OBJECT_PREFIX:], message)
                except ValueError:
                    self.reject(message, SerdeError(f"{route.writer.full_name}: event_id is not readable"))
                return
            self.reject(message, route)
            return
        self._add_reencoded(message, topic, value)

    def _route(self, topic: str, value: bytes) -> Group | SerdeError:
        """The group of a (topic, writer fingerprint) pair, or why its messages are rejected."""
        key = (topic, value[2:SINGLE_OBJECT_PREFIX])
        route: Group | SerdeError
        try:
            writer = self.deserializer.writer_schema(value)
            route = self._group(self.routes.route(topic, writer), writer)
        except SerdeError as exc:
            route = exc
        self._routes[key] = route
        return route

    def _group(self, table: TableModel, writer: AvroSchema) -> Group:
        key = (table.name, writer.fingerprint)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(table, writer, collect_ids=table.name in self.routes.id_tables)
        return group

    def _add_reencoded(self, message: KafkaMessage, topic: str, value: bytes) -> None:
        """Slow path for the Confluent wire format: decode, re-encode with the current schema."""
        try:
            decoded = self.deserializer(value)
            table = self.routes.route(topic, decoded.schema)
            out = io.BytesIO()
            fastavro.schemaless_writer(out, decoded.schema.parsed, decoded.value)
        except (SerdeError, SchemaError) as exc:
            self.reject(message, exc)
            return
        except Exception as exc:  # a library error may quote the value: keep its class only
            self.reject(message, SerdeError(f"Confluent-framed message on {topic}: {type(exc).__name__}"))
            return
        try:
            self._group(table, decoded.schema).add(out.getvalue(), message)
        except ValueError:
            self.reject(message, SerdeError(f"{decoded.schema_name}: event_id is not readable"))

    def reject(self, message: KafkaMessage, error: Exception) -> None:
        letter = DeadLetter.of(message, error, STAGE)
        self.rejected.append(Rejected(message, letter))

    # ---- state ----------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return sum(len(g.bodies) for g in self.groups.values())

    @property
    def empty(self) -> bool:
        return self.messages == 0

    def age(self) -> float:
        return 0.0 if self.started_at is None else self._clock() - self.started_at

    def ids_of(self, table: str) -> list[str]:
        return [i for (name, _), g in self.groups.items() if name == table for i in g.ids]

    def rows_by_table(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (name, _), group in self.groups.items():
            out[name] = out.get(name, 0) + len(group.bodies)
        return out


def invalid_bodies(writer: AvroSchema, bodies: Iterable[bytes]) -> list[int]:
    """Indexes of the bodies that are not a valid `writer` record (only used after an insert
    failed, to tell bad messages from a failing ClickHouse)."""
    bad: list[int] = []
    for index, body in enumerate(bodies):
        buf = io.BytesIO(body)
        try:
            fastavro.schemaless_reader(buf, writer.parsed, None)
        except Exception:
            bad.append(index)
            continue
        if buf.tell() != len(body):
            bad.append(index)
    return bad


def split_group(group: Group, bad: Sequence[int]) -> list[int]:
    """Remove the bodies at `bad` from the group (and their ids); returns `bad` as given."""
    drop = set(bad)
    group.bodies = [b for i, b in enumerate(group.bodies) if i not in drop]
    group.messages = [m for i, m in enumerate(group.messages) if i not in drop]
    if group.collect_ids:
        group.ids = [x for i, x in enumerate(group.ids) if i not in drop]
    return list(bad)


def describe(batch: Batch) -> dict[str, Any]:
    """Counts for a log line: no values, no keys."""
    return {
        "messages": batch.messages,
        "rows": batch.rows_by_table(),
        "dead_lettered": len(batch.rejected),
        "skipped": batch.skipped,
        "commands": {t: len(m) for t, m in batch.commands.items()},
    }
