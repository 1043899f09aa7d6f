"""Erasure by ingestion, not event time (issue 11, finding 3), on the real engine (chDB).

A source may date an event in the future (a clock 10 minutes fast, a typo of ten years).
Such rows used to survive a COMPLETED erasure (rows were deleted where event time <= the
erasure) and the report's erasure proof used the same predicate, so it passed. Now every
row of the subject ingested up to the erasure goes, the insert guard refuses replays of
them, and the proof counts by ingestion too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.policy import default_policy
from pipeline.serde import AvroSerializer, Serde
from retention_jobs.report_collect import collect_evidence
from retention_jobs.report_evidence import KafkaEvidence
from sink.avro_container import SINGLE_OBJECT_PREFIX, container
from sink.dsr_commands import DsrExecutor
from sink.sink_process import apply_schema
from tests.support.sink_store import erasure_command, model, store
from tests.support.stored_records import record

ANNA = ["a" * 64, "b" * 64]
BERT = ["c" * 64]


def _rows(table: str, keys: list[str], ingested: datetime, event_times: dict[str, datetime]) -> list[dict[str, Any]]:
    m = model(table)
    out = []
    for n, (name, at) in enumerate(event_times.items()):
        value = record(m.schema, n, subject_keys=keys, ingested_at=ingested, **{m.record.time_field: at})
        value[m.id_column] = f"{table}-{name}"
        out.append(value)
    return out


def _ids(client: Client, table: str, keys: list[str]) -> list[str]:
    return sorted(
        str(r[0])
        for r in client.query(
            f"SELECT {model(table).id_column} FROM records.{table} WHERE hasAny(subject_keys, {{k:Array(String)}})",
            parameters={"k": keys},
        ).result_rows
    )


def test_rows_dated_in_the_future_but_ingested_before_the_erasure_are_erased(
    ch_client: Client, chdb_settings: Settings
) -> None:
    apply_schema(ch_client)
    now = datetime.now(UTC).replace(microsecond=0)
    erased_at = now - timedelta(minutes=1)
    future = {
        "past": now - timedelta(days=1),
        "ten-minutes-ahead": now + timedelta(minutes=10),
        "ten-years-ahead": now + timedelta(days=3653),
    }
    for table in ("calls", "chat_conversations"):
        store(ch_client, model(table), _rows(table, ANNA, erased_at - timedelta(minutes=5), future))
        # The person came back after the erasure: new contact, dated before it even, stays.
        store(ch_client, model(table), _rows(table, ANNA[1:], erased_at + timedelta(seconds=30), {"new": now}))
        store(ch_client, model(table), _rows(table, BERT, erased_at - timedelta(minutes=5), future))
    assert _ids(ch_client, "calls", ANNA) == sorted(f"calls-{n}" for n in (*future, "new"))

    executor = DsrExecutor(chdb_settings, serde=Serde())
    [outcome] = executor.erase(ch_client, [erasure_command(ANNA, erased_at)]).values()

    for table in ("calls", "chat_conversations"):
        assert _ids(ch_client, table, ANNA) == [f"{table}-new"], table
        assert len(_ids(ch_client, table, BERT)) == 3, table
    assert outcome.store_counts["records.calls"] == 3

    # A replay of the erased rows (enriched topics keep them) is refused on insert, the
    # future-dated ones included: they were ingested before the erasure.
    for table in ("calls", "chat_conversations"):
        store(ch_client, model(table), _rows(table, ANNA, erased_at - timedelta(minutes=5), future))
        assert _ids(ch_client, table, ANNA) == [f"{table}-new"], table


def test_the_erasure_proof_counts_future_dated_rows_ingested_before_the_erasure(ch_client: Client) -> None:
    apply_schema(ch_client)
    now = datetime.now(UTC).replace(microsecond=0)
    erased_at = now - timedelta(minutes=1)
    # The ledger says ANNA was erased, but a future-dated row ingested before that remains.
    ch_client.insert(
        "records.erased_keys",
        [(key, erased_at) for key in ANNA],
        column_names=["subject_key", "erased_at"],
    )
    # Inserted around the guard, as a row would remain if the erasure missed it.
    m = model("calls")
    value = record(m.schema, 1, subject_keys=ANNA, ingested_at=erased_at - timedelta(minutes=5))
    value[m.record.time_field] = now + timedelta(days=3653)
    block = container(m.schema, [AvroSerializer(m.schema)(value)[SINGLE_OBJECT_PREFIX:]])
    ch_client.raw_insert(m.qualified, insert_block=block, fmt="Avro")

    evidence = collect_evidence(ch_client, default_policy(), now, storage="test", kafka=KafkaEvidence(error="-"))
    assert evidence.rows_surviving_erasure["call"] == 1
