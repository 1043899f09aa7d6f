"""A rectified phone number reaches every column holding it (notice §5: the caller's
number of calls and recordings), on the real engine (chDB): the corrected version is
stored, the uncorrected one merged away, and the corrected number's key added."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
OLD, OTHER = "+358401111111", "+358402222222"


def test_a_rectified_phone_rewrites_caller_number_in_calls_and_recordings(
    ch_client: Client, chdb_settings: Settings
) -> None:
    apply_schema(ch_client)
    ingested = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    columns = {"chat_conversations": "phone", "calls": "caller_number", "call_recordings": "caller_number"}
    for table, column in columns.items():
        store(
            ch_client,
            model(table),
            [
                record(model(table).schema, 1, subject_keys=ANNA, ingested_at=ingested, **{column: OLD}),
                record(model(table).schema, 2, subject_keys=BERT, ingested_at=ingested, **{column: OTHER}),
            ],
        )
    command = rectification_command(ANNA, ingested, "phone", "040 333 3333", NEW_KEY)

    outcome = DsrExecutor(chdb_settings, serde=Serde())._execute(ch_client, command)

    assert outcome.status == COMPLETED
    for table, column in columns.items():
        assert outcome.store_counts[f"records.{table}"] == 1, table
        stored = ch_client.query(
            f"SELECT {model(table).id_column}, {column}, has(subject_keys, {{k:String}}) FROM records.{table} FINAL "
            f"ORDER BY {column}",
            parameters={"k": NEW_KEY},
        ).result_rows
        assert [(number, keyed) for _, number, keyed in stored] == [("+358402222222", False), ("+358403333333", True)]
        physical = ch_client.query(
            f"SELECT {column} FROM records.{table} WHERE has(subject_keys, {{k:String}})", parameters={"k": ANNA[0]}
        )
        assert [r[0] for r in physical.result_rows] == ["+358403333333"], f"{table}: the old version is merged away"
