"""A bad-input corpus through the real workers (`records worker streams` and `records
worker sink` as processes, the real broker and chDB): every item ends with its documented
outcome (README, "What happens to bad input"), accounted for by the reconciliation, and
neither worker exits.

Timestamps before 2000 or far in the future are not in this corpus: dead-lettering
implausible event times is another change (the erasure branch); today such an event is
stored, or counted as expired on insert when its time is past retention.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline import topics
from pipeline.chdb_owner import read_owner
from pipeline.dsr import RequestType, build_request
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import AvroSerializer
from records.reconcile_read import Sources
from tests.support.endpoint import owner_client
from tests.support.fault_steps import start_workers, wait_caught_up
from tests.support.pipeline_harness import (
    Pipeline,
    isolated_pipeline,
    reconcile_since,
    simulated,
    wait_until,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def pipeline(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[Pipeline]:
    with isolated_pipeline(kafka_bootstrap, kafka_admin, tmp_path) as line:
        yield line


def _base(schema: str, **wanted: Any) -> dict[str, Any]:
    """A valid recent record of `schema` from the simulator, matching `wanted` values."""
    for event in simulated(400, seed=7, span_days=0.5):
        record = event.record
        if (
            event.schema_name == f"cs.records.{schema}"
            and record is not None
            and all(record.get(k) == v if v is not True else record.get(k) for k, v in wanted.items())
        ):
            return dict(record, event_id=uuid.uuid4())
    raise AssertionError(f"no simulated {schema} with {wanted}")


class Corpus:
    """Raw messages with keys under one tag, remembered by label with their offsets."""

    def __init__(self, bootstrap: str, tag: str) -> None:
        self.tag = tag
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.at: dict[str, tuple[str, int, int]] = {}
        self.errors: dict[str, str] = {}

    def send(self, label: str, topic: str, value: bytes) -> None:
        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                self.errors[label] = err.name()
            else:
                self.at[label] = (msg.topic(), msg.partition(), msg.offset())

        key = f"{self.tag}-{label}".encode()
        try:
            self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
        except KafkaException as exc:  # refused before it left the producer
            self.errors[label] = exc.args[0].name()
        self.producer.flush(30)

    def avro(self, label: str, topic: str, schema: str, record: dict[str, Any]) -> bytes:
        value = AvroSerializer(schema)(record)
        self.send(label, topic, value)
        return value


def _chat(tag: str, label: str, **overrides: Any) -> dict[str, Any]:
    record = _base("ChatConversation", channel="WEB", contact_consent=True, email=True)
    record.update(conversation_id=f"{tag}-{label}", **overrides)
    return record


def test_every_bad_input_has_its_documented_outcome_and_no_worker_exits(pipeline: Pipeline) -> None:
    workers = start_workers(pipeline)
    sink, streams, since = workers.sink, workers.streams, workers.since
    tag = f"bad-{uuid.uuid4().hex[:8]}"
    corpus = Corpus(pipeline.bootstrap, tag)
    chat_topic, call_topic, consent_topic = topics.CHAT.name, topics.CALL.name, topics.CONSENT.name

    good = corpus.avro("good", chat_topic, "ChatConversation", _chat(tag, "good"))
    body = good[10:]
    corpus.send("truncated", chat_topic, good[: len(good) // 2])
    corpus.send("wrong-magic", chat_topic, b"\x01\x02" + good[2:])
    corpus.send("unknown-fingerprint", chat_topic, b"\xc3\x01" + b"\xee" * 8 + body)
    corpus.send("unknown-schema-id", chat_topic, b"\x00" + struct.pack(">I", 987654) + body)
    call = _base("CallDetailRecord", direction="INBOUND")
    call.update(call_id=f"{tag}-call")
    call_bytes = AvroSerializer("CallDetailRecord")(call)
    misplaced = AvroSerializer("CallDetailRecord")(dict(call, event_id=uuid.uuid4()))
    corpus.send("wrong-record-type", chat_topic, misplaced)  # a call on the chat topic
    corpus.send("wrong-field-types", chat_topic, good[:10] + call_bytes[10:])  # a call's body as a chat
    marker = "Zq" * 8
    utf8 = AvroSerializer("ChatConversation")(_chat(tag, "utf8", name=marker))
    corpus.send("invalid-utf8", chat_topic, utf8.replace(marker.encode(), b"\xff\xfe" + marker.encode()[2:]))
    corpus.avro(
        "invalid-contact", chat_topic, "ChatConversation", _chat(tag, "contact", phone="12", email="not-an-email")
    )
    duplicate = _chat(tag, "dup")
    corpus.avro("duplicate-1", chat_topic, "ChatConversation", duplicate)
    corpus.avro("duplicate-2", chat_topic, "ChatConversation", duplicate)
    newer = dict(call, event_id=uuid.uuid4(), event_time=call["event_time"] + timedelta(minutes=5))
    corpus.avro("out-of-order-newer", call_topic, "CallDetailRecord", newer)
    corpus.avro("out-of-order-older", call_topic, "CallDetailRecord", call)
    recording = _base("CallRecording")
    recording.update(recording_id=f"{tag}-rec", call_id=f"{tag}-no-such-call")
    corpus.avro("recording-unknown-call", call_topic, "CallRecording", recording)
    consented = _chat(tag, "consent-after")
    corpus.avro("consent-after-chat:chat", chat_topic, "ChatConversation", consented)
    erased = _chat(tag, "erased", email=f"{tag}-erase@example.org")
    corpus.avro("erased-chat", chat_topic, "ChatConversation", erased)
    corpus.send("10MB", chat_topic, os.urandom(10 * 1024 * 1024))
    assert corpus.errors == {"10MB": "MSG_SIZE_TOO_LARGE"}  # refused at the door: never in the pipeline

    def stored(
        table: str, row_id: str, columns: str = "source_event_id, email, phone, stripped"
    ) -> list[tuple[Any, ...]]:
        owner = read_owner(pipeline.chdb_path)
        assert owner is not None
        client = owner_client(owner, pipeline.chdb_path)
        return list(
            client.query(
                f"SELECT {columns} FROM records.{table} FINAL WHERE event_id = %(id)s",
                parameters={"id": row_id},
            ).result_rows
        )

    wait_until(lambda: bool(stored("chat_conversations", f"{tag}-consent-after")), 90, "chat stored")
    wait_until(lambda: bool(stored("chat_conversations", f"{tag}-erased")), 90, "chat to erase stored")
    withdrawal = _base("ConsentChanged", purpose="CONTACT_DETAILS")
    withdrawal.update(
        purpose="CONTACT_DETAILS",
        status="WITHDRAWN",
        event_time=NOW + timedelta(seconds=1),
        subject={**{k: None for k in withdrawal["subject"]}, "email": consented["email"]},
    )
    corpus.avro("consent-after-chat:withdrawal", consent_topic, "ConsentChanged", withdrawal)

    requests = []
    for label, email in (
        ("no-rows", f"{tag}-nobody@example.org"),
        ("twice-1", erased["email"]),
        ("twice-2", erased["email"]),
    ):
        request = build_request(
            RequestType.ERASURE, {"email": email}, requested_by="dpo", reason=f"ticket {label}", now=datetime.now(UTC)
        )
        signed = pipeline.keys.signer.sign(request)
        corpus.send(f"erasure-{label}", topics.DSR.name, AvroSerializer("DataSubjectRequest")(signed))
        requests.append(signed["request_id"])

    def receipts() -> dict[str, tuple[Any, ...]]:
        owner = read_owner(pipeline.chdb_path)
        assert owner is not None
        client = owner_client(owner, pipeline.chdb_path)
        rows = client.query(
            "SELECT request_id, status, store_counts FROM records.dsr_receipts FINAL WHERE has(%(ids)s, request_id)",
            parameters={"ids": requests},
        ).result_rows
        return {r[0]: r for r in rows}

    wait_until(lambda: len(receipts()) == 3, 120, "three erasure receipts")
    wait_caught_up(pipeline, timeout=60)
    assert streams.alive() and sink.alive()

    result = reconcile_since(
        pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since, Sources(key_prefix=tag.encode())
    )
    by_position = {a.event.position: a for a in result.events}
    outcome = {label: by_position[at].outcome for label, at in corpus.at.items() if at in by_position}
    reason = {
        label: "; ".join(p.detail for p in by_position[at].places)
        for label, at in corpus.at.items()
        if at in by_position
    }
    print(f"CORPUS {result.summary()}")
    for label in sorted(outcome):
        print(f"CORPUS {label}: {outcome[label]} ({reason[label]})")
    assert outcome == {
        "good": "stored",
        "truncated": "dead_lettered",
        "wrong-magic": "dead_lettered",
        "unknown-fingerprint": "dead_lettered",
        "unknown-schema-id": "dead_lettered",
        "wrong-record-type": "dead_lettered",
        "wrong-field-types": "dead_lettered",
        "invalid-utf8": "dead_lettered",
        "invalid-contact": "stored",
        "duplicate-1": "stored",
        "duplicate-2": "stored",
        "out-of-order-newer": outcome["out-of-order-newer"],
        "out-of-order-older": outcome["out-of-order-older"],
        "recording-unknown-call": "stored",
        "consent-after-chat:chat": "stored",
        "consent-after-chat:withdrawal": "stored",
        "erased-chat": "erased",
    }
    assert "truncated" in reason["truncated"]
    assert "unknown framing" in reason["wrong-magic"]
    assert "unknown writer schema fingerprint" in reason["unknown-fingerprint"]
    assert "schema id 987654" in reason["unknown-schema-id"]
    assert "does not belong on cs.chat.v1" in reason["wrong-record-type"]
    assert "UnicodeDecodeError" in reason["invalid-utf8"]
    assert result.balanced and result.repeated_ids == 1
    # invalid phone: stripped with its reason; an implausible email is stored as typed (lower-cased)
    ((_, email, phone, strips),) = stored("chat_conversations", f"{tag}-contact")
    assert phone is None and "phone:invalid_phone" in strips and email == "not-an-email"
    # the withdrawal that came after the chat cleared its contact details in the store
    wait_until(lambda: stored("chat_conversations", f"{tag}-consent-after")[0][1] is None, 30, "contact cleared")
    # two versions of one call: one row; which one depends on the order of ingestion (the
    # version column is ingested_at), not on the event time
    assert {outcome["out-of-order-newer"], outcome["out-of-order-older"]} == {"stored", "superseded"}
    kept = newer if outcome["out-of-order-newer"] == "stored" else call
    assert stored("calls", f"{tag}-call", "source_event_id")[0][0] == str(kept["event_id"])
    statuses = {request_id: row[1] for request_id, row in receipts().items()}
    assert sorted(statuses.values()) == ["COMPLETED"] * 3, statuses
    # an erasure for a subject with no rows: every store counts 0; two erasures of one
    # subject at once: its chat counted by one of them at least (both, when run together), never more
    by_request = receipts()
    counts = {label: dict(by_request[rid][2]) for label, rid in zip(("none", "1", "2"), requests, strict=True)}
    nobody = {store: rows for store, rows in counts["none"].items() if store.startswith("records.")}
    assert "records.chat_conversations" in nobody and set(nobody.values()) == {0}, nobody
    twice = [counts[label]["records.chat_conversations"] for label in ("1", "2")]
    assert max(twice) == 1 and min(twice) in (0, 1), twice
    assert not stored("chat_conversations", f"{tag}-erased")
