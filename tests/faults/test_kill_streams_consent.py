"""`kill -9` of the streams worker mid-stream, then a restart: the consent table (a faust
global table whose changelog is its state) comes back with the consent changes processed
before the kill, and the restarted worker enforces them on the events that follow.

The consent changes are processed and their offsets committed before the kill, so the
restarted worker does not read them again: only the restored table can know them. Two
subjects: Anna withdrew contact consent after her chat took place (the chat, arriving
after the restart, loses its contact fields as `consent_withdrawn` in the streams stage
itself: the enriched record says so); Bert withdrew before his chat (a fresh consent
came with the chat: it keeps them). The reconciliation is exact."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from datetime import timedelta
from typing import Any

from confluent_kafka import Message

from pipeline import topics
from pipeline.serde import Serde
from tests.support.fault_steps import start_workers, wait_caught_up
from tests.support.kafka_reads import consume_until
from tests.support.pipeline_harness import (
    Pipeline,
    caught_up,
    end_offsets,
    produce,
    reconcile_since,
    simulated,
    wait_until,
)
from tests.support.streams_traffic import T0, Traffic, consent_changed, web_chat

BACKGROUND = 2000


def test_the_consent_table_is_restored_after_a_kill_9_of_the_streams_worker(pipeline: Pipeline) -> None:
    workers = start_workers(pipeline)
    streams, since = workers.streams, workers.since

    n = secrets.randbelow(9_000_000) + 1_000_000
    anna, bert = f"anna.{n}@example.fi", f"bert.{n}@example.fi"
    traffic = Traffic(pipeline.bootstrap, f"consent-kill-{n}")
    withdrawn_after = consent_changed(T0 + timedelta(hours=1), "WITHDRAWN", None, email=anna)
    withdrawn_before = consent_changed(T0 - timedelta(hours=1), "WITHDRAWN", None, email=bert)
    traffic.avro("anna-withdrawal", topics.CONSENT.name, anna, "ConsentChanged", withdrawn_after)
    traffic.avro("bert-withdrawal", topics.CONSENT.name, bert, "ConsentChanged", withdrawn_before)
    traffic.flush()
    # Processed and committed: the restarted worker will not read them again.
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.app_id, (topics.CONSENT,)), 120, "consents processed")
    wait_until(lambda: streams.metric("records_streams_consent_updates_total") >= 2, 60, "consent table written")

    events = simulated(BACKGROUND, seed=71)
    sent = threading.Event()
    producer = threading.Thread(
        target=lambda: (produce(pipeline.bootstrap, pipeline.keys, events, chunk=50, pause_s=0.15), sent.set()),
        daemon=True,
    )
    producer.start()
    wait_until(lambda: streams.metric("records_streams_events_in_total") >= 300, 120, "streams stalled")
    assert streams.kill(signal.SIGKILL) == -signal.SIGKILL
    assert not sent.is_set(), "the kill was not mid-stream"
    killed_at = time.monotonic()
    restarted = pipeline.streams()
    restarted.wait_log("Worker ready", 120)
    ready_s = time.monotonic() - killed_at

    start = end_offsets(pipeline.bootstrap, (topics.CHAT_ENRICHED,))
    chats = {
        anna: web_chat(f"consent-kill-a-{n}", visitor=f"visitor-a-{n}", email=anna, started=T0),
        bert: web_chat(f"consent-kill-b-{n}", visitor=f"visitor-b-{n}", email=bert, started=T0),
    }
    for email, chat in chats.items():
        traffic.avro(f"chat-{email}", topics.CHAT.name, chat["conversation_id"], "ChatConversation", chat)
    traffic.flush()
    wanted = {chat["conversation_id"] for chat in chats.values()}
    decode = Serde().decode

    def conversation(message: Message) -> dict[str, Any]:
        """The conversation row of an enriched message ({} for its messages and tombstones)."""
        value = message.value()
        decoded = decode(value) if value else None
        return decoded.value if decoded is not None and decoded.schema_name.endswith("ChatConversationRecord") else {}

    enriched = consume_until(
        pipeline.bootstrap,
        start,
        lambda got: wanted <= {v.get("conversation_id") for v in got},
        conversation,
        timeout=120,
    )
    by_id = {v.get("conversation_id"): v for v in enriched if v.get("conversation_id") in wanted}
    enforced_s = time.monotonic() - killed_at
    anna_row, bert_row = by_id[chats[anna]["conversation_id"]], by_id[chats[bert]["conversation_id"]]
    assert anna_row["email"] is None and "email:consent_withdrawn" in anna_row["stripped"], anna_row["stripped"]
    assert anna_row["phone"] is None and "phone:consent_withdrawn" in anna_row["stripped"]
    assert bert_row["email"] == bert and not any(s.endswith(":consent_withdrawn") for s in bert_row["stripped"])

    producer.join(120)
    assert sent.is_set()
    wait_caught_up(pipeline)
    recovered_s = time.monotonic() - killed_at
    result = reconcile_since(pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since)
    print(
        f"FAULT streams kill -9 (consent table): ready again {ready_s:.1f} s, withdrawals enforced "
        f"{enforced_s:.1f} s, caught up {recovered_s:.1f} s after the kill; {result.summary()}"
    )
    assert len(result.events) == BACKGROUND + 4
    assert result.missing == () and result.duplicates == (), result.to_dict()
