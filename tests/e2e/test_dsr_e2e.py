"""A data-subject request end to end, as the DPO runs it: `records dsr erase` -> cs.dsr.v1
-> `records worker streams` (verifies, tombstones, forwards on cs.dsr.commands.v1) ->
`records worker sink` (verifies again, deletes in ClickHouse, receipt) -> `records dsr
status --wait` shows COMPLETED, and the embedded store holds nothing of the subject.

On the real topics of the shared broker: both workers run under consumer groups of their
own, committed at the end of their input topics first, so they read only this test's
messages; the subject's identifiers are unique to the run.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import topics
from pipeline.kafka.admin import KafkaAdmin
from pipeline.subject_keys import IdentifierKind
from tests.support.cli import cli_env, run_records
from tests.support.kafka_offsets import start_group_at_end
from tests.support.processes import SinkProcess, WorkerProcess, running_streams
from tests.support.streams_traffic import RECORDING_START, Traffic, call_detail, call_recording, web_chat
from tests.support.worker_secrets import KEYER, write_dpo_keys

pytestmark = pytest.mark.kafka

SINK_INPUTS = (topics.CHAT_ENRICHED, topics.CALL_ENRICHED, topics.CONSENT_LEDGER, topics.DSR_RECEIPTS)
SINK_INPUTS += (topics.DSR_COMMANDS,)
TABLES = ("chat_conversations", "chat_messages", "calls", "call_recordings", "consent_ledger")


@pytest.fixture
def dpo_keys(tmp_path: Path) -> tuple[Path, Path]:
    """The DPO key pair the workers trust (the test signer), as files."""
    return write_dpo_keys(tmp_path)


@pytest.fixture
def streams(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[WorkerProcess]:
    with running_streams(kafka_bootstrap, kafka_admin, tmp_path, "dsr-e2e") as worker:
        yield worker


def _sink_group_at_end(bootstrap: str) -> str:
    """A fresh sink consumer group that starts at the current end of the sink's inputs."""
    group = f"dsr-e2e-sink-{uuid.uuid4().hex[:8]}"
    start_group_at_end(bootstrap, group, SINK_INPUTS)
    return group


def _dpo_env(bootstrap: str, private_key: Path, public_key: Path) -> dict[str, str]:
    """The DPO's CLI on `bootstrap` with the test key pair (not the caller's ClickHouse or passphrase)."""
    return cli_env(
        without=("CLICKHOUSE_URL", "RECORDS_DPO_KEY_PASSPHRASE"),
        KAFKA_BOOTSTRAP=bootstrap,
        RECORDS_DPO_PRIVATE_KEY=str(private_key),
        RECORDS_DPO_PUBLIC_KEYS=str(public_key),
    )


def test_records_dsr_erase_reaches_every_store_and_status_shows_the_receipt(
    kafka_bootstrap: str,
    streams: WorkerProcess,
    dpo_keys: tuple[Path, Path],
    chdb_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private_key, public_key = dpo_keys
    dpo = _dpo_env(kafka_bootstrap, private_key, public_key)
    group = _sink_group_at_end(kafka_bootstrap)
    monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(public_key))  # the sink checks signatures too
    monkeypatch.setenv("RECORDS_COMMAND_PUBLIC_KEYS", str(streams.command_public_key))  # and the stage's
    sink = SinkProcess(chdb_path, kafka_bootstrap, group, "", tmp_path / "sink.log")
    owner = sink.owner()
    try:
        n = secrets.randbelow(9_000_000) + 1_000_000
        email = f"dsr.e2e.{n}@example.fi"
        chat = web_chat(f"dsr-e2e-{n}", visitor=f"visitor-{n}", email=email)
        phone = chat["phone"]
        traffic = Traffic(kafka_bootstrap, f"dsr-e2e-{n}")
        traffic.avro("chat", topics.CHAT.name, chat["conversation_id"], "ChatConversation", chat)
        traffic.avro("call", topics.CALL.name, f"call-{n}", "CallDetailRecord", call_detail(f"call-{n}", phone))
        traffic.flush()
        keys = [KEYER.key(IdentifierKind.EMAIL, email), KEYER.key(IdentifierKind.PHONE, phone)]
        client = sink.client(owner)

        def held(final: str = "") -> dict[str, int]:
            """Rows of the subject per table: stored versions, or rows (FINAL)."""
            return {
                table: int(
                    client.command(
                        f"SELECT count() FROM records.{table} {final} WHERE hasAny(subject_keys, {{k:Array(String)}})",
                        parameters={"k": keys},
                    )
                )
                for table in TABLES
            }

        deadline = time.monotonic() + 90
        while not (held()["chat_conversations"] and held()["calls"]):
            assert time.monotonic() < deadline, f"the subject's rows never arrived: {held()}\n{streams.log()[-2000:]}"
            time.sleep(0.5)
        before = held("FINAL")

        erase = run_records(
            *("dsr", "erase", "--email", email, "--phone", phone, "--reason", "TICKET-E2E"),
            *("--identity-verified-by", "in_person"),
            env=dpo,
            timeout=180,
        )
        assert erase.returncode == 0, erase.stderr
        request_id = erase.stdout.strip().splitlines()[-1]
        status = run_records("dsr", "status", request_id, "--wait", "120", env=dpo, timeout=180)
        assert status.returncode == 0, (
            f"{status.stdout}\n{status.stderr}\n{(tmp_path / 'sink.log').read_text()[-3000:]}"
        )
        receipt = json.loads(status.stdout)

        assert (receipt["request_type"], receipt["status"]) == ("ERASURE", "COMPLETED")
        assert receipt["identity_verified_by"] == "IN_PERSON"  # signed into the request, carried by the receipt
        for table, rows in before.items():
            assert receipt["store_counts"][f"records.{table}"] == rows, table
        assert any(not store.startswith("records.") for store in receipt["store_counts"])  # the Kafka side's
        assert held() == dict.fromkeys(TABLES, 0)
        assert email not in status.stdout and phone not in status.stdout
    finally:
        sink.kill(signal.SIGTERM)


def test_every_other_request_type_through_the_whole_pipeline(
    kafka_bootstrap: str,
    streams: WorkerProcess,
    dpo_keys: tuple[Path, Path],
    chdb_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """restrict -> unrestrict -> object -> unrestrict -> export -> rectify -> withdraw-consent, each
    issued with the CLI and checked in what ClickHouse (or the export file) holds afterwards."""
    private_key, public_key = dpo_keys
    dpo = _dpo_env(kafka_bootstrap, private_key, public_key)
    group = _sink_group_at_end(kafka_bootstrap)
    monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(public_key))
    monkeypatch.setenv("RECORDS_COMMAND_PUBLIC_KEYS", str(streams.command_public_key))
    sink = SinkProcess(chdb_path, kafka_bootstrap, group, "", tmp_path / "sink.log")
    owner = sink.owner()
    try:
        n = secrets.randbelow(9_000_000) + 1_000_000
        email = f"dsr.types.{n}@example.fi"
        cid = f"dsr-types-{n}"
        chat = web_chat(cid, visitor=f"visitor-{n}", email=email)
        traffic = Traffic(kafka_bootstrap, cid)
        traffic.avro("chat", topics.CHAT.name, cid, "ChatConversation", chat)
        traffic.flush()
        client = sink.client(owner)

        def one(sql: str) -> Any:
            return client.query(sql, parameters={"cid": cid}).result_rows[0][0]

        def visible() -> int:
            return int(one("SELECT count() FROM analyst.chat_conversations WHERE conversation_id = {cid:String}"))

        deadline = time.monotonic() + 90
        while visible() == 0:
            assert time.monotonic() < deadline, f"the chat never arrived\n{streams.log()[-2000:]}"
            time.sleep(0.5)

        def run(*args: str) -> dict[str, Any]:
            issued = run_records(
                "dsr",
                *args,
                "--reason",
                "TICKET-TYPES",
                "--identity-verified-by",
                "strong_electronic_id",
                env=dpo,
                timeout=180,
            )
            assert issued.returncode == 0, issued.stderr
            request_id = issued.stdout.strip().splitlines()[-1]
            status = run_records("dsr", "status", request_id, "--wait", "120", env=dpo, timeout=180)
            assert status.returncode == 0, f"{status.stdout}\n{status.stderr}"
            receipt: dict[str, Any] = json.loads(status.stdout)
            assert receipt["status"] == "COMPLETED", receipt
            assert email not in status.stdout
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
        deadline = time.monotonic() + 60
        while one("SELECT name FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}") is not None:
            assert time.monotonic() < deadline, "contact details were not cleared after the withdrawal"
            time.sleep(0.5)
        stripped = one("SELECT stripped FROM records.chat_conversations FINAL WHERE conversation_id = {cid:String}")
        assert "name:consent_withdrawn" in stripped
    finally:
        sink.kill(signal.SIGTERM)


def test_a_rectified_phone_number_reaches_the_calls_and_recordings(
    kafka_bootstrap: str,
    streams: WorkerProcess,
    dpo_keys: tuple[Path, Path],
    chdb_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`records dsr rectify --field phone` rewrites the chat's phone and the caller_number of
    the person's calls and recordings (notice §5 lists the caller's number), and the
    corrected number finds them all afterwards."""
    private_key, public_key = dpo_keys
    dpo = _dpo_env(kafka_bootstrap, private_key, public_key)
    group = _sink_group_at_end(kafka_bootstrap)
    monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(public_key))
    monkeypatch.setenv("RECORDS_COMMAND_PUBLIC_KEYS", str(streams.command_public_key))
    sink = SinkProcess(chdb_path, kafka_bootstrap, group, "", tmp_path / "sink.log")
    owner = sink.owner()
    try:
        n = secrets.randbelow(9_000_000) + 1_000_000
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
        client = sink.client(owner)
        where = {
            "chat_conversations": ("phone", f"conversation_id = '{cid}'"),
            "calls": ("caller_number", f"call_id = '{call_id}'"),
            "call_recordings": ("caller_number", f"recording_id = '{recording_id}'"),
        }

        def numbers() -> dict[str, list[str]]:
            return {
                table: [
                    row[0]
                    for row in client.query(f"SELECT {column} FROM records.{table} FINAL WHERE {cond}").result_rows
                ]
                for table, (column, cond) in where.items()
            }

        deadline = time.monotonic() + 90
        while not all(numbers().values()):
            assert time.monotonic() < deadline, (
                f"the subject's rows never arrived: {numbers()}\n{streams.log()[-2000:]}"
            )
            time.sleep(0.5)
        assert numbers() == {table: [phone] for table in where}

        corrected = f"+35850{n}"
        assert corrected != phone
        issued = run_records(
            *("dsr", "rectify", "--phone", phone, "--field", "phone", "--value", corrected),
            *("--reason", "TICKET-RECTIFY-PHONE", "--identity-verified-by", "other"),
            env=dpo,
            timeout=180,
        )
        assert issued.returncode == 0, issued.stderr
        request_id = issued.stdout.strip().splitlines()[-1]
        status = run_records("dsr", "status", request_id, "--wait", "120", env=dpo, timeout=180)
        assert status.returncode == 0, (
            f"{status.stdout}\n{status.stderr}\n{(tmp_path / 'sink.log').read_text()[-3000:]}"
        )
        receipt = json.loads(status.stdout)
        assert receipt["status"] == "COMPLETED", receipt
        for table in where:
            assert receipt["store_counts"][f"records.{table}"] == 1, table

        assert numbers() == {table: [corrected] for table in where}
        versions = client.query(
            "SELECT count() FROM records.calls WHERE call_id = {c:String} AND caller_number = {p:String}",
            parameters={"c": call_id, "p": phone},
        ).result_rows[0][0]
        assert versions == 0, "the uncorrected version of the call is merged away"
        found = run_records(
            *("dsr", "export", "--phone", corrected, "--reason", "TICKET-RECTIFY-PHONE"),
            *("--identity-verified-by", "in_person"),
            env=dpo,
            timeout=180,
        )
        assert found.returncode == 0, found.stderr
        export_id = found.stdout.strip().splitlines()[-1]
        export = run_records("dsr", "status", export_id, "--wait", "120", env=dpo, timeout=180)
        counts = json.loads(export.stdout)["store_counts"]
        assert (counts["records.calls"], counts["records.call_recordings"]) == (1, 1), "the corrected number finds them"
        assert phone not in status.stdout and corrected not in status.stdout
    finally:
        sink.kill(signal.SIGTERM)
