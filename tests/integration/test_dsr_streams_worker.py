"""Data-subject requests through the streams worker against the real local broker:
`records worker streams` runs as a subprocess trusting a test DPO key, signed requests go
to cs.dsr.v1, and the subjects topic, the worker's changelogs, the command, receipt,
ledger and dead-letter topics are read back.

One worker (its own faust app id, positioned at the end of its input topics) serves the
module; every test uses identifiers of its own, so the tests do not see each other.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message as KafkaMessage
from confluent_kafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline import topics
from pipeline.dead_letter import parse_headers
from pipeline.dsr import DpoSigner, RequestType, TrustedKeys, build_request, canonical_bytes
from pipeline.dsr_contract import CommandEnvelope, open_command
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import SINGLE_OBJECT_MAGIC, AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind
from tests.support.kafka_offsets import end_positions, start_group_at_end
from tests.support.kafka_reads import consume_until
from tests.support.processes import CHANGELOGS, STREAMS_INPUTS, WorkerProcess
from tests.support.streams_traffic import T0, Traffic, call_detail, consent_changed, mystaff_chat, web_chat
from tests.support.worker_secrets import COMMAND_KEY, DPO_SIGNER, KEYER

pytestmark = pytest.mark.kafka

APP_ID = f"cs-streams-dsr-test-{uuid.uuid4().hex[:8]}"
CONSENT_LOG = dataclasses.replace(topics.CONSENT_CHANGELOG, name=f"{APP_ID}-{topics.CONSENT_TABLE}-changelog")
ERASURE_LOG = dataclasses.replace(topics.ERASURES_CHANGELOG, name=f"{APP_ID}-{topics.ERASURES_TABLE}-changelog")
WIRE = AvroSerializer("DataSubjectRequest")


@pytest.fixture(scope="module")
def worker(
    kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    kafka_admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    start_group_at_end(kafka_bootstrap, APP_ID, STREAMS_INPUTS)
    process = WorkerProcess(APP_ID, kafka_bootstrap, Path(tmp_path_factory.mktemp("dsr")) / APP_ID)
    process.start()
    yield process
    process.stop()
    kafka_admin.delete_topics([f"{APP_ID}-{suffix}" for suffix in CHANGELOGS])


# ---- helpers ----------------------------------------------------------------------------


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _key(kind: IdentifierKind, value: str) -> str:
    key = KEYER.key(kind, value)
    assert key is not None
    return key


def _signed(
    request_type: RequestType, identifiers: dict[str, str | None], signer: DpoSigner = DPO_SIGNER, **kw: Any
) -> tuple[str, bytes]:
    request = build_request(
        request_type, identifiers, requested_by="dpo.test", reason="T-1", now=datetime.now(UTC), **kw
    )
    signed = signer.sign(request)
    return str(signed["request_id"]), WIRE(signed)


@dataclasses.dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: int  # ms, set by the producer
    decoded: dict[str, Any] | None = None

    @property
    def text_key(self) -> str:
        return (self.key or b"").decode()


def _read(
    bootstrap: str, start: list[TopicPartition], done: Callable[[list[Message]], bool], timeout: float = 60.0
) -> list[Message]:
    """Messages from `start` on until `done(messages)` (Avro values decoded); fails on timeout."""
    deserialize = AvroDeserializer()

    def message(m: KafkaMessage) -> Message:
        item = Message(m.topic(), m.key(), m.value(), dict(m.headers() or []), m.timestamp()[1])
        if item.value and item.value[:2] == SINGLE_OBJECT_MAGIC and item.topic != topics.DLQ.name:
            item.decoded = deserialize(item.value).value
        return item

    return consume_until(bootstrap, start, done, message, timeout=timeout)


def _envelope(command: Message) -> CommandEnvelope:
    """The command's envelope, verified as the sink verifies it (the worker's command key)."""
    assert command.value is not None
    trusted = TrustedKeys.of(COMMAND_KEY.public_key())
    return open_command(
        list(command.headers.items()), command.value, trusted, now=datetime.now(UTC), max_age=timedelta(hours=72)
    )


def _dead_letter_of(request_id: str) -> Callable[[Message], bool]:
    return lambda m: m.topic == topics.DLQ.name and m.text_key == request_id


def _command(request_id: str) -> Callable[[list[Message]], bool]:
    return lambda got: any(m.topic == topics.DSR_COMMANDS.name and m.text_key == request_id for m in got)


def _metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    return sum(
        value
        for (metric, lbls), value in worker.metrics().items()
        if metric == name and all(dict(lbls).get(k) == v for k, v in labels.items())
    )


# ---- tests ------------------------------------------------------------------------------


def test_an_erasure_tombstones_the_subject_and_a_replay_brings_nothing_back(
    kafka_bootstrap: str, worker: WorkerProcess
) -> None:
    tag = uuid.uuid4().hex[:10]
    n = random.randint(1_000_000, 9_999_999)
    email, phone, visitor, person = f"erase-{tag}@example.fi", f"+35840{n:07d}", f"v-{tag}", f"P{n}"
    email_key, phone_key = _key(IdentifierKind.EMAIL, email), _key(IdentifierKind.PHONE, phone)
    person_key = _key(IdentifierKind.PERSON_NUMBER, person)
    before = _ms(datetime.now(UTC) - timedelta(hours=2))
    web, app_chat, call_id = f"chat-{tag}-{n}", f"chat-{tag}-2", f"call-{tag}"
    staff = mystaff_chat(app_chat, person_number=person) | {"email": email}  # the same person in the app
    raw = {
        "consent": (topics.CONSENT, email, "ConsentChanged", consent_changed(before, "GIVEN", None, email=email)),
        "web": (topics.CHAT, web, "ChatConversation", web_chat(web, visitor=visitor, email=email, started=before)),
        "app": (topics.CHAT, app_chat, "ChatConversation", staff),
        "call": (topics.CALL, call_id, "CallDetailRecord", call_detail(call_id, phone)),
    }
    # Dated 10 minutes ahead (a source's clock; within the policy's skew) but taken in before
    # the erasure: re-read by a replay after it, it is not new contact (issue 11).
    ahead = f"chat-{tag}-7"
    ahead_chat = web_chat(ahead, visitor=visitor, email=email, started=datetime.now(UTC) + timedelta(minutes=10))
    traffic = Traffic(kafka_bootstrap, tag)
    outputs = (topics.CHAT_ENRICHED, topics.CALL_ENRICHED, topics.CONSENT_LEDGER, topics.SUBJECTS)
    start = end_positions(kafka_bootstrap, outputs)
    for label, (spec, key, schema, value) in raw.items():
        traffic.avro(label, spec.name, key, schema, value)
    taken_in_ms = int(time.time() * 1000)
    ahead_value = AvroSerializer("ChatConversation")(ahead_chat)
    traffic.producer.produce(topics.CHAT.name, key=ahead.encode(), value=ahead_value, timestamp=taken_in_ms)
    traffic.flush()
    stored = {(topics.SUBJECTS.name, k) for k in (email_key, phone_key, person_key)}
    stored |= {(topics.CHAT_ENRICHED.name, web), (topics.CHAT_ENRICHED.name, app_chat)}
    stored |= {(topics.CALL_ENRICHED.name, call_id), (topics.CONSENT_LEDGER.name, email_key)}
    stored |= {(topics.CHAT_ENRICHED.name, ahead)}
    _read(kafka_bootstrap, start, lambda got: stored <= {(m.topic, m.text_key) for m in got})

    # The erasure.
    request_id, payload = _signed(RequestType.ERASURE, {"email": email, "phone": phone})
    start = end_positions(kafka_bootstrap, (topics.SUBJECTS, topics.DSR_COMMANDS, CONSENT_LOG, ERASURE_LOG))
    traffic.send("erase", topics.DSR.name, request_id, payload)
    traffic.flush()
    got = _read(kafka_bootstrap, start, _command(request_id))
    tombstones = {m.text_key for m in got if m.topic == topics.SUBJECTS.name and m.value is None}
    assert {email_key, phone_key, person_key} <= tombstones  # the app's record holds the email: removed whole
    assert any(m.topic == CONSENT_LOG.name and m.text_key == email_key and m.value is None for m in got)
    assert {m.text_key for m in got if m.topic == ERASURE_LOG.name} >= {email_key, phone_key}
    (command,) = [m for m in got if m.topic == topics.DSR_COMMANDS.name and m.text_key == request_id]
    assert command.value == payload  # the original bytes
    envelope = _envelope(command)
    assert envelope.subject_keys == (email_key, phone_key)
    assert envelope.kafka_counts == {
        topics.SUBJECTS.name: 3,
        CONSENT_LOG.name: 1,
        ERASURE_LOG.name: 2,
    }
    erased_at = envelope.verified_at
    assert envelope.new_subject_key is None
    # the command was produced only after the Kafka work was delivered
    work = [m for m in got if m.topic in (topics.SUBJECTS.name, CONSENT_LOG.name, ERASURE_LOG.name)]
    assert max(m.timestamp for m in work if m.text_key in (email_key, phone_key)) <= command.timestamp

    # The replay: the same raw events again (older than the erasure), then new contact.
    dropped_before = _metric(worker, "records_streams_erased_dropped_total")
    start = end_positions(kafka_bootstrap, outputs)
    for label, sent in list(traffic.sent.items()):
        if label in raw:
            traffic.send(f"replay-{label}", sent.topic, sent.key.decode(), sent.value)
    # The same message re-read (a reset consumer group): its record timestamp is unchanged.
    traffic.producer.produce(topics.CHAT.name, key=ahead.encode(), value=ahead_value, timestamp=taken_in_ms)
    new_chat = f"chat-{tag}-3"
    after = _ms(datetime.now(UTC))
    assert after > erased_at
    traffic.avro(
        "new",
        topics.CHAT.name,
        new_chat,
        "ChatConversation",
        web_chat(new_chat, visitor=visitor, email=email, started=after),
    )
    traffic.flush()
    deadline = time.monotonic() + 60
    while _metric(worker, "records_streams_erased_dropped_total") - dropped_before < len(raw) + 1:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)
    got = _read(kafka_bootstrap, start, lambda got: any(m.text_key == new_chat for m in got))
    erased = {email_key, phone_key, person_key}

    def new_contact(m: Message) -> bool:
        assert m.decoded is not None
        return m.decoded.get("conversation_id") == new_chat or m.decoded.get("updated_at", erased_at) > erased_at

    resurrected = [
        m
        for m in got
        if m.decoded is not None
        and (erased & set(m.decoded.get("subject_keys", [])) or m.text_key in erased)
        and not new_contact(m)
    ]
    assert resurrected == []
    assert _metric(worker, "records_streams_erased_dropped_total") - dropped_before == len(raw) + 1
    kept = [m.decoded for m in got if m.decoded and m.decoded.get("event_id") == new_chat]
    assert kept and kept[0]["email"] == email  # new contact after the erasure is new data


def test_forged_and_replayed_requests_are_dead_lettered_and_never_executed(
    kafka_bootstrap: str, worker: WorkerProcess
) -> None:
    tag = uuid.uuid4().hex[:10]
    email, victim = f"restrict-{tag}@example.fi", f"victim-{tag}@example.fi"
    restrict_id, restrict = _signed(RequestType.RESTRICTION, {"email": email})
    forged_request = build_request(
        RequestType.ERASURE, {"email": victim}, requested_by="mallory", reason="x", now=datetime.now(UTC)
    )
    forged_request["key_id"] = DPO_SIGNER.key_id  # claims the DPO's key, signed with another one
    forged_request["signature"] = Ed25519PrivateKey.generate().sign(canonical_bytes(forged_request))
    forged_id, forged = str(forged_request["request_id"]), WIRE(forged_request)
    before = {
        reason: _metric(worker, "records_streams_dsr_rejected_total", reason=reason)
        for reason in ("BAD_SIGNATURE", "REPLAYED")
    }
    outputs = (topics.DLQ, topics.DSR_RECEIPTS, topics.DSR_COMMANDS, topics.SUBJECTS, topics.CHAT_ENRICHED)
    start = end_positions(kafka_bootstrap, outputs)
    traffic = Traffic(kafka_bootstrap, tag)
    traffic.send("restrict", topics.DSR.name, restrict_id, restrict)
    traffic.send("forged", topics.DSR.name, forged_id, forged)
    traffic.send("replay", topics.DSR.name, restrict_id, restrict)  # the same request again
    traffic.flush()

    def letters(got: list[Message]) -> list[Message]:
        return [m for m in got if m.topic == topics.DLQ.name and m.key in (restrict_id.encode(), forged_id.encode())]

    got = _read(kafka_bootstrap, start, lambda got: len(letters(got)) == 2 and _command(restrict_id)(got))
    by_error = {parse_headers(m.headers)["dlq.error"]: m for m in letters(got)}
    assert set(by_error) == {"signature does not verify", "request id was already used"}
    for error, original in (("signature does not verify", forged), ("request id was already used", restrict)):
        headers = parse_headers(by_error[error].headers)
        assert by_error[error].value == original
        assert (headers["dlq.error.class"], headers["dlq.stage"], headers["dlq.source.topic"]) == (
            "DsrRejected",
            "streams",
            topics.DSR.name,
        )
    commands = [m.text_key for m in got if m.topic == topics.DSR_COMMANDS.name]
    assert commands.count(restrict_id) == 1 and forged_id not in commands  # the replay did not run again
    receipts = {m.text_key: m.decoded for m in got if m.topic == topics.DSR_RECEIPTS.name}
    assert receipts[forged_id] is not None
    assert (receipts[forged_id]["status"], receipts[forged_id]["detail"]) == ("REJECTED", "signature does not verify")
    assert receipts[forged_id]["requested_at"] == _ms(forged_request["issued_at"])
    assert restrict_id not in receipts  # a replay never overwrites the receipt of the request it copies
    victim_key = _key(IdentifierKind.EMAIL, victim)
    assert all(m.text_key != victim_key for m in got if m.topic == topics.SUBJECTS.name)
    for reason in before:
        assert _metric(worker, "records_streams_dsr_rejected_total", reason=reason) - before[reason] == 1

    # The restriction that did run: the subject's rows carry the flag.
    cid = f"chat-{tag}-1"
    traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", web_chat(cid, visitor=f"v-{tag}", email=email))
    traffic.flush()
    got = _read(kafka_bootstrap, start, lambda got: any(m.text_key == cid for m in got))
    row = next(m for m in got if m.text_key == cid)
    assert row.headers.get("cs.restricted") == b"1"


def test_a_rectified_email_moves_the_subject_record_to_its_new_key(kafka_bootstrap: str, worker: WorkerProcess) -> None:
    tag = uuid.uuid4().hex[:10]
    email, corrected = f"wrong-{tag}@example.fi", f"Right-{tag}@Example.fi"
    old_key, new_key = _key(IdentifierKind.EMAIL, email), _key(IdentifierKind.EMAIL, corrected)
    cid = f"chat-{tag}-{random.randint(1, 9_999_999)}"
    traffic = Traffic(kafka_bootstrap, tag)
    start = end_positions(kafka_bootstrap, (topics.SUBJECTS, topics.DSR_COMMANDS))
    chat = web_chat(cid, visitor=f"v-{tag}", email=email, started=T0)
    traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", chat)
    traffic.flush()
    _read(kafka_bootstrap, start, lambda got: any(m.text_key == old_key and m.value for m in got))

    request_id, payload = _signed(
        RequestType.RECTIFICATION, {"email": email}, rectify_field="email", rectify_value=corrected
    )
    traffic.send("rectify", topics.DSR.name, request_id, payload)
    traffic.flush()
    got = _read(kafka_bootstrap, start, _command(request_id))
    latest = {m.text_key: m for m in got if m.topic == topics.SUBJECTS.name and m.text_key in (old_key, new_key)}
    assert latest[old_key].value is None  # the wrong address no longer identifies the subject
    record = latest[new_key].decoded
    assert record is not None
    assert (record["email"], record["name"], record["subject_key"]) == (corrected.lower(), chat["name"], new_key)
    assert _key(IdentifierKind.VISITOR_ID, f"v-{tag}") in record["linked_keys"] and old_key not in record["linked_keys"]
    command = next(m for m in got if m.topic == topics.DSR_COMMANDS.name and m.text_key == request_id)
    envelope = _envelope(command)
    assert (envelope.new_subject_key, envelope.subject_keys) == (new_key, (old_key,))
    assert envelope.kafka_counts[topics.SUBJECTS.name] == 2


def test_a_consent_withdrawal_writes_withdrawn_ledger_rows_and_strips_what_came_before(
    kafka_bootstrap: str, worker: WorkerProcess
) -> None:
    tag = uuid.uuid4().hex[:10]
    email, visitor = f"withdraw-{tag}@example.fi", f"v-{tag}"
    keys = [_key(IdentifierKind.EMAIL, email), _key(IdentifierKind.VISITOR_ID, visitor)]
    request_id, payload = _signed(RequestType.CONSENT_WITHDRAWAL, {"email": email, "visitor_id": visitor})
    traffic = Traffic(kafka_bootstrap, tag)
    start = end_positions(kafka_bootstrap, (topics.CONSENT_LEDGER, topics.DSR_COMMANDS, topics.CHAT_ENRICHED))
    traffic.send("withdraw", topics.DSR.name, request_id, payload)
    traffic.flush()
    got = _read(kafka_bootstrap, start, _command(request_id))
    ledger = [m.decoded for m in got if m.topic == topics.CONSENT_LEDGER.name and m.decoded]
    ledger = [row for row in ledger if row["evidence"] == f"dsr:{request_id}"]
    assert sorted((row["kind"], row["purpose"], row["status"]) for row in ledger) == [
        ("CONSENT", "CALL_RECORDING", "WITHDRAWN"),
        ("CONSENT", "CONTACT_DETAILS", "WITHDRAWN"),
        ("CONSENT", "SERVICE_DEVELOPMENT", "WITHDRAWN"),
        ("COOKIE", "COOKIES", "WITHDRAWN"),
    ]
    assert all(row["subject_keys"] == keys and row["channel"] == "DPO" for row in ledger)
    command = next(m for m in got if m.topic == topics.DSR_COMMANDS.name and m.text_key == request_id)
    assert _envelope(command).kafka_counts[topics.CONSENT_LEDGER.name] == 4

    # A chat collected before the withdrawal, processed after it: its consent-based data is gone.
    cid = f"chat-{tag}-1"
    chat = web_chat(cid, visitor=visitor, email=email, started=_ms(datetime.now(UTC) - timedelta(hours=1)))
    traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", chat)
    traffic.flush()
    got = _read(kafka_bootstrap, start, lambda got: any(m.text_key == cid for m in got))
    row = next(m.decoded for m in got if m.text_key == cid and m.decoded and m.decoded["event_id"] == cid)
    assert row is not None and row["email"] is None and row["browser"] is None
    assert {"email:consent_withdrawn", "browser:consent_withdrawn"} <= set(row["stripped"])


def test_the_seen_requests_table_forgets_ids_past_the_max_age_and_an_old_replay_is_still_refused(
    kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path
) -> None:
    app_id = f"cs-streams-seen-test-{uuid.uuid4().hex[:8]}"
    seen_log = dataclasses.replace(topics.DSR_SEEN_CHANGELOG, name=f"{app_id}-{topics.DSR_SEEN_TABLE}-changelog")
    kafka_admin.create_topics([*topics.ALL_TOPICS, seen_log])
    old = _ms(datetime.now(UTC) - timedelta(days=400))
    old_request = DPO_SIGNER.sign(
        build_request(RequestType.ERASURE, {"email": f"old-{app_id}@example.fi"}, requested_by="d", reason="t", now=old)
    )
    old_id, fresh_id = str(old_request["request_id"]), str(uuid.uuid4())
    fresh_ms = int(datetime.now(UTC).timestamp() * 1000)
    old_ms = int(old.timestamp() * 1000)
    # What the table held from earlier runs: one id first seen 400 days ago, one just now.
    traffic = Traffic(kafka_bootstrap, app_id)
    for request_id, at in ((old_id, old_ms), (fresh_id, fresh_ms)):
        value = json.dumps({"partition": 0, "offset": 1, "at": at, "ok": True}).encode()
        traffic.send(request_id, seen_log.name, request_id, value)
    traffic.flush()
    start_group_at_end(kafka_bootstrap, app_id, STREAMS_INPUTS)
    process = WorkerProcess(app_id, kafka_bootstrap, tmp_path / app_id, args=("--seen-sweep-every", "1"))
    process.start()
    try:
        got = _read(
            kafka_bootstrap,
            [TopicPartition(seen_log.name, 0, 0)],
            lambda got: any(m.text_key == old_id and m.value is None for m in got),
        )
        assert not any(m.text_key == fresh_id and m.value is None for m in got)  # still within the max age
        assert _metric(process, "records_streams_dsr_seen_expired_total") >= 1

        # The forgotten id comes back (a replay of the 400-day-old request): refused by its age.
        start = end_positions(kafka_bootstrap, (topics.DLQ, topics.DSR_COMMANDS))
        traffic.send("replay", topics.DSR.name, old_id, WIRE(old_request))
        traffic.flush()
        got = _read(kafka_bootstrap, start, lambda got: any(_dead_letter_of(old_id)(m) for m in got))
        # (the module's worker, when it runs, reads cs.dsr.v1 too and refuses it the same way)
        errors = {parse_headers(m.headers)["dlq.error"] for m in got if _dead_letter_of(old_id)(m)}
        assert errors == {"request is older than the policy allows"}
        assert not any(m.topic == topics.DSR_COMMANDS.name for m in got)
    finally:
        process.stop()
        kafka_admin.delete_topics([f"{app_id}-{suffix}" for suffix in CHANGELOGS])
