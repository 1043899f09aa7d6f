"""The ClickHouse sink in-process against the real local broker and the real engine (chDB).

Each test reads its own copies of the record topics (`SinkOptions.with_topic_suffix`)
with its own consumer group, so tests sharing the broker do not see each other's
messages. Rows are built here for every stored record type from its Avro schema; the
expected counts come from what the test produced, not from the sink.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings
from pipeline.dead_letter import parse_headers
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import AvroSchema, SchemaCatalog, default_catalog
from pipeline.serde import AvroSerializer, Serde
from sink.clickhouse_sink import ClickHouseSink
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions
from sink.sink_process import apply_schema
from tests.support.kafka_offsets import end_offsets, lagging_partitions
from tests.support.kafka_reads import read_topic
from tests.support.metrics import counter, observations
from tests.support.sink_store import on_topic_copies
from tests.support.stored_records import NOW, record

MODELS = {m.name: m for m in table_models()}


@dataclass
class Traffic:
    """Produces records to the test's topics and remembers what went where."""

    producer: Producer
    topic_of: Callable[[str], str]  # record schema full name -> topic
    catalog: SchemaCatalog = field(default_factory=default_catalog)
    sent: dict[str, list[str]] = field(default_factory=dict)  # table -> row ids, duplicates included
    landed: dict[bytes | None, tuple[str, int, int]] = field(default_factory=dict)  # raw value -> where it landed

    def send(self, schema: AvroSchema, value: dict[str, Any], *, table: str) -> None:
        payload = AvroSerializer(schema, catalog=self.catalog)(value)
        self.producer.produce(self.topic_of(schema.full_name), key=str(value.get("event_id", "k")), value=payload)
        ident = value.get("event_id") or value["request_id"]
        self.sent.setdefault(table, []).append(str(ident))

    def raw(self, topic: str, value: bytes | None, key: bytes = b"raw") -> None:
        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            self.landed[value] = (msg.topic(), msg.partition(), msg.offset())

        self.producer.produce(topic, key=key, value=value, on_delivery=delivered)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


@dataclass
class SinkRun:
    options: SinkOptions
    settings: Settings
    client: Client

    def topic(self, full_name: str) -> str:
        return next(t.name for t in self.options.record_topics if full_name in t.value_schemas)


@pytest.fixture
def sink_topics(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    options = SinkOptions(group_id=group_id, batch_size=500, batch_max_s=0.3)
    with on_topic_copies(kafka_admin, options, "test") as copies:
        yield copies


@pytest.fixture
def run(sink_topics: SinkOptions, kafka_settings: Settings, ch_client: Client) -> SinkRun:
    apply_schema(ch_client)
    return SinkRun(sink_topics, kafka_settings, ch_client)


def run_sink_until_caught_up(
    run: SinkRun, *, catalog: SchemaCatalog | None = None, timeout: float = 60.0
) -> ClickHouseSink:
    """Run a sink in a thread until it has committed every message of its topics, then stop it."""
    sink = ClickHouseSink(
        run.settings,
        run.client,
        serde=Serde(catalog=catalog),
        metrics=SinkMetrics.create(CollectorRegistry()),
        options=run.options,
    )
    bootstrap = run.settings.kafka.bootstrap
    wanted = end_offsets(bootstrap, [t.name for t in run.options.record_topics])
    thread = threading.Thread(target=sink.run, name="sink")
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while lagging := lagging_partitions(bootstrap, run.options.group_id, wanted):
            assert thread.is_alive(), "the sink stopped"
            assert time.monotonic() < deadline, f"not caught up: {lagging}"
            time.sleep(0.2)
    finally:
        sink.stop()
        thread.join(30)
    return sink


def _schema(name: str) -> AvroSchema:
    return default_catalog().get(name)


# ---- tests ------------------------------------------------------------------------------


def test_every_table_gets_exactly_its_rows_and_bad_messages_go_to_the_dlq(run: SinkRun, kafka_bootstrap: str) -> None:
    # An older writer of CallRecord without `answered_by_user`: its rows are inserted with
    # that writer schema and the column gets its default.
    current_call = _schema("CallRecord")
    old_definition = {
        **current_call.definition,
        "fields": [f for f in current_call.definition["fields"] if f["name"] != "answered_by_user"],
    }
    old_call = AvroSchema.from_definition(old_definition)
    catalog = SchemaCatalog(list(default_catalog()))
    catalog.add(old_call)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    traffic = Traffic(producer, run.topic, catalog)
    plan = {
        "chat_conversations": ("ChatConversationRecord", 120),
        "chat_messages": ("ChatMessageRecord", 300),
        "calls": ("CallRecord", 80),
        "call_recordings": ("CallRecordingRecord", 40),
        "consent_ledger": ("ConsentLedgerRecord", 30),
        "dsr_receipts": ("DsrReceipt", 7),
    }
    for table, (schema_name, count) in plan.items():
        schema = _schema(schema_name)
        for n in range(count):
            extra = {"status": "GIVEN"} if table == "consent_ledger" else {}
            traffic.send(schema, record(schema, n, **extra), table=table)
    for n in range(1000, 1025):
        traffic.send(old_call, record(old_call, n), table="calls")
    # duplicates: re-sent rows (a replay upstream)
    for n in range(20):
        traffic.send(_schema("ChatMessageRecord"), record(_schema("ChatMessageRecord"), n), table="chat_messages")
        traffic.send(_schema("CallRecord"), record(_schema("CallRecord"), n), table="calls")
    chat_topic = run.topic("cs.records.ChatConversationRecord")
    bad = [
        (chat_topic, b"not avro at all", "SerdeError"),
        (chat_topic, b"\xc3\x01" + bytes(8) + b"\x02", "SerdeError"),  # unknown writer fingerprint
        (chat_topic, AvroSerializer(current_call)(record(current_call, 5000)), "SerdeError"),  # wrong topic
    ]
    for topic, value, _ in bad:
        traffic.raw(topic, value, key=b"bad-key")
    traffic.raw(run.topic("cs.records.DsrReceipt"), None, key=b"tombstone")
    traffic.flush()

    sink = run_sink_until_caught_up(run, catalog=catalog)
    # analysts see a recording once the sink judged it within its call (sink/recording_bounds.py)
    assert run.client.command("SELECT count() FROM analyst.call_recordings") == 0
    run.client.command(
        "INSERT INTO records.recording_checks (recording_id, verdict, checked_at) "
        "SELECT recording_id, 'within', now64(3) FROM records.call_recordings"
    )

    for table, ids in traffic.sent.items():
        final_rows, distinct = run.client.query(
            f"SELECT count(), uniqExact({MODELS[table].id_column}) FROM records.{table} FINAL"
        ).result_rows[0]
        assert (final_rows, distinct) == (len(set(ids)), len(set(ids))), table
        assert run.client.command(f"SELECT count() FROM analyst.{table}") == len(set(ids)), table
        assert counter(sink.metrics.rows_inserted, table=table) == len(ids), table
    old_rows = run.client.query(
        "SELECT count(), countIf(answered_by_user IS NULL), countIf(caller_number IS NOT NULL) "
        "FROM records.calls FINAL WHERE event_id LIKE 'event_id-10__'"
    ).result_rows[0]
    assert old_rows == (25, 25, 25)
    stored = run.client.query(
        "SELECT subject_keys, started_at, stripped, cookie_analytics FROM records.chat_conversations FINAL "
        "WHERE event_id = 'event_id-7'"
    ).result_rows
    assert stored == [(["subject_keys-7"], NOW.replace(tzinfo=None), [], True)]

    letters = read_topic(kafka_bootstrap, run.options.dlq_topic, len(bad))
    assert sorted(m.value() for m in letters) == sorted(value for _, value, _ in bad)
    for message in letters:
        headers = parse_headers(message.headers())
        assert message.key() == b"bad-key"
        assert headers["dlq.stage"] == "sink"
        assert headers["dlq.source.topic"] == chat_topic
        assert headers["dlq.error.class"] == "SerdeError"
        # the letter names the partition and offset the bad message was produced at (to find or replay it)
        source = (headers["dlq.source.topic"], int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
        assert source == traffic.landed[message.value()]
    assert "does not belong on" in " ".join(parse_headers(m.headers())["dlq.error"] for m in letters)
    assert counter(sink.metrics.dead_lettered, source_topic=chat_topic) == len(bad)
    assert counter(sink.metrics.skipped) == 1


def test_a_consent_withdrawal_clears_the_bound_fields_of_earlier_rows_of_its_subject(
    run: SinkRun, kafka_bootstrap: str
) -> None:
    chat = _schema("ChatConversationRecord")
    ledger = _schema("ConsentLedgerRecord")
    message = _schema("ChatMessageRecord")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    traffic = Traffic(producer, run.topic)
    withdrawn_at = NOW + timedelta(minutes=30)

    def conversation(n: int, key: str, started: datetime, channel: str = "WEB") -> None:
        traffic.send(
            chat, record(chat, n, subject_keys=[key], started_at=started, channel=channel), table="chat_conversations"
        )

    def consent_change(n: int, key: str, kind: str, purpose: str, status: str, **choices: bool) -> None:
        """A consent-ledger row of subject `key` at the withdrawal time."""
        fields = {"kind": kind, "purpose": purpose, "status": status, "event_time": withdrawn_at, **choices}
        traffic.send(ledger, record(ledger, n, subject_keys=[key], **fields), table="consent_ledger")

    conversation(1, "key-a", NOW)  # before the withdrawal: contact fields cleared
    conversation(2, "key-a", withdrawn_at)  # at the withdrawal: cleared too (<=)
    conversation(3, "key-a", withdrawn_at + timedelta(minutes=1))  # after: a fresh consent, kept
    conversation(4, "key-a", NOW, channel="MYSTAFF_APP")  # the app's contact fields need no consent
    conversation(5, "key-b", NOW)  # another subject
    conversation(6, "key-c", NOW)  # cookie row below: analytics and geolocation refused
    traffic.send(message, record(message, 1, subject_keys=["key-a"]), table="chat_messages")
    consent_change(1, "key-a", "CONSENT", "CONTACT_DETAILS", "WITHDRAWN")
    refused = {"cookie_functional": True, "cookie_analytics": False, "geolocation_permission": False}
    consent_change(2, "key-c", "COOKIE", "COOKIES", "GIVEN", **refused)
    traffic.flush()
    sink = run_sink_until_caught_up(run)

    # A row that arrives after its withdrawal was stored (another batch) is cleared too.
    conversation(7, "key-a", NOW - timedelta(minutes=5))
    traffic.flush()
    run_sink_until_caught_up(run)

    rows = {
        row[0]: row[1:]
        for row in run.client.query(
            "SELECT event_id, name, email, job_title, browser, isp_org, city, latitude, stripped "
            "FROM records.chat_conversations FINAL ORDER BY event_id"
        ).result_rows
    }
    contact = ["name:consent_withdrawn", "email:consent_withdrawn", "job_title:consent_withdrawn"]
    contact += ["phone:consent_withdrawn", "company_name:consent_withdrawn"]
    for n in (1, 2, 7):
        name, email, job_title, browser, isp, city, _lat, stripped = rows[f"event_id-{n}"]
        assert (name, email, job_title) == (None, None, None), n
        assert (browser, isp, city) == (f"browser-{n}", f"isp_org-{n}", f"city-{n}"), n
        assert sorted(stripped) == sorted(contact), n
    for n in (3, 4, 5):
        name, email, job_title, *_rest, stripped = rows[f"event_id-{n}"]
        assert (name, email, job_title, stripped) == (f"name-{n}", f"email-{n}", f"job_title-{n}", []), n
    name, _email, _job, browser, isp, city, latitude, stripped = rows["event_id-6"]
    assert (name, browser, isp, city, latitude) == ("name-6", "browser-6", None, None, None)
    assert sorted(stripped) == sorted(
        [
            f"{f}:consent_withdrawn"
            for f in (
                "isp_org",
                "visit_count",
                "chat_count",
                "referrer_url",
                "page_url",
                "visit_duration_s",
                "city",
                "latitude",
                "longitude",
            )
        ]
    )
    assert run.client.command("SELECT text FROM records.chat_messages FINAL") == "text-1"
    assert counter(sink.metrics.consent_cleared, table="chat_conversations", need="contact_consent") == 2


def _thirty_calls_stored(run: SinkRun, kafka_bootstrap: str) -> ClickHouseSink:
    """Produce 30 call records, run a sink with `run`'s options until it has committed them
    all, and check they are stored; the sink, for its metrics."""
    calls = _schema("CallRecord")
    traffic = Traffic(Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5}), run.topic)
    for n in range(30):
        traffic.send(calls, record(calls, n), table="calls")
    traffic.flush()
    sink = run_sink_until_caught_up(run, timeout=60.0)
    assert run.client.command("SELECT count() FROM records.calls") == 30
    return sink


def test_a_large_enough_batch_is_written_once_the_topics_run_dry_without_waiting_for_its_age(
    run: SinkRun, kafka_bootstrap: str
) -> None:
    """The end of a backlog: with batches that would wait ten minutes for their age, the
    sink still stores 30 rows at once, because they reach `idle_flush_messages` and the
    next consume call comes back empty."""
    run = SinkRun(replace(run.options, batch_max_s=600.0, idle_flush_messages=30), run.settings, run.client)
    sink = _thirty_calls_stored(run, kafka_bootstrap)
    assert observations(sink.metrics.batch_rows) == 1  # one batch of all 30


def test_a_batch_is_written_once_its_messages_reach_batch_max_bytes(run: SinkRun, kafka_bootstrap: str) -> None:
    """What bounds a draining sink's memory (`records worker sink --batch-max-mb`): with
    room for 10,000 messages, 30 records already waiting, consume calls of up to 5 and a
    byte bound of ten of the largest, the sink writes a batch as soon as its values reach
    the bound (at least ten messages each, so two or three batches: the tail is closed by
    bytes or its age) instead of one batch of all 30 (the test above)."""
    calls = _schema("CallRecord")
    serialize = AvroSerializer(calls, catalog=default_catalog())
    largest = max(len(serialize(record(calls, n))) for n in range(30))
    run = SinkRun(
        replace(
            run.options,
            batch_size=10_000,
            batch_max_bytes=10 * largest,
            poll_max=5,
            batch_max_s=5.0,
            idle_flush_messages=1_000_000,
        ),
        run.settings,
        run.client,
    )
    sink = _thirty_calls_stored(run, kafka_bootstrap)
    assert 2 <= observations(sink.metrics.batch_rows) <= 3


def test_a_failing_insert_is_retried_with_backoff_and_nothing_is_committed_meanwhile(
    run: SinkRun, kafka_bootstrap: str
) -> None:
    options = replace(run.options, retry_initial_s=0.1, retry_max_s=0.4)
    sink = ClickHouseSink(
        run.settings, run.client, serde=Serde(), metrics=SinkMetrics.create(CollectorRegistry()), options=options
    )
    calls = _schema("CallRecord")
    topic = run.topic(calls.full_name)
    with sink.lock:  # ClickHouse "fails": the table is gone while the sink runs
        run.client.command("DETACH TABLE records.calls")
    thread = threading.Thread(target=sink.run, name="sink")
    thread.start()
    try:
        traffic = Traffic(Producer({"bootstrap.servers": kafka_bootstrap}), run.topic)
        for n in range(50):
            traffic.send(calls, record(calls, n), table="calls")
        traffic.flush()
        wanted = end_offsets(kafka_bootstrap, [topic])
        deadline = time.monotonic() + 30
        while counter(sink.metrics.insert_retries) < 3:
            assert time.monotonic() < deadline, "no retries"
            time.sleep(0.05)
        assert lagging_partitions(kafka_bootstrap, options.group_id, wanted)  # nothing committed

        with sink.lock:
            run.client.command("ATTACH TABLE records.calls")
        while lagging_partitions(kafka_bootstrap, options.group_id, wanted):
            assert time.monotonic() < deadline + 30, "not caught up after the table came back"
            time.sleep(0.1)
    finally:
        sink.stop()
        thread.join(30)
    assert run.client.command("SELECT count() FROM records.calls FINAL") == 50
    assert counter(sink.metrics.rows_inserted, table="calls") == 50
