"""The streams worker against the real local broker: `records worker streams` runs as a
subprocess, simulated traffic goes in, and the enriched, ledger, subjects, quarantine and
dead-letter topics are read back.

Each test runs its worker under its own faust app id (consumer group and changelog),
pre-committed at the end of the input topics, and tags every id it produces, so other
tests sharing the broker neither disturb it nor are disturbed. The expected strips are
computed here from the input and `pipeline/policy.toml`, not by the code under test.
"""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from pipeline import topics
from pipeline.dead_letter import parse_headers
from pipeline.kafka.admin import KafkaAdmin
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind
from streams.app import OUTPUT_TOPICS
from tests.support.kafka_offsets import end_positions, start_group_at_end
from tests.support.kafka_reads import consume_until
from tests.support.processes import CHANGELOGS, STREAMS_INPUTS, WorkerProcess
from tests.support.streams_traffic import (
    RECORDING_START,
    T0,
    USER_AGENTS,
    Traffic,
    call_detail,
    call_recording,
    consent_changed,
    mystaff_chat,
    raw_envelope,
    web_chat,
)
from tests.support.worker_secrets import KEYER

pytestmark = pytest.mark.kafka

POLICY = default_policy()
OUTPUTS = OUTPUT_TOPICS  # every topic the worker writes rows, subjects and letters to
# Why a field is stripped when its need was not given with the record (the policy's vocabulary).
NOT_GIVEN = {
    "contact_consent": "no_contact_consent",
    "cookie.functional": "no_cookie_functional",
    "cookie.analytics": "no_cookie_analytics",
    "geolocation": "no_geolocation_permission",
}


# ---- the worker ---------------------------------------------------------------------


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path
) -> Iterator[Callable[[str], WorkerProcess]]:
    """Start `records worker streams` under an app id; stopped, and its topics deleted, after the test."""
    kafka_admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    started: list[WorkerProcess] = []
    app_ids: set[str] = set()

    def start(app_id: str) -> WorkerProcess:
        if app_id not in app_ids:
            start_group_at_end(kafka_bootstrap, app_id, STREAMS_INPUTS)
            app_ids.add(app_id)
        worker = WorkerProcess(app_id, kafka_bootstrap, tmp_path / app_id)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()
    kafka_admin.delete_topics([f"{a}-{suffix}" for a in app_ids for suffix in CHANGELOGS])


# ---- what the policy implies --------------------------------------------------------


def _expected_strips(chat: dict[str, Any], withdrawals: dict[str, dict[str, datetime]]) -> Counter[str]:
    """field:reason of every non-null policy field the chat's consents do not cover."""
    record = POLICY.record("chat_conversation")
    captured = {
        "contact_consent": chat["contact_consent"],
        "cookie.functional": chat["cookie_consent"]["functional"],
        "cookie.analytics": chat["cookie_consent"]["analytics"],
        "geolocation": chat["geolocation_permission"],
    }
    derived = {"browser", "os", "device_type"} if chat["user_agent"] else set()
    derived |= {"isp_org"} if chat["network_name"] else set()
    withdrawn = {**withdrawals.get(chat["visitor_id"] or "", {}), **withdrawals.get(chat["email"] or "", {})}
    out: Counter[str] = Counter()
    for name, rule in record.fields.items():
        present = name in derived or (name in chat and chat[name] not in (None, ""))
        if not present or rule.needs is None or not rule.applies_to(chat["channel"]):
            continue
        if not captured[rule.needs]:
            out[f"{name}:{NOT_GIVEN[rule.needs]}"] += 1
        elif rule.needs in withdrawn and withdrawn[rule.needs] >= chat["started_at"]:
            out[f"{name}:consent_withdrawn"] += 1
    return out


# ---- reading the outputs --------------------------------------------------------------


@dataclass
class Received:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    decoded: dict[str, Any] | None = None
    schema: str | None = None


def _consume(
    bootstrap: str, start: list[TopicPartition], done: Callable[[list[Received]], bool], timeout: float = 60.0
) -> list[Received]:
    """What arrived from `start` on until `done` (or `timeout`), Avro values decoded."""
    deserialize = AvroDeserializer()

    def received(message: Message) -> Received:
        item = Received(message.topic(), message.key(), message.value(), list(message.headers() or []))
        if item.topic not in (topics.DLQ.name, topics.QUARANTINE.name) and item.value is not None:
            decoded = deserialize(item.value)
            item.decoded, item.schema = decoded.value, decoded.schema_name
        return item

    return consume_until(bootstrap, start, done, received, timeout=timeout, required=False)


def _mine(items: list[Received], tag: str) -> list[Received]:
    def ours(item: Received) -> bool:
        if item.decoded is None:
            return False
        text = " ".join(str(v) for v in item.decoded.values())
        return tag in text or any(tag in v.decode(errors="ignore") for _, v in item.headers)

    return [item for item in items if ours(item)]


# ---- tests ----------------------------------------------------------------------------


def test_traffic_through_the_worker(kafka_bootstrap: str, start_worker: Callable[[str], WorkerProcess]) -> None:
    tag = uuid.uuid4().hex[:10]
    worker = start_worker(f"cs-streams-test-{tag}")
    traffic = Traffic(kafka_bootstrap, tag)
    out_start = end_positions(kafka_bootstrap, OUTPUTS)

    # Phase 1: a contact-consent withdrawal and a cookie revocation, processed before the chats.
    withdrawn_at = T0 + timedelta(hours=1)
    w_email, w_visitor = f"withdrawn-{tag}@example.fi", f"visitor-w-{tag}"
    c_visitor = f"visitor-c-{tag}"
    withdrawal = consent_changed(withdrawn_at, "WITHDRAWN", f"ticket-{tag}", email=w_email, visitor_id=w_visitor)
    traffic.avro("withdrawal", topics.CONSENT.name, w_email, "ConsentChanged", withdrawal)
    revocation = {
        **raw_envelope("web-site", withdrawn_at),
        "visitor_id": c_visitor,
        "evidence": f"banner-{tag}",
        "cookie_consent": {"functional": True, "analytics": False, "marketing": False},
        "geolocation_permission": False,
    }
    traffic.avro("cookie-revocation", topics.CONSENT.name, c_visitor, "CookieConsentChanged", revocation)
    traffic.flush()
    ledger_keys = {KEYER.key(IdentifierKind.EMAIL, w_email), KEYER.key(IdentifierKind.VISITOR_ID, c_visitor)}
    _consume(
        kafka_bootstrap,
        [tp for tp in out_start if tp.topic == topics.CONSENT_LEDGER.name],
        lambda got: ledger_keys <= {i.key.decode() for i in got if i.key},
    )
    withdrawals = {
        w_visitor: {"contact_consent": withdrawn_at},
        w_email: {"contact_consent": withdrawn_at},
        c_visitor: {"cookie.analytics": withdrawn_at, "geolocation": withdrawn_at},
    }

    # Phase 2: chats, calls, recordings and bad input.
    chats: dict[str, dict[str, Any]] = {}
    combinations = itertools.product((True, False), (True, False), (True, False), (True, False), USER_AGENTS)
    for n, (consent, functional, analytics, geolocation, user_agent) in enumerate(combinations, start=1):
        cid = f"chat-{tag}-{n}"
        flags = {"contact_consent": consent, "geolocation_permission": geolocation, "user_agent": user_agent}
        flags["cookie_consent"] = {"functional": functional, "analytics": analytics, "marketing": False}
        chats[cid] = web_chat(cid, visitor=f"visitor-{tag}-{n}", email=f"person{n}-{tag}@example.fi", **flags)
    # the withdrawing subject before and after the withdrawal, and the cookie-revoking visitor before it
    chats[f"chat-{tag}-101"] = web_chat(f"chat-{tag}-101", visitor=w_visitor, email=w_email)
    chats[f"chat-{tag}-102"] = web_chat(
        f"chat-{tag}-102", visitor=w_visitor, email=w_email, started=withdrawn_at + timedelta(hours=1)
    )
    chats[f"chat-{tag}-103"] = web_chat(f"chat-{tag}-103", visitor=c_visitor, email=f"c-{tag}@example.fi")
    for n in (201, 202, 203):
        chats[f"chat-{tag}-{n}"] = mystaff_chat(f"chat-{tag}-{n}", person_number=f"P{n}-{tag}")
    for cid, chat in chats.items():
        traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", chat)

    calls = {f"call-{tag}-{n}": call_detail(f"call-{tag}-{n}", f"+35850{n:07d}") for n in range(1, 5)}
    calls[f"call-{tag}-5"] = call_detail(f"call-{tag}-5", "anonymous")
    for call_id, cdr in calls.items():
        traffic.avro(call_id, topics.CALL.name, call_id, "CallDetailRecord", cdr)
    notices = {
        "noticed-1": T0 + timedelta(seconds=3),
        "noticed-2": RECORDING_START,
        "unnoticed-1": None,
        "unnoticed-2": RECORDING_START + timedelta(seconds=2),
    }
    for label, notice in notices.items():
        recording = call_recording(f"rec-{tag}-{label}", f"call-{tag}-1", notice)
        traffic.avro(label, topics.CALL.name, f"call-{tag}-1", "CallRecording", recording)

    encode = {name: AvroSerializer(name) for name in ("ChatConversation", "CallDetailRecord", "ConsentChanged")}
    unknown_channel = {**chats[f"chat-{tag}-2"], "channel": "UNKNOWN"}
    wrong_call = call_detail(f"call-{tag}-9", "+358501234567", ended_at=T0 - timedelta(seconds=1))
    nobody = consent_changed(T0, "GIVEN", None)
    # Implausible event times (issue 11): dead-lettered, the reason naming the field, not the value.
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3653)
    implausible = {
        "call-ten-years-ahead": ahead,
        "call-in-2400": datetime(2400, 1, 1, tzinfo=UTC),
        "call-before-2000": datetime(1999, 12, 31, tzinfo=UTC),
    }
    bad_times = {
        label: call_detail(f"call-{tag}-{label}", "+358501234567", started_at=at, answered_at=at, ended_at=at)
        for label, at in implausible.items()
    }
    bad = {
        **{label: (topics.CALL.name, encode["CallDetailRecord"](c), "InvalidEvent") for label, c in bad_times.items()},
        "garbage-chat": (topics.CHAT.name, b"\x00not avro at all", "SerdeError"),
        "truncated-chat": (topics.CHAT.name, encode["ChatConversation"](chats[f"chat-{tag}-1"])[:40], "SerdeError"),
        "call-on-chat-topic": (topics.CHAT.name, encode["CallDetailRecord"](calls[f"call-{tag}-1"]), "InvalidEvent"),
        "unknown-channel": (topics.CHAT.name, encode["ChatConversation"](unknown_channel), "InvalidEvent"),
        "call-ends-before-start": (topics.CALL.name, encode["CallDetailRecord"](wrong_call), "InvalidEvent"),
        "consent-without-subject": (topics.CONSENT.name, encode["ConsentChanged"](nobody), "InvalidEvent"),
    }
    for label, (topic, value, _) in bad.items():
        traffic.send(label, topic, f"bad-{tag}-{label}", value, headers=[("trace-id", tag.encode())])
    traffic.flush()

    expected_chat_rows = len(chats) + sum(len(c["messages"]) for c in chats.values())
    expected_call_rows = len(calls) + 2

    def complete(got: list[Received]) -> bool:
        mine = _mine(got, tag)
        letters = [
            i
            for i in got
            if i.topic in (topics.DLQ.name, topics.QUARANTINE.name)
            and i.key
            and i.key.decode().startswith(("bad-", f"call-{tag}"))
        ]
        return (
            sum(i.topic == topics.CHAT_ENRICHED.name for i in mine) >= expected_chat_rows
            and sum(i.topic == topics.CALL_ENRICHED.name for i in mine) >= expected_call_rows
            and len(letters) >= len(bad) + 2
        )

    got = _consume(kafka_bootstrap, out_start, complete)
    mine = _mine(got, tag)

    # Enriched chats: every conversation and message, stripped exactly as the policy implies.
    conversations = {i.decoded["conversation_id"]: i for i in mine if i.schema == "cs.records.ChatConversationRecord"}
    # by row id: another streams group on a shared broker may have emitted the same rows too
    messages = {i.decoded["event_id"] for i in mine if i.schema == "cs.records.ChatMessageRecord"}
    assert set(conversations) == set(chats)
    assert messages == {f"{cid}:{m['message_id']}" for cid, chat in chats.items() for m in chat["messages"]}
    expected_total: Counter[str] = Counter()
    for cid, chat in chats.items():
        row = conversations[cid].decoded
        expected = _expected_strips(chat, withdrawals)
        assert Counter(row["stripped"]) == expected, cid
        for strip in expected:
            assert row[strip.split(":")[0]] is None
        expected_total += expected
        assert conversations[cid].key == cid.encode()
        assert row["expires_at"] == POLICY.record("chat_conversation").period.add_to(chat["started_at"])
    assert expected_total["email:no_contact_consent"] == 16  # half of the 32 combinations
    assert expected_total["email:consent_withdrawn"] == 1
    kept = conversations[f"chat-{tag}-102"].decoded  # started after the withdrawal: a fresh consent
    assert kept["email"] == w_email and kept["contact_consent"] is True
    enriched = conversations[f"chat-{tag}-1"].decoded
    assert (enriched["browser"], enriched["os"], enriched["device_type"]) == ("Chrome 124", "Windows", "computer")
    assert (enriched["isp_org"], enriched["city"], enriched["phone"]) == ("elisa-laajakaista.fi", None, "+358400000001")

    # Calls and recordings: only the noticed recordings are stored.
    call_rows = {i.decoded["event_id"]: i.decoded for i in mine if i.schema == "cs.records.CallRecord"}
    recordings = {i.decoded["recording_id"] for i in mine if i.schema == "cs.records.CallRecordingRecord"}
    assert set(call_rows) == set(calls)
    assert call_rows[f"call-{tag}-1"]["caller_number"] == "+358500000001"
    assert recordings == {f"rec-{tag}-noticed-1", f"rec-{tag}-noticed-2"}

    # Ledger rows and subjects.
    ledger = [i for i in got if i.topic == topics.CONSENT_LEDGER.name and i.key and i.key.decode() in ledger_keys]
    assert {i.decoded["kind"] for i in ledger} == {"CONSENT", "COOKIE"}
    subject_keys = {i.key.decode() for i in got if i.topic == topics.SUBJECTS.name and i.key}
    expected_subjects = {KEYER.key(IdentifierKind.PERSON_NUMBER, f"P{n}-{tag}") for n in (201, 202, 203)}
    expected_subjects |= {KEYER.key(IdentifierKind.PHONE, f"+35850{n:07d}") for n in range(1, 5)}
    expected_subjects |= {
        KEYER.key(IdentifierKind.EMAIL, c["email"])
        for c in chats.values()
        if c["channel"] == "WEB" and c["contact_consent"] and c["conversation_id"] != f"chat-{tag}-101"
    }
    assert expected_subjects <= subject_keys
    assert KEYER.key(IdentifierKind.EMAIL, chats[f"chat-{tag}-17"]["email"]) not in subject_keys  # no consent

    # Quarantine and dead letters: exactly the unnoticed recordings and the bad messages.
    def letters(topic: str) -> dict[tuple[int, int], Received]:
        out = {}
        for item in got:
            if item.topic == topic:
                h = parse_headers(item.headers)
                if h.get("dlq.stage") == "streams":
                    out[(h["dlq.source.topic"], int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))] = item
        return out

    sent_at = {(s.topic, s.partition, s.offset): label for label, s in traffic.sent.items()}
    quarantined = {sent_at[k]: v for k, v in letters(topics.QUARANTINE.name).items() if k in sent_at}
    dead = {sent_at[k]: v for k, v in letters(topics.DLQ.name).items() if k in sent_at}
    assert set(quarantined) == {"unnoticed-1", "unnoticed-2"}
    assert set(dead) == set(bad)
    for label, item in {**quarantined, **dead}.items():
        original = traffic.sent[label]
        assert (item.key, item.value) == (original.key, original.value), label
        assert ("trace-id", tag.encode()) in item.headers
    for label, item in dead.items():
        headers = parse_headers(item.headers)
        assert headers["dlq.error.class"] == bad[label][2], (label, headers)
        assert headers["dlq.source.topic"] == bad[label][0]
    assert parse_headers(quarantined["unnoticed-1"].headers)["dlq.error"].startswith("recording without prior notice")
    for label, at in implausible.items():
        reason = parse_headers(dead[label].headers)["dlq.error"]
        assert reason.startswith("CallDetailRecord.started_at is ") and "plausible event time" in reason, reason
        assert str(at.year) not in reason and at.isoformat() not in reason, reason

    # The metrics say the same (exactly, unless someone else's traffic reached this worker).
    metrics = worker.metrics()

    def total(name: str, **labels: str) -> float:
        return sum(
            value
            for (metric, lbls), value in metrics.items()
            if metric == name and all(dict(lbls).get(k) == v for k, v in labels.items())
        )

    produced_inputs = len(traffic.sent)
    foreign = total("records_streams_events_in_total") != produced_inputs
    compare: Callable[[float, float], bool] = (lambda a, b: a >= b) if foreign else (lambda a, b: a == b)
    for strip, count in expected_total.items():
        field_name, reason = strip.split(":")
        assert compare(
            total("records_streams_stripped_total", record_type="chat_conversation", field=field_name, reason=reason),
            count,
        ), strip
    assert compare(total("records_streams_quarantined_total", reason="recording_notice_before_start"), 2)
    assert compare(total("records_streams_dead_lettered_total"), len(bad))
    assert compare(total("records_streams_events_out_total", topic=topics.CHAT_ENRICHED.name), expected_chat_rows)


def test_a_restarted_worker_recovers_the_consent_table_from_its_changelog(
    kafka_bootstrap: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    tag = uuid.uuid4().hex[:10]
    app_id = f"cs-streams-test-{tag}"
    email, visitor = f"restart-{tag}@example.fi", f"visitor-r-{tag}"
    withdrawn_at = T0 + timedelta(hours=1)

    first = start_worker(app_id)
    out_start = end_positions(kafka_bootstrap, OUTPUTS)
    traffic = Traffic(kafka_bootstrap, tag)
    withdrawal = consent_changed(withdrawn_at, "WITHDRAWN", None, email=email)
    traffic.avro("withdrawal", topics.CONSENT.name, email, "ConsentChanged", withdrawal)
    traffic.flush()
    email_key = KEYER.key(IdentifierKind.EMAIL, email)
    ledger = _consume(
        kafka_bootstrap,
        [tp for tp in out_start if tp.topic == topics.CONSENT_LEDGER.name],
        lambda got: any(i.key == (email_key or "").encode() for i in got),
    )
    assert any(i.key == (email_key or "").encode() for i in ledger)
    first.stop()
    assert first.process is not None and first.process.returncode == 0, first.log()[-2000:]

    second = start_worker(app_id)  # a new process: its memory store starts empty
    assert f"{app_id}-consent-changelog" in second.log()  # it read the changelog on start
    cid = f"chat-{tag}-1"
    chat = web_chat(cid, visitor=visitor, email=email)
    out_start = end_positions(kafka_bootstrap, (topics.CHAT_ENRICHED,))
    traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", chat)
    traffic.flush()

    def found(got: list[Received]) -> bool:
        return any(i.schema == "cs.records.ChatConversationRecord" and i.key == cid.encode() for i in got)

    got = _consume(kafka_bootstrap, out_start, found)
    (row,) = [i.decoded for i in got if i.schema == "cs.records.ChatConversationRecord" and i.key == cid.encode()]
    assert row is not None
    assert (row["name"], row["email"], row["phone"], row["contact_consent"]) == (None, None, None, False)
    assert {"name:consent_withdrawn", "email:consent_withdrawn", "phone:consent_withdrawn"} <= set(row["stripped"])
    assert row["browser"] == "Chrome 124"  # the other consents still hold
    assert email_key not in row["subject_keys"]


def test_two_workers_share_the_consent_table(
    kafka_bootstrap: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    """A withdrawal written by one worker holds for chats on the other worker's partitions."""
    tag = uuid.uuid4().hex[:10]
    app_id = f"cs-streams-test-{tag}"
    first = start_worker(app_id)
    second = start_worker(app_id)
    deadline = time.monotonic() + 60
    while first.log().count("Worker ready") < 2:  # the first has taken part in the rebalance
        assert time.monotonic() < deadline, first.log()[-2000:]
        time.sleep(0.2)

    email = f"shared-{tag}@example.fi"
    out_start = end_positions(kafka_bootstrap, OUTPUTS)
    traffic = Traffic(kafka_bootstrap, tag)
    withdrawal = consent_changed(T0 + timedelta(hours=1), "WITHDRAWN", None, email=email)
    traffic.avro("withdrawal", topics.CONSENT.name, email, "ConsentChanged", withdrawal)
    traffic.flush()
    email_key = (KEYER.key(IdentifierKind.EMAIL, email) or "").encode()
    ledger_start = [tp for tp in out_start if tp.topic == topics.CONSENT_LEDGER.name]
    _consume(kafka_bootstrap, ledger_start, lambda got: any(i.key == email_key for i in got))

    cids = [f"chat-{tag}-{n}" for n in range(1, 13)]  # spread over every chat partition
    for cid in cids:
        traffic.avro(cid, topics.CHAT.name, cid, "ChatConversation", web_chat(cid, visitor=f"v-{cid}", email=email))
    traffic.flush()

    def rows(got: list[Received]) -> dict[str, dict[str, Any]]:
        return {
            i.decoded["conversation_id"]: i.decoded
            for i in got
            if i.schema == "cs.records.ChatConversationRecord" and i.decoded and i.decoded["conversation_id"] in cids
        }

    chat_start = [tp for tp in out_start if tp.topic == topics.CHAT_ENRICHED.name]
    found = rows(_consume(kafka_bootstrap, chat_start, lambda got: len(rows(got)) == len(cids)))
    assert set(found) == set(cids)
    assert all(row["email"] is None and "email:consent_withdrawn" in row["stripped"] for row in found.values())
    per_worker = [
        sum(
            v
            for (name, labels), v in w.metrics().items()
            if name == "records_streams_events_in_total" and ("topic", topics.CHAT.name) in labels
        )
        for w in (first, second)
    ]
    assert all(count > 0 for count in per_worker), per_worker  # both took part


def test_the_worker_writes_no_stack_dump_and_starts_no_debugger_on_the_debug_signals(
    start_worker: Callable[[str], WorkerProcess],
) -> None:
    """mode answers SIGUSR1 with every stack and its local variables (personal data of the
    batch in hand) in the log, and SIGUSR2 with pdb on stdin: the worker only notes them."""
    worker = start_worker(f"cs-streams-signals-{uuid.uuid4().hex[:8]}")
    assert worker.process is not None
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        worker.process.send_signal(sig)
    deadline = time.monotonic() + 30
    while not ("SIGUSR1 ignored" in worker.log() and "SIGUSR2 ignored" in worker.log()):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # anything else the signals set off has had its time to be written
    assert worker.process.poll() is None, worker.log()[-3000:]
    assert "LOCAL VARIABLES" not in worker.log()
    assert "Starting debugger" not in worker.log()
