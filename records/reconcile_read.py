"""The reads behind `records reconcile`: Kafka and ClickHouse in, the plain data of
retention_jobs/reconcile.py out. Nothing here decides an outcome.

1. raw events: every message of cs.chat.v1, cs.call.v1, cs.consent.v1 and
   cs.contact-form.v1 from the first offset at or after T (`offsets_for_times`) to the
   end offset seen when the read starts;
   each is decoded with the project's serde; its row id, table, subject keys and policy
   time come from the stage's own definitions (streams/rows.py, the policy);
2. letters: every message of cs.quarantine.v1 and cs.dlq.v1 from T on, by its
   `pipeline.dead_letter` headers; a sink letter (an enriched row) is decoded for its
   `source_event_id`;
3. stored rows: the rows with those ids, read FINAL, table by table;
4. erasures: the erased-keys table (records.erased_keys FINAL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline import topics
from pipeline.clickhouse_ddl import ERASED_KEYS_TABLE, RECORDS_DB
from pipeline.config import KafkaConnection
from pipeline.dead_letter import H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC, parse_headers
from pipeline.exceptions import KafkaClientError
from pipeline.policy import Policy, default_policy
from pipeline.serde import Serde, SerdeError
from pipeline.subject_keys import SubjectKeyer
from retention_jobs.reconcile import (
    DEAD_LETTERED,
    QUARANTINED,
    Erasure,
    Letter,
    RawEvent,
    Reconciliation,
    StoredRow,
    reconcile,
)
from streams.consent_state import to_millis as _to_millis
from streams.row_types import RAW_RECORD_TYPES, RAW_ROW_ID_FIELDS
from streams.rows import RowBuilder

RAW_TOPICS: tuple[str, ...] = (topics.CHAT.name, topics.CALL.name, topics.CONSENT.name, topics.CONTACT_FORM.name)
# Row ids (36-character UUIDs and the like) per query: a chunk stays under ClickHouse's default
# 256 KiB query size, which the embedded endpoint does not let a client raise.
_IDS_PER_QUERY = 4000


@dataclass(frozen=True)
class Sources:
    """Where to read; tests narrow it to their own messages with `key_prefix`."""

    raw_topics: tuple[str, ...] = RAW_TOPICS
    quarantine_topic: str = topics.QUARANTINE.name
    dlq_topics: tuple[str, ...] = (topics.DLQ.name,)
    key_prefix: bytes = b""


def read_topic(connection: KafkaConnection, topic: str, since_ms: int, timeout_s: float = 30.0) -> Iterator[Message]:
    """Every message of `topic` from the first offset at or after `since_ms` to the end
    offsets seen at the start. Raises KafkaClientError if the topic cannot be read."""
    consumer = Consumer(
        {
            **connection.as_librdkafka_dict(),
            "group.id": f"records-reconcile-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s)
            partitions = sorted(metadata.topics[topic].partitions)
            if metadata.topics[topic].error is not None:
                raise KafkaClientError(f"cannot read {topic}: {metadata.topics[topic].error.str()}")
            wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
            starts = consumer.offsets_for_times(wanted, timeout=timeout_s)
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions
            }
        except KafkaException as exc:
            raise KafkaClientError(f"cannot read {topic}: {exc.args[0].str() if exc.args else exc}") from exc
        assign = []
        for tp in starts:
            start = tp.offset if tp.offset >= 0 else ends[tp.partition]  # -1: nothing since T
            if start < ends[tp.partition]:
                assign.append(TopicPartition(topic, tp.partition, start))
        if not assign:
            return
        consumer.assign(assign)
        open_partitions = {tp.partition for tp in assign}
        idle = 0
        while open_partitions:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
                if idle > timeout_s:
                    raise KafkaClientError(f"reading {topic} stalled")
                continue
            idle = 0
            error = message.error()
            partition = message.partition() or 0
            if error is not None:
                if error.code() == error._PARTITION_EOF:
                    open_partitions.discard(partition)
                    continue
                raise KafkaClientError(f"cannot read {topic}: {error.str()}")
            offset = message.offset() or 0
            if offset >= ends[partition]:
                open_partitions.discard(partition)
                continue
            yield message
            if offset + 1 >= ends[partition]:
                open_partitions.discard(partition)
    finally:
        consumer.close()


def raw_event(message: Message, serde: Serde, builder: RowBuilder, policy: Policy) -> RawEvent:
    """The accounting view of one raw message; undecodable: only its position."""
    topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
    try:
        decoded = serde.decode(message.value())
        schema = decoded.schema_name
        if schema not in topics.by_name(topic).value_schemas:
            return RawEvent(topic, partition, offset, event_id=str(decoded.value.get("event_id")), schema=schema)
        record = policy.record(RAW_RECORD_TYPES[schema])
        value = decoded.value
        keys, moment = builder.erasure_scope(schema, value)
        return RawEvent(
            topic,
            partition,
            offset,
            event_id=str(value["event_id"]),
            schema=schema,
            table=record.table,
            row_id=str(value[RAW_ROW_ID_FIELDS[schema]]),
            subject_keys=tuple(keys),
            policy_time_ms=moment,
            retention=record.period,
        )
    except (SerdeError, KeyError, TypeError, ValueError, AttributeError):
        return RawEvent(topic, partition, offset)


def letter(message: Message, kind: str, serde: Serde) -> Letter | None:
    """A quarantine or dead-letter message as a Letter; None without dead-letter headers."""
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    headers = parse_headers([(k, v.encode() if isinstance(v, str) else v) for k, v in items])
    if H_SOURCE_TOPIC not in headers:
        return None
    source = headers[H_SOURCE_TOPIC]
    source_event_id = None
    if source not in RAW_TOPICS:  # a row the sink refused: find its event by the row's own field
        try:
            source_event_id = str(serde.decode(message.value()).value["source_event_id"])
        except (SerdeError, KeyError, TypeError):
            source_event_id = None
    return Letter(
        kind=kind,
        source_topic=source,
        partition=int(headers.get(H_SOURCE_PARTITION, "0") or 0),
        offset=int(headers.get(H_SOURCE_OFFSET, "0") or 0),
        reason=headers.get("dlq.error", ""),
        stage=headers.get("dlq.stage", ""),
        source_event_id=source_event_id,
    )


def stored_rows(client: Client, events: Sequence[RawEvent]) -> list[StoredRow]:
    """The rows (read FINAL) whose table and id the events name."""
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.table and event.row_id:
            wanted.setdefault(event.table, set()).add(event.row_id)
    out = []
    for table, ids in sorted(wanted.items()):
        ordered = sorted(ids)
        for start in range(0, len(ordered), _IDS_PER_QUERY):
            chunk = ordered[start : start + _IDS_PER_QUERY]
            result = client.query(
                f"SELECT event_id, source_event_id, stripped FROM {RECORDS_DB}.{table} FINAL "
                f"WHERE event_id IN {_strings(chunk)}"
            )
            out += [StoredRow(table, r[0], r[1], tuple(r[2] or ())) for r in result.result_rows]
    return out


def erasures(client: Client) -> list[Erasure]:
    result = client.query(
        f"SELECT subject_key, toUnixTimestamp64Milli(erased_at) FROM {RECORDS_DB}.{ERASED_KEYS_TABLE} FINAL"
    )
    return [Erasure(r[0], int(r[1])) for r in result.result_rows]


@dataclass(frozen=True)
class Collected:
    events: list[RawEvent]
    rows: list[StoredRow]
    letters: list[Letter]
    erasures: list[Erasure]


def collect_window(
    connection: KafkaConnection,
    client: Client,
    *,
    serde: Serde,
    builder: RowBuilder,
    policy: Policy,
    since: datetime,
    sources: Sources | None = None,
    read: Callable[[KafkaConnection, str, int], Iterator[Message]] = read_topic,
) -> Collected:
    """Everything `reconcile` needs for the window since `since` (see the module docstring)."""
    sources = sources or Sources()
    since_ms = _to_millis(since)

    def mine(message: Message) -> bool:
        return (message.key() or b"").startswith(sources.key_prefix)

    events = [
        raw_event(m, serde, builder, policy)
        for topic in sources.raw_topics
        for m in read(connection, topic, since_ms)
        if mine(m)
    ]
    letters: list[Letter] = []
    for topic, kind in [(sources.quarantine_topic, QUARANTINED), *((t, DEAD_LETTERED) for t in sources.dlq_topics)]:
        for message in read(connection, topic, since_ms):
            if mine(message):
                found = letter(message, kind, serde)
                if found is not None:
                    letters.append(found)
    return Collected(events, stored_rows(client, events), letters, erasures(client))


def _strings(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + ")"


def reconcile_window(
    connection: KafkaConnection,
    client: Client,
    *,
    serde: Serde,
    keyer: SubjectKeyer,
    since: datetime,
    now: datetime,
    policy: Policy | None = None,
    sources: Sources | None = None,
) -> Reconciliation:
    """Read the window since `since` and account for every raw event in it."""
    policy = policy or default_policy()
    data = collect_window(
        connection, client, serde=serde, builder=RowBuilder(keyer, policy), policy=policy, since=since, sources=sources
    )
    return reconcile(
        data.events, data.rows, data.letters, data.erasures, since_ms=_to_millis(since), now_ms=_to_millis(now)
    )
