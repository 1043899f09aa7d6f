"""Consent withdrawals in the sink, real broker and real engine (chDB): the contract of
sink/consent_withdrawal.py on both paths (in-memory denials as the store's sole writer,
and the per-batch query), and that the sole writer stores a row that comes after its
withdrawal already cleared, without a mutation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from pipeline.clickhouse_ddl import LEDGER_DENIES, table_models
from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer, Serde
from pipeline.topics import TopicSpec
from sink.clickhouse_sink import ClickHouseSink
from sink.denial_state import ledger_denies
from sink.dsr_storage import ERASED_KEYS, ERASED_KEYS_COLUMNS
from sink.erasure_guard import ErasureGuard
from sink.metrics import SinkMetrics
from sink.rows_insert import insert_rows
from sink.sink_options import SinkOptions
from sink.sink_process import apply_schema
from tests.support.metrics import counter
from tests.support.sink_store import run_until_caught_up, store
from tests.support.stored_records import NOW, record

CHAT = default_catalog().get("ChatConversationRecord")
LEDGER = default_catalog().get("ConsentLedgerRecord")
WITHDRAWN_AT = NOW + timedelta(minutes=30)
CONTACT = sorted(f"{f}:consent_withdrawn" for f in ("name", "email", "job_title", "phone", "company_name"))


@pytest.fixture
def options(kafka_admin: KafkaAdmin, group_id: str) -> Iterator[SinkOptions]:
    suffix = f".test-{uuid.uuid4().hex[:10]}"
    opts = SinkOptions(group_id=group_id, batch_size=500, batch_max_s=0.3).with_topic_suffix(suffix)
    specs = [*opts.record_topics, TopicSpec(opts.dlq_topic, "k", "dlq", 1)]
    kafka_admin.create_topics([TopicSpec(s.name, s.key, s.description, s.partitions) for s in specs])
    yield opts
    kafka_admin.delete_topics([s.name for s in specs])


class Feed:
    """Produces chat rows and ledger rows to the test's topics."""

    def __init__(self, bootstrap: str, options: SinkOptions) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.options = options

    def _send(self, full_name: str, value: dict[str, Any], serializer: AvroSerializer) -> None:
        topic = next(t.name for t in self.options.record_topics if full_name in t.value_schemas)
        self.producer.produce(topic, key=str(value["event_id"]), value=serializer(value))

    def chat(self, n: int, key: str, minutes: int = 0) -> None:
        value = record(CHAT, n, subject_keys=[key], started_at=NOW + timedelta(minutes=minutes), channel="WEB")
        self._send(CHAT.full_name, value, AvroSerializer(CHAT))

    def withdrawal(self, n: int, key: str) -> None:
        value = record(
            LEDGER, n, subject_keys=[key], kind="CONSENT", purpose="CONTACT_DETAILS", status="WITHDRAWN",
            event_time=WITHDRAWN_AT,
        )
        self._send(LEDGER.full_name, value, AvroSerializer(LEDGER))

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def drain(settings: Settings, client: Client, options: SinkOptions) -> ClickHouseSink:
    """Run a sink as `records worker sink` wires it (with the erasure guard, so the clearing
    and the guard's filter share each insert) until it has committed everything."""
    sink = ClickHouseSink(
        settings,
        client,
        serde=Serde(),
        metrics=SinkMetrics.create(CollectorRegistry()),
        options=options,
        insert_guard=ErasureGuard(table_models()),
    )
    run_until_caught_up(sink, [t.name for t in options.record_topics])
    return sink


def stored(client: Client) -> dict[str, tuple[Any, ...]]:
    rows = client.query(
        "SELECT event_id, name, email, job_title, browser, stripped FROM records.chat_conversations FINAL"
    ).result_rows
    return {row[0]: (*row[1:-1], sorted(row[-1])) for row in rows}


def mutations(client: Client) -> int:
    return int(client.command("SELECT count() FROM system.mutations WHERE table = 'chat_conversations'"))


@pytest.mark.parametrize("sole_writer", [True, False], ids=["in-memory", "per-batch-query"])
def test_both_arrival_orders_and_a_replay_end_the_same(
    sole_writer: bool, options: SinkOptions, kafka_settings: Settings, kafka_bootstrap: str, ch_client: Client
) -> None:
    apply_schema(ch_client)
    options = SinkOptions(**{**options.__dict__, "sole_writer": sole_writer})
    feed = Feed(kafka_bootstrap, options)
    feed.chat(1, "key-a")  # stored before its withdrawal arrives: cleared by the mutation
    feed.chat(2, "key-b", minutes=40)  # after key-b's withdrawal: a fresh consent, kept
    feed.flush()
    drain(kafka_settings, ch_client, options)
    feed.withdrawal(1, "key-a")
    feed.withdrawal(2, "key-b")
    feed.chat(3, "key-a", minutes=-10)  # same batch as the withdrawal
    feed.flush()
    drain(kafka_settings, ch_client, options)
    feed.chat(4, "key-a", minutes=30)  # after its withdrawal was stored (<= its time)
    feed.chat(5, "key-c")  # no withdrawal
    feed.flush()
    first = drain(kafka_settings, ch_client, options)
    after = stored(ch_client)

    # A replay of everything (a new group from the start: the rows come with their old
    # values) ends the same, and clearing twice marks nothing twice.
    drain(kafka_settings, ch_client, SinkOptions(**{**options.__dict__, "group_id": options.group_id + "-replay"}))
    assert stored(ch_client) == after
    for n in (1, 3, 4):
        assert after[f"event_id-{n}"] == (None, None, None, f"browser-{n}", CONTACT), n
    for n in (2, 5):
        assert after[f"event_id-{n}"] == (f"name-{n}", f"email-{n}", f"job_title-{n}", f"browser-{n}", []), n
    assert counter(first.metrics.consent_cleared, table="chat_conversations", need="contact_consent") == 1


def test_the_sole_writer_stores_a_row_after_its_withdrawal_cleared_without_a_mutation(
    options: SinkOptions, kafka_settings: Settings, kafka_bootstrap: str, ch_client: Client
) -> None:
    apply_schema(ch_client)
    feed = Feed(kafka_bootstrap, options)
    feed.chat(1, "key-a")
    feed.withdrawal(1, "key-a")
    feed.flush()
    drain(kafka_settings, ch_client, options)
    before = mutations(ch_client)

    feed.chat(2, "key-a", minutes=-5)  # its withdrawal is already stored
    feed.chat(3, "key-b")
    # erased after it was ingested: the guard's filter refuses it in the same insert
    insert_rows(ch_client, ERASED_KEYS, ERASED_KEYS_COLUMNS, [("key-e", datetime.now(UTC))])
    feed.chat(4, "key-e")
    feed.flush()
    drain(kafka_settings, ch_client, options)  # a new sink: its denials come from the store

    rows = stored(ch_client)
    assert rows["event_id-2"] == (None, None, None, "browser-2", CONTACT)
    assert rows["event_id-3"][:3] == ("name-3", "email-3", "job_title-3")
    assert "event_id-4" not in rows
    assert mutations(ch_client) == before


def test_ledger_denies_says_what_the_sql_of_ledger_denies_says(ch_client: Client) -> None:
    combos = [
        {"kind": kind, "purpose": purpose, "status": status, "cookie_functional": f, "cookie_analytics": a,
         "geolocation_permission": g}
        for kind in ("CONSENT", "COOKIE")
        for purpose in ("CONTACT_DETAILS", "COOKIES")
        for status in ("GIVEN", "WITHDRAWN")
        for f in (True, False)
        for a in (True, False)
        for g in (True, False)
    ]
    for combo in combos:
        columns = ", ".join(
            f"{'true' if v is True else 'false' if v is False else repr(v)} AS {k}" for k, v in combo.items()
        )
        sql_needs = tuple(
            need
            for need in sorted(LEDGER_DENIES)
            if ch_client.command(f"SELECT toUInt8({LEDGER_DENIES[need]}) FROM (SELECT {columns})") == 1
        )
        assert ledger_denies(combo) == sql_needs, combo


def test_a_replayed_withdrawal_that_was_stored_but_never_applied_is_applied(
    options: SinkOptions, kafka_settings: Settings, kafka_bootstrap: str, ch_client: Client
) -> None:
    """A crash after the ledger row was stored and before its rows were cleared (as a
    version that cleared after the insert could leave it): the replay clears them."""
    apply_schema(ch_client)
    models = {m.name: m for m in table_models()}
    withdrawal = record(
        LEDGER, 1, subject_keys=["key-a"], kind="CONSENT", purpose="CONTACT_DETAILS", status="WITHDRAWN",
        event_time=WITHDRAWN_AT,
    )
    store(ch_client, models["chat_conversations"], [record(CHAT, 1, subject_keys=["key-a"], channel="WEB")])
    store(ch_client, models["consent_ledger"], [withdrawal])
    feed = Feed(kafka_bootstrap, options)
    feed.withdrawal(1, "key-a")  # the replay: the same ledger row again
    feed.flush()
    drain(kafka_settings, ch_client, options)
    assert stored(ch_client)["event_id-1"] == (None, None, None, "browser-1", CONTACT)
