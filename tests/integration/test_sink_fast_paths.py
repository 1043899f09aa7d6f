"""The sink's fast paths against the real broker and chDB: the consent-withdrawal step
with its in-memory set of denied subject keys (consumers/consent_withdrawal.py, step 0):
batches whose rows carry no denied key run no withdrawal query, and a denial stored by an
earlier batch of the same sink still clears a row that arrives later; and periodic jobs
(retention) that wait for the first batch instead of delaying it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.clickhouse_sink import ClickHouseSink, PeriodicJob, SinkOptions
from consumers.metrics import SinkMetrics
from consumers.sink_process import apply_schema
from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import AvroSchema, default_catalog
from pipeline.serde import AvroSerializer
from pipeline.topics import TopicSpec

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CHAT = default_catalog().get("ChatConversationRecord")
LEDGER = default_catalog().get("ConsentLedgerRecord")


def record(schema: AvroSchema, n: int, **overrides: Any) -> dict[str, Any]:
    """A valid value of `schema` with every optional field set; ids derive from `n`."""

    def value(name: str, node: Any) -> Any:
        if isinstance(node, list):
            return value(name, next(b for b in node if b != "null"))
        if isinstance(node, str):
            scalars = {"string": f"{name}-{n}", "int": n, "long": n, "double": 1.5, "float": 1.5, "boolean": True}
            return scalars.get(node, b"x")
        if node.get("logicalType") == "timestamp-millis":
            return NOW
        if node.get("logicalType") == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}-{n}"))
        kind = node["type"]
        if kind == "enum":
            return node["symbols"][0]
        if kind == "array":
            return []
        if kind == "map":
            return {}
        return value(name, kind)

    out = {f["name"]: value(f["name"], f["type"]) for f in schema.definition["fields"]}
    out["channel"] = "WEB"
    out.update(overrides)
    return out


class QueryLog:
    """The real client, with the SQL of every `query` call written down."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.queries: list[str] = []

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.queries.append(sql)
        return self._client.query(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def options(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    suffix = f".test-{uuid.uuid4().hex[:10]}"
    options = SinkOptions(group_id=group_id, batch_size=20, batch_max_s=0.2).with_topic_suffix(suffix)
    specs = [*options.record_topics, TopicSpec(options.dlq_topic, "k", "dlq", 1)]
    kafka_admin.create_topics([TopicSpec(s.name, s.key, s.description, 1) for s in specs])
    yield options
    kafka_admin.delete_topics([s.name for s in specs])


class Running:
    """A sink in a thread; `send` produces rows, `caught_up` waits for their commit."""

    def __init__(
        self, options: SinkOptions, settings: Settings, client: QueryLog, maintenance: list[PeriodicJob] | None = None
    ) -> None:
        self.options = options
        self.bootstrap = settings.kafka.bootstrap
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self.sent: dict[tuple[str, int], int] = {}
        self.sink = ClickHouseSink(
            settings,
            client,  # type: ignore[arg-type]
            metrics=SinkMetrics.create(CollectorRegistry()),
            options=options,
            maintenance=maintenance or [],
        )
        self.thread = threading.Thread(target=self.sink.run, name="sink")

    def start(self) -> Running:
        self.thread.start()
        return self

    def topic(self, schema: AvroSchema) -> str:
        return next(t.name for t in self.options.record_topics if schema.full_name in t.value_schemas)

    def send(self, schema: AvroSchema, value: dict[str, Any]) -> None:
        topic = self.topic(schema)
        self.producer.produce(topic, AvroSerializer(schema)(value), key=b"k")
        self.sent[(topic, 0)] = self.sent.get((topic, 0), 0) + 1
        assert self.producer.flush(30) == 0

    def caught_up(self, timeout: float = 60.0) -> None:
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.options.group_id})
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    committed = probe.committed([TopicPartition(t, p) for t, p in self.sent], timeout=10)
                except KafkaException:  # e.g. the group's coordinator is not ready yet
                    committed = []
                if committed and all(tp.offset >= self.sent[(tp.topic, tp.partition)] for tp in committed):
                    return
                assert self.thread.is_alive(), "the sink stopped"
                assert time.monotonic() < deadline, "the sink did not catch up"
                time.sleep(0.2)
        finally:
            probe.close()

    def stop(self) -> None:
        self.sink.stop()
        if self.thread.is_alive():
            self.thread.join(30)


@pytest.fixture
def running(options: SinkOptions, kafka_settings: Settings, ch_client: Client) -> Iterator[tuple[Running, QueryLog]]:
    apply_schema(ch_client)
    client = QueryLog(ch_client)
    run = Running(options, kafka_settings, client).start()
    yield run, client
    run.stop()


def _withdrawal(n: int, key: str, at: datetime) -> dict[str, Any]:
    return record(
        LEDGER, n, subject_keys=[key], kind="CONSENT", purpose="CONTACT_DETAILS", status="WITHDRAWN", event_time=at
    )


def test_batches_of_rows_without_a_denied_key_run_no_withdrawal_query(running: tuple[Running, QueryLog]) -> None:
    run, client = running
    run.send(LEDGER, _withdrawal(1, "key-denied", NOW))
    run.caught_up()
    before = len(client.queries)
    for batch in range(3):
        for n in range(5):
            run.send(CHAT, record(CHAT, 100 * batch + n, subject_keys=[f"key-{batch}-{n}"]))
        run.caught_up()
    assert client.queries[before:] == []


def test_a_denial_from_an_earlier_batch_clears_a_row_that_arrives_later(
    running: tuple[Running, QueryLog], ch_client: Client
) -> None:
    run, _client = running
    run.send(CHAT, record(CHAT, 1, subject_keys=["key-other"]))
    run.caught_up()  # the denied set is loaded (empty) before the withdrawal arrives
    run.send(LEDGER, _withdrawal(2, "key-a", NOW + timedelta(minutes=30)))
    run.caught_up()
    run.send(CHAT, record(CHAT, 3, subject_keys=["key-a"], started_at=NOW))
    run.send(CHAT, record(CHAT, 4, subject_keys=["key-a"], started_at=NOW + timedelta(hours=1)))
    run.caught_up()
    rows = dict(
        ch_client.query("SELECT event_id, name FROM records.chat_conversations FINAL ORDER BY event_id").result_rows
    )
    assert rows == {"event_id-1": "name-1", "event_id-3": None, "event_id-4": "name-4"}


def test_a_job_run_at_start_runs_after_the_first_batch_is_written(
    options: SinkOptions, kafka_settings: Settings, ch_client: Client
) -> None:
    apply_schema(ch_client)
    seen: list[int] = []

    def job(client: Client) -> None:
        seen.append(int(client.command("SELECT count() FROM records.chat_conversations")))

    run = Running(options, kafka_settings, QueryLog(ch_client), [PeriodicJob("retention", 3600, job)])
    try:
        for n in range(3):  # waiting on the topic before the sink starts
            run.send(CHAT, record(CHAT, n, subject_keys=[f"key-{n}"]))
        run.start().caught_up()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        run.stop()
    assert seen and seen[0] > 0  # the first run already sees the first batch
