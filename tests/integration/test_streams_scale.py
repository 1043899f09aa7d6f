"""Streams workers scale by partitions: two `records worker streams` processes in one
consumer group (one faust app id) on the real local broker split the raw topics'
partitions between them, and every raw event comes out exactly once.

The group is pre-committed at the end of the raw topics, so the workers read only what
this test produces; the outputs are read from their end offsets taken before producing.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from pipeline import topics
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import AvroDeserializer, AvroSerializer
from tests.support.kafka_offsets import end_positions, start_group_at_end
from tests.support.processes import CHANGELOGS, STREAMS_INPUTS, WorkerProcess

pytestmark = pytest.mark.kafka

RAW = (topics.CHAT, topics.CALL, topics.CONSENT)
# What each raw event becomes on the enriched topics: (output topic, row schema).
ROW_OF = {
    topics.CHAT.name: (topics.CHAT_ENRICHED.name, "cs.records.ChatConversationRecord"),
    topics.CALL.name: (topics.CALL_ENRICHED.name, "cs.records.CallRecord"),
    topics.CONSENT.name: (topics.CONSENT_LEDGER.name, "cs.records.ConsentLedgerRecord"),
}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EVENTS_PER_TOPIC = 30


def _events_in(worker: WorkerProcess) -> dict[str, float]:
    """records_streams_events_in_total per raw topic, from the worker's /metrics."""
    out: Counter[str] = Counter()
    for (name, labels), value in worker.metrics().items():
        if name == "records_streams_events_in_total":
            out[dict(labels)["topic"]] += value
    return dict(out)


def _raw_assignment(admin: AdminClient, group: str) -> list[set[tuple[str, int]]] | None:
    """Per member of `group`, the raw-topic partitions it holds; None until the group is stable."""
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    if description.state != ConsumerGroupState.STABLE:
        return None
    raw = {spec.name for spec in RAW}
    return [
        {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions if tp.topic in raw}
        for member in description.members
    ]


def _envelope(moment: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": moment,
        "produced_at": moment,
        "source_system": "scale-test",
        "schema_version": 1,
    }


def _chat(cid: str) -> dict[str, Any]:
    fields = AvroSerializer("ChatConversation").schema.field_names
    return dict.fromkeys(fields) | {
        **_envelope(T0),
        "conversation_id": cid,
        "channel": "WEB",
        "started_at": T0,
        "contact_consent": False,
        "cookie_consent": {"functional": False, "analytics": False, "marketing": False},
        "geolocation_permission": False,
        "messages": [],
    }


def _cdr(call_id: str, n: int) -> dict[str, Any]:
    fields = AvroSerializer("CallDetailRecord").schema.field_names
    return dict.fromkeys(fields) | {
        **_envelope(T0),
        "call_id": call_id,
        "direction": "INBOUND",
        "caller_number": f"+35840{n:07d}",
        "service_number": "+358201234567",
        "started_at": T0,
        "ended_at": T0 + timedelta(minutes=3),
    }


def _consent(email: str) -> dict[str, Any]:
    subject = dict.fromkeys(("email", "phone", "person_number", "app_username", "visitor_id")) | {"email": email}
    return {
        **_envelope(T0),
        "subject": subject,
        "purpose": "CONTACT_DETAILS",
        "status": "GIVEN",
        "channel": "WEB_CHAT",
        "evidence": None,
    }


@pytest.fixture
def scale_group(kafka_bootstrap: str, kafka_admin: KafkaAdmin) -> Iterator[str]:
    """A fresh faust app id whose group starts at the end of the raw topics; its internal
    topics are deleted afterwards."""
    kafka_admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    app_id = f"cs-streams-scale-{uuid.uuid4().hex[:10]}"
    start_group_at_end(kafka_bootstrap, app_id, STREAMS_INPUTS)
    yield app_id
    kafka_admin.delete_topics([f"{app_id}-{suffix}" for suffix in CHANGELOGS])


def test_two_streams_workers_share_the_raw_partitions_and_process_each_event_once(
    kafka_bootstrap: str, scale_group: str, tmp_path: Path
) -> None:
    workers = [WorkerProcess(scale_group, kafka_bootstrap, tmp_path / f"w{n}") for n in (1, 2)]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        for worker in workers:
            worker.start()  # the second joins the group of the first: a rebalance shares the partitions

        # 1. The group is stable with two members that split every raw partition between them.
        every = {(spec.name, p) for spec in RAW for p in range(spec.partitions)}
        deadline = time.monotonic() + 90
        while True:
            shares = _raw_assignment(admin, scale_group)
            if shares is not None and len(shares) == 2 and all(shares) and set().union(*shares) == every:
                break
            assert time.monotonic() < deadline, (shares, workers[0].log()[-2000:])
            time.sleep(0.5)
        assert not shares[0] & shares[1], shares  # no partition is held twice

        # 2. Events on every partition of every raw topic.
        out_start = end_positions(kafka_bootstrap, (topics.CHAT_ENRICHED, topics.CALL_ENRICHED, topics.CONSENT_LEDGER))
        reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"reader-{uuid.uuid4().hex}"})
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        sent: dict[str, str] = {}  # raw event id -> raw topic
        landed: set[tuple[str, int]] = set()

        def send(topic: str, key: str, schema: str, value: dict[str, Any]) -> None:
            sent[value["event_id"]] = topic
            producer.produce(
                topic,
                key=key.encode(),
                value=AvroSerializer(schema)(value),
                on_delivery=lambda err, msg: landed.add((msg.topic(), msg.partition())) if err is None else None,
            )

        tag = scale_group.rsplit("-", 1)[-1]
        for n in range(EVENTS_PER_TOPIC):
            send(topics.CHAT.name, f"chat-{tag}-{n}", "ChatConversation", _chat(f"chat-{tag}-{n}"))
            send(topics.CALL.name, f"call-{tag}-{n}", "CallDetailRecord", _cdr(f"call-{tag}-{n}", n))
            email = f"scale-{tag}-{n}@example.fi"
            send(topics.CONSENT.name, email, "ConsentChanged", _consent(email))
        assert producer.flush(30) == 0
        assert landed == every, sorted(every - landed)

        # 3. Each raw event's row comes out exactly once (rows counted by the raw event id).
        reader.assign(out_start)
        deserialize = AvroDeserializer()
        seen: Counter[str] = Counter()
        wanted = {name for name, _ in ROW_OF.values()}
        deadline = time.monotonic() + 90
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            for message in reader.consume(500, timeout=0.5):
                if message.error() or message.topic() not in wanted or not message.value():
                    continue
                decoded = deserialize(message.value())
                source = str(decoded.value.get("source_event_id"))
                if source in sent and ROW_OF[sent[source]] == (message.topic(), decoded.schema_name):
                    seen[source] += 1
            if quiet_until is None and set(seen) == set(sent):
                quiet_until = time.monotonic() + 5  # keep reading: a duplicate would come now
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
        reader.close()
        assert set(seen) == set(sent), f"{len(set(sent) - set(seen))} of {len(sent)} events never came out"
        assert [event for event, count in seen.items() if count != 1] == []

        # 4. Both workers did part of the work, and together exactly all of it.
        per_worker = [_events_in(worker) for worker in workers]
        for spec in RAW:
            counts = [counts.get(spec.name, 0.0) for counts in per_worker]
            assert sum(counts) == EVENTS_PER_TOPIC, (spec.name, counts)
        assert all(sum(counts.values()) > 0 for counts in per_worker), per_worker
    finally:
        for worker in workers:
            worker.stop()
