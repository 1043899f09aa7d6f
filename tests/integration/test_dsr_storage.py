"""The storage half of data-subject requests, in the sink, against the real local broker
and the real engine (chDB).

The streams stage's half may not exist yet, so each test plays its part: it signs a
request with a test DPO key (the sink trusts its public key through
`Settings.dpo_public_keys`, as RECORDS_DPO_PUBLIC_KEYS would), computes the subject keys
with a test pepper and produces the command to its own copy of cs.dsr.commands.v1 in an
envelope signed with a test command key (trusted through `Settings.command_public_keys`).
Rows are produced to the enriched topics as the streams stage would
(the *Record schemas). One sink runs per test in a thread, with the DSR handler and the
erasure guard wired in as `records worker sink` wires them; the assertions are on what
ClickHouse holds afterwards (physical rows, not only FINAL or the views), the receipts
and the export file.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline.avro_json import to_jsonable
from pipeline.config import Settings
from pipeline.dead_letter import parse_headers
from pipeline.dsr import DpoSigner, RequestType, TrustedKeys, build_request, identifiers_of, utcnow
from pipeline.dsr_contract import CommandEnvelope, CommandSigner, open_command, request_digest
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, Serde
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import TopicSpec
from records.wiring import Wiring
from sink.clickhouse_sink import ClickHouseSink
from sink.dsr_commands import DsrExecutor, DsrTopics
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions
from sink.sink_process import apply_schema
from tests.support.kafka_offsets import end_offsets, lagging_partitions
from tests.support.kafka_reads import read_topic
from tests.support.metrics import counter
from tests.support.stored_records import NOW, record

PEPPER = b"test pepper for data subject requests, 32+ bytes"
SUBJECT_TABLES = ("chat_conversations", "chat_messages", "calls", "call_recordings", "consent_ledger")
SCHEMAS = {
    "chat_conversations": "ChatConversationRecord",
    "chat_messages": "ChatMessageRecord",
    "calls": "CallRecord",
    "call_recordings": "CallRecordingRecord",
    "consent_ledger": "ConsentLedgerRecord",
}
ANNA = {"email": "Anna.Virtanen@Example.fi", "phone": "040 123 4567"}
BERT = {"email": "bert@example.fi", "person_number": "P-1001"}
CARL = {"phone": "+358 50 765 4321"}


@dataclass
class Dsr:
    """One test's pipeline: topics, a sink thread with the DSR handler, a DPO and a keyer."""

    settings: Settings
    options: SinkOptions
    dsr_topics: DsrTopics
    client: Client
    signer: DpoSigner
    command_signer: CommandSigner
    keyer: SubjectKeyer = field(default_factory=lambda: SubjectKeyer(PEPPER))
    metrics: SinkMetrics = field(default_factory=lambda: SinkMetrics.create(CollectorRegistry()))
    producer: Producer | None = None
    sink: ClickHouseSink | None = None
    thread: threading.Thread | None = None
    executor: DsrExecutor | None = None
    rows_sent: int = 0

    # ---- the streams stage's part --------------------------------------------------------

    def keys(self, identifiers: Mapping[str, str]) -> list[str]:
        kinds = {IdentifierKind(name): value for name, value in identifiers.items()}
        return self.keyer.keys(kinds)

    def rows(
        self,
        keys: list[str],
        *,
        first: int,
        at: datetime = NOW,
        tables: tuple[str, ...] = SUBJECT_TABLES,
        ingested: datetime = NOW,
    ) -> int:
        """One row per table for a subject, ids from `first`, stamped as ingested at
        `ingested` by the streams stage; returns how many were sent."""
        catalog = default_catalog()
        for table in tables:
            schema = catalog.get(SCHEMAS[table])
            time_field = {"chat_messages": "sent_at", "call_recordings": "recording_started_at"}.get(table)
            time_field = time_field or ("event_time" if table == "consent_ledger" else "started_at")
            extra: dict[str, Any] = {"status": "GIVEN"} if table == "consent_ledger" else {}
            value = record(schema, first, subject_keys=keys, **{time_field: at, "ingested_at": ingested}, **extra)
            value["event_id"] = f"{table}-{first}"
            self._produce(self._topic(schema.full_name), value["event_id"].encode(), AvroSerializer(schema)(value))
        self.rows_sent += len(tables)
        return len(tables)

    def command(
        self,
        request_type: RequestType,
        identifiers: Mapping[str, str],
        *,
        new_key: str | None = None,
        kafka_counts: Mapping[str, int] | None = None,
        signer: DpoSigner | None = None,
        send: bool = True,
        issued_at: datetime | None = None,
        verified_at: datetime | None = None,
        **extra: Any,
    ) -> tuple[str, bytes, list[tuple[str, bytes]]]:
        """Sign a request as the DPO and forward it as the streams stage would (unless not
        `send`); returns (request id, value, headers) so a test can deliver it again."""
        request = build_request(
            request_type,
            dict(identifiers),
            requested_by="dpo.test",
            reason="TICKET-6",
            now=issued_at or utcnow(),
            **extra,
        )
        signed = (signer or self.signer).sign(request)
        value = AvroSerializer(default_catalog().get("DataSubjectRequest"))(signed)
        envelope = CommandEnvelope(
            request_id=signed["request_id"],
            request_type=signed["request_type"],
            request_sha256=request_digest(value),
            subject_keys=tuple(self.keyer.keys(identifiers_of(signed))),
            verified_at=verified_at or utcnow(),
            kafka_counts=dict(kafka_counts or {"cs.subjects.v1": 1}),
            new_subject_key=new_key,
        )
        headers = self.command_signer.headers(envelope)
        if send:
            self.deliver(signed["request_id"], value, headers)
        return signed["request_id"], value, headers

    def deliver(self, request_id: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._produce(self.dsr_topics.commands, request_id.encode(), value, headers)

    def _produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        if self.producer is None:
            self.producer = Producer({"bootstrap.servers": self.settings.kafka.bootstrap, "linger.ms": 5})
        self.producer.produce(topic, key=key, value=value, headers=headers)

    def _topic(self, full_name: str) -> str:
        return next(t.name for t in self.options.record_topics if full_name in t.value_schemas)

    # ---- the sink --------------------------------------------------------------------------

    def start(self) -> None:
        wiring = Wiring(self.settings)  # the keys the settings name, read as `records worker sink` does
        self.executor = DsrExecutor(
            self.settings,
            serde=Serde(),
            dsr_topics=self.dsr_topics,
            trusted=wiring.trusted_dpo_keys(),
            command_keys=wiring.trusted_command_keys(),
        )
        self.sink = ClickHouseSink(
            self.settings,
            self.client,
            serde=Serde(),
            metrics=self.metrics,
            options=self.options,
            commands=[self.executor.handler()],
            insert_guard=self.executor.guard,
        )
        self.thread = threading.Thread(target=self.sink.run, name="sink")
        self.thread.start()

    def settle(self, timeout: float = 60.0) -> None:
        """Flush what the test produced and wait until the sink committed every topic to its
        end (receipts the sink produced itself included)."""
        if self.producer is not None:
            assert self.producer.flush(30) == 0
        if self.sink is None:
            self.start()
        assert self.thread is not None
        bootstrap = self.settings.kafka.bootstrap
        names = [t.name for t in self.options.record_topics] + [self.dsr_topics.commands]
        deadline = time.monotonic() + timeout
        while True:
            wanted = end_offsets(bootstrap, names)
            lagging = lagging_partitions(bootstrap, self.options.group_id, wanted)
            if not lagging and wanted == end_offsets(bootstrap, names):
                return
            assert self.thread.is_alive(), "the sink stopped"
            assert time.monotonic() < deadline, f"not caught up: {lagging}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.sink is not None and self.thread is not None:
            self.sink.stop()
            self.thread.join(30)
        if self.executor is not None:
            self.executor.close()

    # ---- what the store holds ----------------------------------------------------------------

    def count(self, table: str, keys: list[str], *, final: bool = False) -> int:
        final_ = " FINAL" if final else ""
        return int(
            self.client.command(f"SELECT count() FROM records.{table}{final_} WHERE hasAny(subject_keys, {keys!r})")
        )

    def counts(self, keys: list[str]) -> dict[str, int]:
        return {table: self.count(table, keys) for table in SUBJECT_TABLES}

    def ids(self, keys: list[str]) -> list[str]:
        """Ids of every stored row version holding one of `keys`, all tables."""
        return sorted(
            str(row[0])
            for table in SUBJECT_TABLES
            for row in self.client.query(
                f"SELECT event_id FROM records.{table} WHERE hasAny(subject_keys, {{keys:Array(String)}})",
                parameters={"keys": keys},
            ).result_rows
        )

    def receipt(self, request_id: str) -> dict[str, Any]:
        """The stored receipt (the sink consumed it back from the receipts topic too)."""
        result = self.client.query(f"SELECT * FROM records.dsr_receipts FINAL WHERE request_id = '{request_id}'")
        assert len(result.result_rows) == 1, result.result_rows
        return dict(zip(result.column_names, result.result_rows[0], strict=True))

    def receipts_on_topic(self, request_id: str) -> list[dict[str, Any]]:
        """Every receipt of the request on the receipts topic, oldest first."""
        consumer = Consumer({"bootstrap.servers": self.settings.kafka.bootstrap, "group.id": f"r-{uuid.uuid4().hex}"})
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.dsr_topics.receipts, 0), timeout=10)
            consumer.assign([TopicPartition(self.dsr_topics.receipts, 0, OFFSET_BEGINNING)])
            messages: list[Any] = []
            deadline = time.monotonic() + 20
            while (not messages or messages[-1].offset() < high - 1) and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    messages.append(message)
        finally:
            consumer.close()
        decode = AvroDeserializer()
        return [decode(m.value()).value for m in messages if m.key() == request_id.encode() and m.value()]

    def mutations(self) -> dict[str, int]:
        rows = self.client.query(
            "SELECT table, count() FROM system.mutations WHERE database = 'records' GROUP BY table"
        ).result_rows
        return {str(t): int(n) for t, n in rows}


@pytest.fixture
def dsr(
    kafka_admin: KafkaAdmin, kafka_settings: Settings, ch_client: Client, group_id: str, tmp_path: Path
) -> Iterator[Dsr]:
    suffix = f".dsr-{uuid.uuid4().hex[:10]}"
    options = SinkOptions(group_id=group_id, batch_size=500, batch_max_s=0.3).with_topic_suffix(suffix)
    dsr_topics = DsrTopics().with_suffix(suffix)
    specs = [*options.record_topics, TopicSpec(options.dlq_topic, "k", "dlq", 1)]
    specs.append(TopicSpec(dsr_topics.commands, "request id", "commands", 1))
    kafka_admin.create_topics([TopicSpec(s.name, s.key, s.description, s.partitions) for s in specs])
    private, command_private = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public_pem, command_pem = tmp_path / "dpo.pub.pem", tmp_path / "command.pub.pem"
    for key, path in ((private, public_pem), (command_private, command_pem)):
        path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    settings = dataclasses.replace(
        kafka_settings, data_dir=tmp_path / "data", dpo_public_keys=(public_pem,), command_public_keys=(command_pem,)
    )
    apply_schema(ch_client)
    run = Dsr(settings, options, dsr_topics, ch_client, DpoSigner(private), CommandSigner(command_private))
    try:
        yield run
    finally:
        run.stop()
        kafka_admin.delete_topics([s.name for s in specs])


# ---- erasure --------------------------------------------------------------------------------


def test_erasure_deletes_the_subject_from_every_table_with_a_receipt(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(anna[1:], first=2, tables=("calls", "call_recordings"))  # found by the phone alone
    dsr.rows(bert, first=3)
    dsr.client.command(
        "INSERT INTO records.subject_restrictions VALUES "
        f"('{anna[0]}', 'RESTRICTION', true, 'earlier', now64(3)), "
        f"('{bert[0]}', 'OBJECTION', true, 'earlier', now64(3))"
    )
    dsr.settle()
    assert dsr.counts(anna) == {"chat_conversations": 1, "chat_messages": 1, "calls": 2, "call_recordings": 2,
                                "consent_ledger": 1}  # fmt: skip

    request_id, _, _ = dsr.command(RequestType.ERASURE, ANNA, kafka_counts={"cs.subjects.v1": 2})
    dsr.settle()

    # Physically gone: no stored version in any active part, FINAL or not.
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)
    assert dsr.client.command(f"SELECT count() FROM records.subject_restrictions WHERE subject_key = '{anna[0]}'") == 0
    assert dsr.counts(bert) == dict.fromkeys(SUBJECT_TABLES, 1)
    assert dsr.client.command(f"SELECT count() FROM records.subject_restrictions WHERE subject_key = '{bert[0]}'") == 1
    assert dsr.client.command("SELECT countIf(NOT is_done) FROM system.mutations WHERE database = 'records'") == 0
    ledger = dsr.client.query("SELECT subject_key FROM records.erased_keys ORDER BY subject_key")
    assert ledger.result_rows == sorted((key,) for key in anna)  # no request id links the keys

    stored = dsr.receipt(request_id)
    assert (stored["request_type"], stored["status"]) == ("ERASURE", "COMPLETED")
    assert stored["store_counts"] == {
        "records.chat_conversations": 1,
        "records.chat_messages": 1,
        "records.calls": 2,
        "records.call_recordings": 2,
        "records.consent_ledger": 1,
        "records.contact_forms": 0,
        "records.subject_restrictions": 1,
        "exports": 0,
        "cs.subjects.v1": 2,
    }
    assert stored["completed_at"] >= stored["requested_at"]
    on_topic = dsr.receipts_on_topic(request_id)
    assert len(on_topic) == 1
    assert to_jsonable(on_topic[0])["store_counts"] == stored["store_counts"]
    for secret in (*ANNA.values(), *anna):
        assert secret.lower() not in json.dumps(to_jsonable(on_topic[0])).lower()
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="COMPLETED") == 1
    assert _histogram_count(dsr.metrics, "ERASURE") == 1


def test_erasures_of_one_batch_share_one_mutation_per_table(dsr: Dsr) -> None:
    anna, bert, carl = dsr.keys(ANNA), dsr.keys(BERT), dsr.keys(CARL)
    dsr.rows(anna, first=1, tables=("chat_conversations", "calls"))
    dsr.rows(bert, first=2, tables=("calls", "consent_ledger"))
    dsr.rows(carl, first=3)
    dsr.settle()
    before = dsr.mutations()

    first, _, _ = dsr.command(RequestType.ERASURE, ANNA)
    second, _, _ = dsr.command(RequestType.ERASURE, BERT)
    dsr.settle()

    added = {table: dsr.mutations().get(table, 0) - before.get(table, 0) for table in SUBJECT_TABLES}
    # One mutation per table holding a row of either subject; none where neither had rows.
    assert added == {"chat_conversations": 1, "chat_messages": 0, "calls": 1, "call_recordings": 0,
                     "consent_ledger": 1}  # fmt: skip
    assert dsr.counts(anna) == dsr.counts(bert) == dict.fromkeys(SUBJECT_TABLES, 0)
    assert dsr.counts(carl) == dict.fromkeys(SUBJECT_TABLES, 1)
    assert dsr.receipt(first)["store_counts"]["records.calls"] == 1
    assert dsr.receipt(second)["store_counts"]["records.consent_ledger"] == 1
    assert dsr.receipt(second)["store_counts"]["records.chat_conversations"] == 0


def test_replayed_rows_of_an_erased_subject_do_not_come_back_but_new_ones_stay(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    # Dated after the erasure time but ingested before it: erased like the rest (issue 11:
    # a source's clock or typo must not keep a row from an erasure).
    dsr.rows(anna[:1], first=5, at=utcnow() + timedelta(minutes=1), tables=("chat_messages",))
    dsr.settle()
    dsr.command(RequestType.ERASURE, ANNA)
    dsr.settle()
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)

    # A replay (same rows, and older ones by the phone only) in the same batch as the
    # subject's first new conversation after the erasure and another subject's rows.
    dsr.rows(anna, first=1)
    dsr.rows(anna[1:], first=2, at=NOW - timedelta(days=3))
    dsr.rows(anna[:1], first=5, at=utcnow() + timedelta(minutes=1), tables=("chat_messages",))
    # New contact: ingested by the streams stage after the erasure (it let it through).
    later = utcnow() + timedelta(seconds=1)
    dsr.rows(anna[:1], first=3, at=later, ingested=later, tables=("chat_conversations",))
    dsr.rows(bert, first=4)
    dsr.settle()

    assert dsr.ids(anna) == ["chat_conversations-3"]  # only the new one
    assert dsr.counts(bert) == dict.fromkeys(SUBJECT_TABLES, 1)
    # Refused rows were consumed like any other (not dead-lettered, not retried forever).
    assert sum(counter(dsr.metrics.rows_inserted, table=t) for t in SUBJECT_TABLES) == dsr.rows_sent


def test_a_redelivered_command_is_not_executed_twice(dsr: Dsr) -> None:
    anna = dsr.keys(ANNA)
    dsr.rows(anna, first=1)
    dsr.settle()
    request_id, value, headers = dsr.command(RequestType.ERASURE, ANNA)
    dsr.settle()
    first = dsr.receipt(request_id)
    erased_at = dsr.client.command("SELECT max(erased_at) FROM records.erased_keys")
    mutations = dsr.mutations()

    dsr.deliver(request_id, value, headers)  # e.g. the streams stage forwarded it again
    dsr.settle()

    assert dsr.receipt(request_id) == first  # the counts of the real execution, not zeros
    assert dsr.client.command("SELECT max(erased_at) FROM records.erased_keys") == erased_at
    assert dsr.mutations() == mutations
    on_topic = dsr.receipts_on_topic(request_id)
    assert len(on_topic) == 2 and on_topic[0] == on_topic[1]  # produced again, unchanged
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="COMPLETED") == 1
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="REDELIVERED") == 1


# ---- access -------------------------------------------------------------------------------


def test_access_exports_every_row_of_the_subject_with_the_notice(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(anna[:1], first=2, tables=("chat_conversations", "chat_messages"))
    dsr.rows(bert, first=3)
    dsr.settle()

    request_id, _, _ = dsr.command(RequestType.ACCESS, {"email": ANNA["email"].upper()})
    dsr.settle()

    stored = dsr.receipt(request_id)
    path = dsr.settings.data_dir / "exports" / f"{request_id}.json"
    assert stored["status"] == "COMPLETED"
    assert stored["detail"] == f"export written to {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    export = json.loads(path.read_text())
    expected = {
        "chat_conversation": 2,
        "chat_message": 2,
        "call": 1,
        "call_recording": 1,
        "consent_ledger": 1,
        "contact_form": 0,
    }
    assert {name: part["row_count"] for name, part in export["records"].items()} == expected
    assert {k: v for k, v in stored["store_counts"].items() if k.startswith("records.")} == {
        "records.chat_conversations": 2,
        "records.chat_messages": 2,
        "records.calls": 1,
        "records.call_recordings": 1,
        "records.consent_ledger": 1,
        "records.contact_forms": 0,
    }
    assert export["purposes"] and export["legal_bases"] and export["recipients"] and export["transfers"]
    chats = export["records"]["chat_conversation"]
    assert chats["retention_days"] == 180
    assert chats["fields"]["email"] == {
        "category": "contact_details",
        "legal_basis": "consent",
        "needs": "contact_consent",
        "channels": ["WEB"],
    }
    assert {row["event_id"] for row in chats["rows"]} == {"chat_conversations-1", "chat_conversations-2"}
    assert chats["rows"][0]["started_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert [row["event_id"] for row in export["consent_history"]] == ["consent_ledger-1"]
    assert "chat_conversations-3" not in path.read_text()  # the other subject's rows are not there


# ---- rectification ----------------------------------------------------------------------------


def test_rectification_corrects_every_row_and_the_corrected_email_finds_them(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(anna[1:], first=2, tables=("chat_conversations",))
    dsr.rows(bert, first=3, tables=("chat_conversations",))
    dsr.settle()
    # chat_conversations-2 stored no email (stripped: no contact consent)
    dsr.client.command(
        "ALTER TABLE records.chat_conversations UPDATE email = NULL WHERE event_id = 'chat_conversations-2' "
        "SETTINGS mutations_sync = 2"
    )
    corrected = "Anna.Korhonen@Example.FI"
    new_key = dsr.keyer.key(IdentifierKind.EMAIL, corrected)
    assert new_key is not None

    request_id, _, _ = dsr.command(
        RequestType.RECTIFICATION, ANNA, new_key=new_key, rectify_field="email", rectify_value=corrected
    )
    dsr.settle()

    rows = dsr.client.query(
        "SELECT event_id, email, has(subject_keys, {k:String}) FROM records.chat_conversations ORDER BY event_id",
        parameters={"k": new_key},
    ).result_rows
    assert rows == [
        ("chat_conversations-1", "anna.korhonen@example.fi", True),
        ("chat_conversations-2", None, False),  # no email stored: none is added
        ("chat_conversations-3", "email-3", False),
    ]
    stored = dsr.receipt(request_id)
    assert stored["status"] == "COMPLETED"
    assert stored["store_counts"]["records.chat_conversations"] == 1
    assert "anna" not in (stored["detail"] or "").lower()

    # A later request by the corrected address alone finds the subject's rows.
    access_id, _, _ = dsr.command(RequestType.ACCESS, {"email": corrected})
    dsr.settle()
    assert dsr.receipt(access_id)["store_counts"]["records.chat_conversations"] == 1


# ---- restriction and objection ----------------------------------------------------------------

WITHIN_THEIR_CALLS = (
    "INSERT INTO records.recording_checks (recording_id, verdict, checked_at) "
    "SELECT recording_id, 'within', now64(3) FROM records.call_recordings"
)


def test_restriction_hides_the_subject_from_analysts_and_lifting_shows_it_again(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(bert, first=2)
    dsr.settle()
    # analysts see a recording once the sink judged it within its call (sink/recording_bounds.py)
    dsr.client.command(WITHIN_THEIR_CALLS)

    def visible() -> dict[str, int]:
        return {t: int(dsr.client.command(f"SELECT count() FROM analyst.{t}")) for t in SUBJECT_TABLES}

    assert visible() == dict.fromkeys(SUBJECT_TABLES, 2)
    restricted, _, _ = dsr.command(RequestType.RESTRICTION, {"phone": "+358401234567"})
    dsr.settle()
    assert visible() == dict.fromkeys(SUBJECT_TABLES, 1)
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 1)  # kept, only hidden
    objected, _, _ = dsr.command(RequestType.OBJECTION, BERT)
    dsr.settle()
    assert visible() == dict.fromkeys(SUBJECT_TABLES, 0)

    lifted, _, _ = dsr.command(RequestType.RESTRICTION_LIFTED, ANNA)
    dsr.settle()
    assert visible() == dict.fromkeys(SUBJECT_TABLES, 1)
    active = dsr.client.query(
        "SELECT subject_key, kind FROM records.subject_restrictions FINAL WHERE active ORDER BY subject_key, kind"
    ).result_rows
    assert active == sorted((key, "OBJECTION") for key in bert)
    assert dsr.receipt(restricted)["store_counts"]["records.subject_restrictions"] == 1
    assert dsr.receipt(objected)["store_counts"]["records.calls"] == 1
    assert dsr.receipt(lifted)["store_counts"]["records.subject_restrictions"] == 4  # 2 keys x 2 kinds


# ---- consent withdrawal, verification, malformed commands -----------------------------------------


def test_withdrawal_rejection_and_malformed_commands(dsr: Dsr) -> None:
    anna = dsr.keys(ANNA)
    chat = default_catalog().get("ChatConversationRecord")
    ledger = default_catalog().get("ConsentLedgerRecord")
    value = record(chat, 1, subject_keys=anna)
    dsr._produce(dsr._topic(chat.full_name), b"c1", AvroSerializer(chat)(value))
    withdrawal = record(
        ledger, 2, subject_keys=anna, kind="CONSENT", purpose="CONTACT_DETAILS", status="WITHDRAWN",
        event_time=NOW + timedelta(minutes=1),
    )  # fmt: skip
    dsr._produce(dsr._topic(ledger.full_name), b"l2", AvroSerializer(ledger)(withdrawal))
    dsr.settle()

    withdrawn, _, _ = dsr.command(RequestType.CONSENT_WITHDRAWAL, ANNA, consent_purpose="CONTACT_DETAILS")
    forged, _, _ = dsr.command(RequestType.ERASURE, ANNA, signer=DpoSigner(Ed25519PrivateKey.generate()))
    dsr.deliver(str(uuid.uuid4()), b"not a request", [])
    headless, value, _ = dsr.command(RequestType.ACCESS, ANNA, send=False)
    dsr.deliver(headless, value, [])  # no signed envelope: never executed, no receipt
    dsr.settle()

    stored = dsr.receipt(withdrawn)
    assert (stored["status"], stored["store_counts"]["records.chat_conversations"]) == ("COMPLETED", 1)
    rejected = dsr.receipt(forged)
    assert (rejected["status"], rejected["detail"]) == ("REJECTED", "rejected by the sink: unknown signing key")
    assert dsr.counts(anna)["chat_conversations"] == 1  # nothing erased
    assert dsr.client.command(f"SELECT count() FROM records.dsr_receipts WHERE request_id = '{headless}'") == 0
    assert counter(dsr.metrics.dsr_commands_refused, reason="UNSIGNED") == 1
    letters = read_topic(dsr.settings.kafka.bootstrap, dsr.options.dlq_topic, 2)
    assert [m.value() for m in letters] == [b"not a request", value]
    assert {parse_headers(m.headers())["dlq.stage"] for m in letters} == {"sink.dsr"}
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="REJECTED") == 1


def _histogram_count(metrics: SinkMetrics, kind: str) -> float:
    for family in metrics.dsr_latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("kind") == kind:
                return sample.value
    return 0.0


# ---- the signed command envelope (issue 11, finding 2) -------------------------------------


def _old_style_headers(keys: list[str], verified_at: str) -> list[tuple[str, bytes]]:
    """The unsigned headers the sink used to take subject keys and verification time from."""
    return [("dsr.subject_keys", ",".join(keys).encode()), ("dsr.verified_at", verified_at.encode())]


def _refusals(dsr: Dsr, expected: int) -> list[str]:
    """The dlq.error of the sink's dead letters (they must hold no identifier or key)."""
    letters = read_topic(dsr.settings.kafka.bootstrap, dsr.options.dlq_topic, expected)
    errors = [parse_headers(m.headers())["dlq.error"] for m in letters]
    for error in errors:
        assert "@" not in error and not any(key in error for key in (*dsr.keys(ANNA), *dsr.keys(BERT)))
    return errors


def _executed(dsr: Dsr, request_id: str) -> int:
    """Rows the sink recorded for the request in records.dsr_executed plus records.dsr_receipts."""
    where = f"WHERE request_id = '{request_id}'"
    executed = dsr.client.command(f"SELECT count() FROM records.dsr_executed {where}")
    return int(executed) + int(dsr.client.command(f"SELECT count() FROM records.dsr_receipts {where}"))


def test_an_old_erasure_for_anna_resent_with_bert_s_key_erases_no_one(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(bert, first=2)
    dsr.settle()
    # A genuine erasure of Anna, DPO-signed and forwarded 400 days ago, captured off the topic.
    old = utcnow() - timedelta(days=400)
    request_id, value, captured = dsr.command(RequestType.ERASURE, ANNA, issued_at=old, verified_at=old, send=False)

    dsr.deliver(request_id, value, _old_style_headers(bert, utcnow().isoformat()))  # Bert's key in a header
    dsr.deliver(request_id, value, [*_old_style_headers(bert, utcnow().isoformat()), *captured])
    dsr.deliver(request_id, value, captured)  # the captured command as it was
    dsr.settle()

    assert dsr.counts(bert) == dict.fromkeys(SUBJECT_TABLES, 1)
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 1)
    assert dsr.client.command("SELECT count() FROM records.erased_keys") == 0
    assert _executed(dsr, request_id) == 0
    errors = _refusals(dsr, 3)
    assert errors == [
        "the command carries no signed envelope",
        "the command is older than the sink accepts",
        "the command is older than the sink accepts",
    ]
    assert counter(dsr.metrics.dsr_commands_refused, reason="UNSIGNED") == 1
    assert counter(dsr.metrics.dsr_commands_refused, reason="STALE") == 2


def test_a_verified_at_of_1970_cannot_turn_an_erasure_into_a_no_op(dsr: Dsr) -> None:
    anna, bert = dsr.keys(ANNA), dsr.keys(BERT)
    dsr.rows(anna, first=1)
    dsr.rows(bert, first=2)
    dsr.settle()
    request_id, value, headers = dsr.command(RequestType.ERASURE, ANNA, send=False)
    # An unsigned 1970 beside the envelope is not read; one written into the envelope breaks its signature.
    dsr.deliver(request_id, value, [*_old_style_headers(anna, "1970-01-01T00:00:00+00:00"), *headers])
    bert_id, bert_value, bert_headers = dsr.command(RequestType.ERASURE, BERT, send=False)
    body = json.loads(dict(bert_headers)["dsr.command"])
    forged = json.dumps({**body, "verified_at": 0}, sort_keys=True, separators=(",", ":")).encode()
    dsr.deliver(bert_id, bert_value, [("dsr.command", forged), bert_headers[1]])
    dsr.settle()

    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)
    erased_at = dsr.client.command(
        "SELECT toUnixTimestamp(min(erased_at)) FROM records.erased_keys "
        "WHERE has({keys:Array(String)}, subject_key)",
        parameters={"keys": list(anna)},
    )
    assert int(erased_at) > time.time() - 3600  # the signed verification time, not 1970
    stored = dsr.receipt(request_id)
    assert stored["status"] == "COMPLETED" and stored["store_counts"]["records.calls"] == 1
    # Stored once (from the receipts topic), not also directly by the sink.
    versions = f"SELECT count() FROM records.dsr_receipts WHERE request_id = '{request_id}'"
    assert dsr.client.command(versions) == 1
    assert dsr.counts(bert) == dict.fromkeys(SUBJECT_TABLES, 1)  # the tampered command did not run
    assert _refusals(dsr, 1) == ["the command's signature does not verify"]
    assert counter(dsr.metrics.dsr_commands_refused, reason="BAD_SIGNATURE") == 1


def test_a_forged_completed_receipt_on_the_receipts_topic_does_not_stop_a_real_erasure(dsr: Dsr) -> None:
    anna = dsr.keys(ANNA)
    dsr.rows(anna, first=1)
    request_id, value, headers = dsr.command(RequestType.ERASURE, ANNA, send=False)
    forged = {
        "request_id": request_id,
        "request_type": "ERASURE",
        "status": "COMPLETED",
        "requested_at": utcnow(),
        "completed_at": utcnow(),
        "store_counts": {},
        "detail": "forged",
        "schema_version": 1,
    }
    dsr._produce(dsr.dsr_topics.receipts, request_id.encode(), AvroSerializer("DsrReceipt")(forged))
    dsr.settle()
    assert dsr.receipt(request_id)["detail"] == "forged"  # the sink stored what the topic said

    dsr.deliver(request_id, value, headers)
    dsr.settle()

    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)
    stored = dsr.receipt(request_id)
    assert (stored["status"], stored["store_counts"]["records.chat_messages"]) == ("COMPLETED", 1)
    assert stored["detail"] != "forged"
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="COMPLETED") == 1
    assert counter(dsr.metrics.dsr_requests, kind="ERASURE", status="REDELIVERED") == 0


def test_a_command_without_a_valid_envelope_signature_is_dead_lettered_and_never_runs(dsr: Dsr) -> None:
    anna = dsr.keys(ANNA)
    dsr.rows(anna, first=1)
    dsr.settle()
    request_id, value, headers = dsr.command(RequestType.ERASURE, ANNA, send=False)
    trusted = TrustedKeys.of(dsr.command_signer.private_key.public_key())
    envelope = open_command(headers, value, trusted, now=utcnow(), max_age=timedelta(hours=1))
    body, signature = (v for _, v in headers)
    flipped = bytearray(bytes.fromhex(signature.decode()))
    flipped[0] ^= 1
    bad = {
        "UNSIGNED": _old_style_headers(anna, utcnow().isoformat()),  # what the streams stage used to send
        "MISSING_SIGNATURE": [("dsr.command", body)],
        "BAD_SIGNATURE": [("dsr.command", body), ("dsr.command.signature", bytes(flipped).hex().encode())],
        "UNKNOWN_KEY": CommandSigner(Ed25519PrivateKey.generate()).headers(envelope),
    }
    for forged in bad.values():
        dsr.deliver(request_id, value, forged)
    dsr.settle()

    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 1)
    assert _executed(dsr, request_id) == 0
    assert _refusals(dsr, 4) == [
        "the command carries no signed envelope",
        "the command carries no signed envelope",
        "the command's signature does not verify",
        "the command is signed with a key the sink does not trust",
    ]
    assert counter(dsr.metrics.dsr_commands_refused, reason="UNSIGNED") == 2
    assert counter(dsr.metrics.dsr_commands_refused, reason="BAD_SIGNATURE") == 1
    assert counter(dsr.metrics.dsr_commands_refused, reason="UNKNOWN_KEY") == 1

    # The genuine command still runs; a different signed command for the same request does not.
    dsr.deliver(request_id, value, headers)
    dsr.settle()
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)
    first = dsr.receipt(request_id)
    later = dataclasses.replace(envelope, verified_at=envelope.verified_at + timedelta(seconds=1))
    dsr.deliver(request_id, value, dsr.command_signer.headers(later))
    dsr.settle()
    assert _refusals(dsr, 5)[-1] == "a different command for this request was executed already"
    assert counter(dsr.metrics.dsr_commands_refused, reason="REPLAYED") == 1
    assert dsr.receipt(request_id) == first


def test_a_batch_holding_an_erasure_is_written_without_waiting_for_more_rows(dsr: Dsr) -> None:
    # Batches of rows only would wait an hour here: the batch is written because it holds
    # a command (before, an erasure waited up to batch_max_s for rows that might follow).
    dsr.options = dataclasses.replace(dsr.options, batch_max_s=3600.0, batch_size=50_000)
    anna = dsr.keys(ANNA)
    dsr.rows(anna, first=1)
    request_id, _, _ = dsr.command(RequestType.ERASURE, ANNA)
    assert dsr.producer is not None and dsr.producer.flush(30) == 0
    dsr.start()

    deadline = time.monotonic() + 90
    receipts = dsr.receipts_on_topic(request_id)
    while not receipts and time.monotonic() < deadline:
        time.sleep(0.5)
        receipts = dsr.receipts_on_topic(request_id)

    assert [r["status"] for r in receipts] == ["COMPLETED"]
    assert receipts[0]["store_counts"]["records.calls"] == 1
    assert dsr.counts(anna) == dict.fromkeys(SUBJECT_TABLES, 0)
