"""Rectification writes no personal value into the engine's mutation log (issue 11,
finding 4), on the real engine (chDB).

An `ALTER TABLE ... UPDATE email = '<value>'` stays in system.mutations and in the table's
mutation_N.txt next to the subject keys long after the row changed (and after an erasure).
Now the corrected row versions are inserted with the value as a query parameter and the
old versions merged away: the value is in the rows, and nowhere in the mutation log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.serde import Serde
from sink.dsr_commands import DsrExecutor
from sink.dsr_execution import COMPLETED
from sink.sink_process import apply_schema
from tests.support.sink_store import model, rectification_command, store
from tests.support.stored_records import record

ANNA = ["a" * 64, "b" * 64]
BERT = ["c" * 64]
NEW_KEY = "d" * 64
CORRECTED = "Anna.Korhonen@Example.FI"


def _mutation_text(client: Client, chdb_path: Path) -> str:
    commands = [str(r[0]) for r in client.query("SELECT command FROM system.mutations").result_rows]
    files = [p.read_text(encoding="utf-8", errors="replace") for p in chdb_path.rglob("mutation_*.txt")]
    return "\n".join(commands + files).lower()


def test_a_rectified_email_is_stored_but_not_in_any_mutation(
    ch_client: Client, chdb_settings: Settings, chdb_path: Path
) -> None:
    apply_schema(ch_client)
    chats = model("chat_conversations")
    ingested = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    rows = [
        record(chats.schema, 1, subject_keys=ANNA, ingested_at=ingested, email="old-anna@example.fi"),
        record(chats.schema, 2, subject_keys=ANNA[1:], ingested_at=ingested, email=None),
        record(chats.schema, 3, subject_keys=BERT, ingested_at=ingested, email="bert@example.fi"),
    ]
    store(ch_client, chats, rows)
    # Mutations that ran before (an erasure of someone else) stay in the log too: keep one there.
    ch_client.command(
        "ALTER TABLE records.chat_conversations DELETE WHERE event_id = 'nobody' SETTINGS mutations_sync = 2"
    )
    command = rectification_command(ANNA, ingested, "email", CORRECTED, NEW_KEY)

    outcome = DsrExecutor(chdb_settings, serde=Serde())._execute(ch_client, command)

    assert outcome.status == COMPLETED and outcome.store_counts["records.chat_conversations"] == 1
    stored = ch_client.query(
        "SELECT event_id, email, has(subject_keys, {k:String}) FROM records.chat_conversations FINAL ORDER BY event_id",
        parameters={"k": NEW_KEY},
    ).result_rows
    assert stored == [
        ("event_id-1", "anna.korhonen@example.fi", True),
        ("event_id-2", None, False),  # no email stored: none is added
        ("event_id-3", "bert@example.fi", False),
    ]
    # The uncorrected version is gone from the parts, not only hidden by FINAL.
    physical = ch_client.query(
        "SELECT event_id, email FROM records.chat_conversations WHERE event_id = 'event_id-1'"
    ).result_rows
    assert physical == [("event_id-1", "anna.korhonen@example.fi")]
    log = _mutation_text(ch_client, chdb_path)
    assert "delete where event_id = 'nobody'" in log  # the log is there and read
    for personal in ("anna.korhonen", "old-anna", NEW_KEY, *ANNA):
        assert personal not in log, personal
