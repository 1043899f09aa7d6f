"""End to end, as a user runs it: `records simulate` -> `records worker streams` ->
`records worker sink` -> ClickHouse (embedded), on the real topics of the shared broker.

The workers run under their own consumer groups, committed at the end of their input
topics first, so they read only what comes after; other tests may write to the same
topics, so every count is taken over the ids of this run's events. The simulation is
deterministic for (seed, now): the test regenerates the same events to know what was
produced, and every row that is not stored is explained by the dead-letter or the
quarantine topic. Stripped fields must be empty in the stored row.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline import topics
from pipeline.clickhouse_ddl import ANALYST_DB
from pipeline.dead_letter import parse_headers
from pipeline.dsr import generate_keypair
from pipeline.kafka.admin import KafkaAdmin
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, SerdeError
from pipeline.topic_access import RAW_TOPICS, SINK
from records.child_process import terminate
from records.simulate import SimulationConfig, generate
from tests.support.cli import RECORDS, cli_env, run_records
from tests.support.kafka_offsets import end_positions, start_group_at_end
from tests.support.processes import SinkProcess
from tests.support.stored_records import SUBJECT_TABLES

EVENTS = 1500
NS = "cs.records."
SPAN_DAYS = 60  # inside every retention limit: nothing expires on the way
PEPPER_HEX = secrets.token_hex(32)


def _env(bootstrap: str, data_dir: Path) -> dict[str, str]:
    return cli_env(
        without=("CLICKHOUSE_URL", "RECORDS_PEPPER_FILE"),
        KAFKA_BOOTSTRAP=bootstrap,
        RECORDS_DATA_DIR=str(data_dir),
        RECORDS_PEPPER=PEPPER_HEX,
        RECORDS_STREAMS_METRICS_PORT="0",
        RECORDS_SINK_METRICS_PORT="0",
    )


def _read_from(bootstrap: str, starts: list[TopicPartition], seconds: float) -> list[Any]:
    """Everything in the given partitions from the given offsets, as far as it goes now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}"})
    consumer.assign(starts)
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    idle = 0
    try:
        while time.monotonic() < deadline and idle < 3:
            message = consumer.poll(0.5)
            if message is None:
                idle += 1
            elif message.error() is None:
                idle = 0
                out.append(message)
        return out
    finally:
        consumer.close()


@pytest.fixture
def streams_worker(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    kafka_admin.create_topics(list(topics.ALL_TOPICS))
    app_id = f"e2e-{uuid.uuid4().hex[:10]}"
    start_group_at_end(kafka_bootstrap, app_id, (*RAW_TOPICS, topics.DSR))  # not other tests' requests either
    log = tmp_path / "streams.log"
    data_dir = tmp_path / "streams"
    data_dir.mkdir()
    # The worker only starts with a DPO public key to trust (for signed requests) and a key
    # to sign its commands to the sink with.
    generate_keypair(data_dir / "dpo.pem", data_dir / "dpo.pub.pem")
    generate_keypair(data_dir / "command.pem", data_dir / "command.pub.pem")
    env = {
        **_env(kafka_bootstrap, data_dir),
        "RECORDS_DPO_PUBLIC_KEYS": str(data_dir / "dpo.pub.pem"),
        "RECORDS_COMMAND_KEY": str(data_dir / "command.pem"),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*RECORDS, "worker", "streams", "--app-id", app_id],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while "Worker ready" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "streams worker not ready"
        time.sleep(0.2)
    yield process
    terminate(process, 30)
    kafka_admin.delete_topics([f"{app_id}-{s}" for s in ("consent-changelog", "__assignor-__leader")])


def _row_ids(schema: str, record: dict[str, Any]) -> dict[str, set[str]]:
    """The rows (table -> ids) one raw record becomes."""
    if schema == NS + "ChatConversation":
        conversation = record["conversation_id"]
        messages = {f"{conversation}:{m['message_id']}" for m in record["messages"]}
        return {"chat_conversations": {conversation}, "chat_messages": messages}
    if schema == NS + "CallDetailRecord":
        return {"calls": {record["call_id"]}}
    if schema == NS + "CallRecording":
        return {"call_recordings": {record["recording_id"]}}
    if schema == NS + "ContactFormSubmitted":
        return {"contact_forms": {record["submission_id"]}}
    return {"consent_ledger": {str(record["event_id"])}}


def test_simulated_traffic_lands_in_every_table_and_each_missing_row_is_explained(
    kafka_bootstrap: str, streams_worker: subprocess.Popen[bytes], chdb_path: Path, tmp_path: Path
) -> None:
    group = f"e2e-sink-{uuid.uuid4().hex[:10]}"
    start_group_at_end(kafka_bootstrap, group, SINK.reads)  # nor their commands
    sink = SinkProcess(chdb_path, kafka_bootstrap, group, "", tmp_path / "sink.log")
    owner = sink.owner()
    letters_from = end_positions(kafka_bootstrap, (topics.DLQ, topics.QUARANTINE))

    seed = secrets.randbelow(2**31)
    now = datetime.now(UTC).replace(microsecond=0)
    simulate = run_records(
        *("simulate", "--events", str(EVENTS), "--seed", str(seed), "--now", now.isoformat()),
        *("--span-days", str(SPAN_DAYS)),
        env=_env(kafka_bootstrap, tmp_path / "simulate"),
    )
    assert simulate.returncode == 0, simulate.stderr

    # What was produced, regenerated from the same seed and clock.
    events = list(generate(SimulationConfig(events=EVENTS, seed=seed, span_days=SPAN_DAYS, now=now)))
    produced: dict[str, set[str]] = {}
    for event in events:
        if event.record is not None and event.schema_name is not None:
            for table, ids in _row_ids(event.schema_name, event.record).items():
                produced.setdefault(table, set()).update(ids)
    malformed = {e.raw for e in events if e.raw is not None}
    without_notice = {
        e.record["recording_id"]
        for e in events
        if e.schema_name == NS + "CallRecording"
        and e.record is not None
        and (e.record["notice_played_at"] is None or e.record["notice_played_at"] > e.record["recording_started_at"])
    }
    assert set(produced) == set(SUBJECT_TABLES)
    assert malformed and without_notice, "pick a larger EVENTS: the run must exercise both"

    client = sink.client(owner)

    def stored(table: str) -> set[str]:
        rows = client.query(
            f"SELECT event_id FROM records.{table} FINAL WHERE event_id IN {{ids:Array(String)}}",
            parameters={"ids": sorted(produced[table])},
        ).result_rows
        return {row[0] for row in rows}

    # Wait until everything expected is stored, or nothing has changed for a while (then
    # the missing rows must be explained below).
    expected = {table: ids - without_notice for table, ids in produced.items()}
    deadline = time.monotonic() + 120
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = {t: len(stored(t)) for t in expected}
        if all(counts[t] >= len(ids) for t, ids in expected.items()):
            break
        if sum(counts.values()) != last:
            last, quiet_since = sum(counts.values()), time.monotonic()
        elif last > 0 and time.monotonic() - quiet_since > 8:
            break
        time.sleep(0.5)
    time.sleep(2)  # anything extra (which would be wrong) has a moment to arrive
    try:
        found = {table: stored(table) for table in produced}
        columns = client.query(
            "SELECT table, name FROM system.columns WHERE database = {db:String}", parameters={"db": ANALYST_DB}
        ).result_rows
        stripped_but_stored = {
            record.table: _stripped_yet_stored(client, record.table, list(record.fields), produced[record.table])
            for record in default_policy().records.values()
            if record.table in produced and record.fields
        }
        strips = Counter(
            dict(
                client.query(
                    "SELECT reason, count() FROM (SELECT splitByChar(':', arrayJoin(stripped))[2] AS reason "
                    "FROM records.chat_conversations FINAL WHERE event_id IN {ids:Array(String)}) GROUP BY reason",
                    parameters={"ids": sorted(produced["chat_conversations"])},
                ).result_rows
            )
        )
    finally:
        assert sink.kill(signal.SIGTERM) == 0

    # Every row not stored is explained by a letter of this run: the quarantine holds the
    # recordings without a prior notice, the dead-letter topic the malformed messages.
    decode = AvroDeserializer()
    explained: dict[str, set[str]] = {}
    dead_malformed: set[bytes] = set()
    reasons: Counter[str] = Counter()
    for message in _read_from(kafka_bootstrap, letters_from, 30):
        headers = parse_headers(message.headers())
        if message.value() in malformed:
            dead_malformed.add(message.value())
            assert (message.topic(), headers["dlq.stage"]) == (topics.DLQ.name, "streams")
            reasons[f"{message.topic()}: {headers['dlq.error.class']}"] += 1
            continue
        try:
            decoded = decode(message.value())
        except SerdeError:
            continue  # another test's letter
        rows = _row_ids(decoded.schema_name, decoded.value)
        if any(ids & produced.get(table, set()) for table, ids in rows.items()):
            for table, ids in rows.items():
                explained.setdefault(table, set()).update(ids)
            reasons[f"{message.topic()}: {headers.get('dlq.error.class')}"] += 1
    report = {t: {"produced": len(ids), "stored": len(found[t])} for t, ids in produced.items()}
    print(f"seed {seed}:", report, "not stored, explained by:", dict(reasons), "fields stripped:", dict(strips))

    assert dead_malformed == malformed
    assert explained.get("call_recordings", set()) == without_notice
    for table, ids in produced.items():
        assert found[table] == ids - explained.get(table, set()), table
    assert stripped_but_stored == dict.fromkeys(stripped_but_stored, 0)
    identifiers = {n for r in default_policy().records.values() for n in r.identifier_fields} | {"subject_keys"}
    assert columns and not [c for c in columns if c[1] in identifiers]


def _stripped_yet_stored(client: Any, table: str, fields: list[str], ids: set[str]) -> int:
    """Rows of `ids` that list a policy field in `stripped` but still hold a value in it."""
    columns = {
        row[0]
        for row in client.query(
            "SELECT name FROM system.columns WHERE database = 'records' AND table = {t:String}", parameters={"t": table}
        ).result_rows
    }
    held = " OR ".join(f"(has(names, '{f}') AND `{f}` IS NOT NULL)" for f in fields if f in columns)
    return int(
        client.command(
            f"SELECT count() FROM (SELECT *, arrayMap(s -> splitByChar(':', s)[1], stripped) AS names "
            f"FROM records.{table} FINAL WHERE event_id IN {{ids:Array(String)}}) WHERE {held}",
            parameters={"ids": sorted(ids)},
        )
    )
