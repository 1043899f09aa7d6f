"""A data-subject request end to end, as the DPO runs it: `records dsr erase` -> cs.dsr.v1
-> `records worker streams` (verifies, tombstones, forwards on cs.dsr.commands.v1) ->
`records worker sink` (verifies again, deletes in ClickHouse, receipt) -> `records dsr
status --wait` shows COMPLETED, and the embedded store holds nothing of the subject.

On the real topics of the shared broker: both workers run under consumer groups of their
own, committed at the end of their input topics first (tests/support/dpo_pipeline.py), so
they read only this test's messages; the subject's identifiers are unique to the run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import topics
from pipeline.subject_keys import IdentifierKind
from tests.support.dpo_pipeline import DpoPipeline, unique_number, wait_for
from tests.support.streams_traffic import RECORDING_START, Traffic, call_detail, call_recording, web_chat
from tests.support.worker_secrets import KEYER

pytestmark = pytest.mark.kafka

TABLES = ("chat_conversations", "chat_messages", "calls", "call_recordings", "consent_ledger")


def test_records_dsr_erase_reaches_every_store_and_status_shows_the_receipt(
    kafka_bootstrap: str, dpo_line: DpoPipeline
) -> None:
    n = unique_number()
    email = f"dsr.e2e.{n}@example.fi"
    chat = web_chat(f"dsr-e2e-{n}", visitor=f"visitor-{n}", email=email)
    phone = chat["phone"]
    traffic = Traffic(kafka_bootstrap, f"dsr-e2e-{n}")
    traffic.avro("chat", topics.CHAT.name, chat["conversation_id"], "ChatConversation", chat)
    traffic.avro("call", topics.CALL.name, f"call-{n}", "CallDetailRecord", call_detail(f"call-{n}", phone))
    traffic.flush()
    keys = [KEYER.key(IdentifierKind.EMAIL, email), KEYER.key(IdentifierKind.PHONE, phone)]

    def held(final: str = "") -> dict[str, int]:
        """Rows of the subject per table: stored versions, or rows (FINAL)."""
        return {
            table: int(
                dpo_line.client.command(
                    f"SELECT count() FROM records.{table} {final} WHERE hasAny(subject_keys, {{k:Array(String)}})",
                    parameters={"k": keys},
                )
            )
            for table in TABLES
        }

    wait_for(
        lambda: held()["chat_conversations"] and held()["calls"],
        90,
        lambda: f"the subject's rows never arrived: {held()}\n{dpo_line.streams.log()[-2000:]}",
    )
    before = held("FINAL")

    erase = dpo_line.issue("erase", "--email", email, "--phone", phone, reason="TICKET-E2E", verified_by="in_person")
    receipt = erase.receipt

    assert (receipt["request_type"], receipt["status"]) == ("ERASURE", "COMPLETED")
    assert receipt["identity_verified_by"] == "IN_PERSON"  # signed into the request, carried by the receipt
    for table, rows in before.items():
        assert receipt["store_counts"][f"records.{table}"] == rows, table
    assert any(not store.startswith("records.") for store in receipt["store_counts"])  # the Kafka side's
    assert held() == dict.fromkeys(TABLES, 0)
    assert email not in erase.status.stdout and phone not in erase.status.stdout


def test_every_other_request_type_through_the_whole_pipeline(
    kafka_bootstrap: str, dpo_line: DpoPipeline, chdb_path: Path
) -> None:
    """restrict -> unrestrict -> object -> unrestrict -> export -> rectify -> withdraw-consent, each
    issued with the CLI and checked in what ClickHouse (or the export file) holds afterwards."""
    n = unique_number()
    email = f"dsr.types.{n}@example.fi"
    cid = f"dsr-types-{n}"
    chat = web_chat(cid, visitor=f"visitor-{n}", email=email)
    traffic = Traffic(kafka_bootstrap, cid)
    traffic.avro("chat", topics.CHAT.name, cid, "ChatConversation", chat)
    traffic.flush()

    def one(sql: str) -> Any:
        return dpo_line.client.query(sql, parameters={"cid": cid}).result_rows[0][0]

    def visible() -> int:
        return int(one("SELECT count() FROM analyst.chat_conversations WHERE conversation_id = {cid:String}"))

    wait_for(visible, 90, lambda: f"the chat never arrived\n{dpo_line.streams.log()[-2000:]}")

    def run(*args: str) -> dict[str, Any]:
        issued = dpo_line.issue(*args, reason="TICKET-TYPES", verified_by="strong_electronic_id")
        receipt = issued.receipt
        assert receipt["status"] == "COMPLETED", receipt
        assert email not in issued.status.stdout
        return receipt

    run("restrict", "--email", email)
    assert visible() == 0, "a restricted subject is hidden from analysts"
    stored_rows = "SELECT count() FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}"
    assert int(one(stored_rows)) == 1, "restricted data is kept"
    run("unrestrict", "--email", email)
    assert visible() == 1
    run("object", "--visitor-id", f"visitor-{n}")
    assert visible() == 0, "an objecting subject is hidden from analysts"
    run("unrestrict", "--visitor-id", f"visitor-{n}")
    assert visible() == 1

    export = run("export", "--email", email)
    assert export["store_counts"]["records.chat_conversations"] == 1
    files = list((chdb_path.parent / "data" / "exports").glob(f"{export['request_id']}.json"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    exported = files[0].read_text()
    assert email in exported and cid in exported

    corrected = f"corrected.{n}@example.fi"
    run("rectify", "--email", email, "--field", "email", "--value", corrected)
    stored = one("SELECT email FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}")
    assert stored == corrected
    found = run("export", "--email", corrected)
    assert found["store_counts"]["records.chat_conversations"] == 1, "the corrected identifier finds the rows"

    run("withdraw-consent", "--email", corrected, "--purpose", "CONTACT_DETAILS")
    wait_for(
        lambda: one("SELECT name FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}") is None,
        60,
        lambda: "contact details were not cleared after the withdrawal",
    )
    stripped = one("SELECT stripped FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}")
    assert "name:consent_withdrawn" in stripped


def test_a_rectified_phone_number_reaches_the_calls_and_recordings(kafka_bootstrap: str, dpo_line: DpoPipeline) -> None:
    """`records dsr rectify --field phone` rewrites the chat's phone and the caller_number of
    the person's calls and recordings (notice §5 lists the caller's number), and the
    corrected number finds them all afterwards."""
    n = unique_number()
    cid, call_id, recording_id = f"rectify-phone-{n}", f"rectify-call-{n}", f"rectify-rec-{n}"
    chat = web_chat(cid, visitor=f"visitor-{n}", email=f"rectify.phone.{n}@example.fi")
    phone = chat["phone"]
    recording = call_recording(recording_id, call_id, RECORDING_START - timedelta(seconds=5))
    recording["caller_number"] = phone
    traffic = Traffic(kafka_bootstrap, cid)
    traffic.avro("chat", topics.CHAT.name, cid, "ChatConversation", chat)
    traffic.avro("call", topics.CALL.name, call_id, "CallDetailRecord", call_detail(call_id, phone))
    traffic.avro("recording", topics.CALL.name, call_id, "CallRecording", recording)
    traffic.flush()
    where = {
        "chat_conversations": ("phone", f"conversation_id = '{cid}'"),
        "calls": ("caller_number", f"call_id = '{call_id}'"),
        "call_recordings": ("caller_number", f"recording_id = '{recording_id}'"),
    }

    def numbers() -> dict[str, list[str]]:
        return {
            table: [
                row[0]
                for row in dpo_line.client.query(f"SELECT {column} FROM records.{table} FINAL WHERE {cond}").result_rows
            ]
            for table, (column, cond) in where.items()
        }

    wait_for(
        lambda: all(numbers().values()),
        90,
        lambda: f"the subject's rows never arrived: {numbers()}\n{dpo_line.streams.log()[-2000:]}",
    )
    assert numbers() == {table: [phone] for table in where}

    corrected = f"+35850{n}"
    assert corrected != phone
    rectified = dpo_line.issue(
        *("rectify", "--phone", phone, "--field", "phone", "--value", corrected),
        reason="TICKET-RECTIFY-PHONE",
        verified_by="other",
    )
    receipt = rectified.receipt
    assert receipt["status"] == "COMPLETED", receipt
    for table in where:
        assert receipt["store_counts"][f"records.{table}"] == 1, table

    assert numbers() == {table: [corrected] for table in where}
    versions = dpo_line.client.query(
        "SELECT count() FROM records.calls WHERE call_id = {c:String} AND caller_number = {p:String}",
        parameters={"c": call_id, "p": phone},
    ).result_rows[0][0]
    assert versions == 0, "the uncorrected version of the call is merged away"
    found = dpo_line.issue("export", "--phone", corrected, reason="TICKET-RECTIFY-PHONE", verified_by="in_person")
    counts = found.receipt["store_counts"]
    assert (counts["records.calls"], counts["records.call_recordings"]) == (1, 1), "the corrected number finds them"
    assert phone not in rectified.status.stdout and corrected not in rectified.status.stdout
