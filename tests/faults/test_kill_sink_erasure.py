"""`kill -9` of the sink during an erasure's mutations (between two tables, or after the
last one before the receipt), then a restart: the erasure completes exactly once, its
receipt reports the rows the subject had in every table (also in the tables whose
mutation ran before the kill), nothing of the subject is left, and the reconciliation is
exact.

Deterministic: the first sink runs with RECORDS_FAULT_ERASURE_PAUSE_S (a fault-test hook,
off in production: sink/erasure_progress.py), so it stops after the first table's
mutation and says so in its log; the test kills it there."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Message

from pipeline import topics
from pipeline.dsr import RequestType
from pipeline.subject_keys import IdentifierKind
from tests.support.dsr_requests import executed, receipts, send_request, store_client, subject_rows
from tests.support.fault_steps import wait_caught_up
from tests.support.kafka_reads import consume_until
from tests.support.pipeline_harness import (
    SINK_INPUTS,
    Pipeline,
    Process,
    caught_up,
    end_offsets,
    produce,
    reconcile_since,
    simulated,
    sink_process,
    wait_sink_owner,
    wait_until,
)
from tests.support.streams_traffic import Traffic, call_detail, consent_changed, web_chat

BACKGROUND = 300
PAUSE_S = 600  # far longer than the test waits: the kill always comes first
BETWEEN_TABLES, AFTER_LAST_TABLE, RECEIPT_RECORDED = "between-two-tables", "after-the-last-table", "receipt-recorded"


def _paused_sink(line: Pipeline) -> Process:
    """A sink of `line` that pauses after each table of an erasure."""
    process = sink_process(line.bootstrap, line.sink_group, line.chdb_path, line.work, line.keys)
    process.env["RECORDS_FAULT_ERASURE_PAUSE_S"] = str(PAUSE_S)
    line.started.append(process)
    return process.start()


def _key(message: Message) -> bytes | None:
    return message.key()


@pytest.mark.parametrize("where", [BETWEEN_TABLES, AFTER_LAST_TABLE, RECEIPT_RECORDED])
def test_kill_9_of_the_sink_during_an_erasure(pipeline: Pipeline, where: str) -> None:
    """BETWEEN_TABLES: the subject has rows in four tables, the kill comes after the first
    mutation; AFTER_LAST_TABLE: rows in one table only, the kill comes after its mutation,
    before the receipt (on restart no table holds a row of the subject); RECEIPT_RECORDED:
    no rows (no mutation), the kill comes after the receipt was recorded in
    records.dsr_executed and before it was produced (on restart it is produced again)."""
    sink = _paused_sink(pipeline)
    wait_sink_owner(sink, pipeline.chdb_path)
    streams = pipeline.streams()
    streams.wait_log("Worker ready", 120)
    since = datetime.now(UTC) - timedelta(seconds=1)

    n = secrets.randbelow(9_000_000) + 1_000_000
    email, visitor = f"erase.kill.{n}@example.fi", f"visitor-{n}"
    chat = web_chat(f"erase-kill-{n}", visitor=visitor, email=email)
    phone = chat["phone"]
    traffic = Traffic(pipeline.bootstrap, f"erase-kill-{n}")
    if where != RECEIPT_RECORDED:
        traffic.avro("call", topics.CALL.name, f"call-{n}", "CallDetailRecord", call_detail(f"call-{n}", phone))
    if where == BETWEEN_TABLES:
        traffic.avro("chat", topics.CHAT.name, chat["conversation_id"], "ChatConversation", chat)
        consent = consent_changed(chat["started_at"], "GIVEN", "contact-v3", email=email, visitor_id=visitor)
        traffic.avro("consent", topics.CONSENT.name, email, "ConsentChanged", consent)
    traffic.flush()
    raw_events = BACKGROUND + len(traffic.sent)
    produce(pipeline.bootstrap, pipeline.keys, simulated(BACKGROUND, seed=61))
    keyer = pipeline.keys.keyer
    keys = [
        keyer.key(IdentifierKind.EMAIL, email),
        keyer.key(IdentifierKind.PHONE, phone),
        keyer.key(IdentifierKind.VISITOR_ID, visitor),
    ]
    wait_caught_up(pipeline)
    with store_client(pipeline.chdb_path) as client:
        before = subject_rows(client, keys)
    held = [table for table, rows in before.items() if rows]
    assert {BETWEEN_TABLES: len(held) >= 3, AFTER_LAST_TABLE: held == ["calls"]}.get(where, not held), before

    receipts_from = end_offsets(pipeline.bootstrap, (topics.DSR_RECEIPTS,))
    request_id = send_request(
        pipeline.bootstrap, pipeline.keys, RequestType.ERASURE, email=email, phone=phone, visitor_id=visitor
    )
    sink.wait_log("erasure paused", 120)
    paused = re.search(r"erasure paused \d+ s (after mutation 1 of \d+|before producing)", sink.log()[sink.log_start :])
    assert paused is not None, "no pause"
    expected = f"after mutation 1 of {len(held)}" if held else "before producing"
    assert paused.group(1) == expected, paused.group(0)
    sink.kill()
    killed_at = time.monotonic()

    restarted = pipeline.sink()
    restarted_at = time.monotonic()
    wait_sink_owner(restarted, pipeline.chdb_path)
    with store_client(pipeline.chdb_path) as client:
        wait_until(lambda: bool(executed(client, request_id)), 120, "the erasure's receipt")
        wait_until(lambda: bool(receipts(client, request_id)), 120, "the receipt stored from its topic")
        receipt_s = time.monotonic() - restarted_at
        wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.sink_group, SINK_INPUTS), 120, "sink caught up")
        recovered_s = time.monotonic() - killed_at
        once = executed(client, request_id)
        stored = receipts(client, request_id)
        after = subject_rows(client, keys, final="")
    receipts_to = end_offsets(pipeline.bootstrap, (topics.DSR_RECEIPTS,))
    produced = sum(end.offset - begin.offset for begin, end in zip(receipts_from, receipts_to, strict=True))
    on_topic = consume_until(pipeline.bootstrap, receipts_from, lambda got: len(got) >= produced, _key)

    assert [row["status"] for row in once] == ["COMPLETED"], once
    assert [row["status"] for row in stored] == ["COMPLETED"], stored
    assert on_topic.count(request_id.encode()) == 1, "one receipt produced, once"
    for table, rows in before.items():
        assert once[0]["store_counts"][f"records.{table}"] == rows, (table, once[0]["store_counts"])
        assert stored[0]["store_counts"][f"records.{table}"] == rows, (table, stored[0]["store_counts"])
    assert after == dict.fromkeys(after, 0), after
    again = restarted.log()[restarted.log_start :]
    if held:
        assert again.count("erasure resumed") == 1
    else:  # executed once, before the kill; its stored receipt produced now
        assert "erasure resumed" not in again and "its receipt is produced again" in again

    result = reconcile_since(pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since)
    print(
        f"FAULT sink kill -9 during an erasure ({where}: killed {paused.group(1)}): receipt on its topic "
        f"{receipt_s:.1f} s after the restart, caught up {recovered_s:.1f} s after the kill; "
        f"{sum(before.values())} rows of the subject reported and erased; {result.summary()}"
    )
    assert len(result.events) == raw_events
    assert result.missing == () and result.duplicates == (), result.to_dict()
    assert result.counts["erased"] == len(traffic.sent), result.counts
