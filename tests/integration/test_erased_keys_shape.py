"""The ClickHouse erased-keys table (issue 11, finding 4), on the real engine (chDB): one row
per subject key with no request id (nothing links one person's keys), a TTL from the policy,
and the table an older version created (`erasure_ledger`) is renamed and brought to
that shape by the DDL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.serde import Serde
from sink.dsr_commands import DsrExecutor
from sink.sink_process import apply_schema
from tests.support.sink_store import erasure_command

ANNA = ["a" * 64, "b" * 64]


def _columns(client: Client) -> list[str]:
    return [
        str(r[0])
        for r in client.query(
            "SELECT name FROM system.columns WHERE database = 'records' AND table = 'erased_keys' ORDER BY position"
        ).result_rows
    ]


def _engine(client: Client) -> str:
    return str(client.command("SELECT engine_full FROM system.tables WHERE name = 'erased_keys'"))


def test_the_erased_keys_table_holds_each_key_alone_and_expires(ch_client: Client, chdb_settings: Settings) -> None:
    apply_schema(ch_client)
    now = datetime.now(UTC).replace(microsecond=0)
    DsrExecutor(chdb_settings, serde=Serde()).erase(ch_client, [erasure_command(ANNA, now)])

    assert _columns(ch_client) == ["subject_key", "erased_at"]
    rows = ch_client.query("SELECT * FROM records.erased_keys ORDER BY subject_key").result_rows
    assert [r[0] for r in rows] == ANNA
    assert "TTL erased_at + toIntervalDay(30)" in _engine(ch_client)

    ch_client.insert("records.erased_keys", [("c" * 64, now - timedelta(days=31))], column_names=_columns(ch_client))
    ch_client.command("OPTIMIZE TABLE records.erased_keys FINAL")
    assert ch_client.command("SELECT count() FROM records.erased_keys WHERE subject_key = repeat('c', 64)") == 0
    assert ch_client.command("SELECT count() FROM records.erased_keys") == 2


def test_the_table_of_an_older_version_is_renamed_loses_its_request_ids_and_gets_the_ttl(ch_client: Client) -> None:
    ch_client.command("CREATE DATABASE records")
    ch_client.command(  # as versions before the rename created it
        "CREATE TABLE records.erasure_ledger (`subject_key` String, `erased_at` DateTime64(3, 'UTC'), "
        "`request_id` String) ENGINE = ReplacingMergeTree(erased_at) ORDER BY subject_key"
    )
    ch_client.command(f"INSERT INTO records.erasure_ledger VALUES ('{ANNA[0]}', now64(3), 'r-1')")

    apply_schema(ch_client)
    apply_schema(ch_client)  # idempotent

    assert _columns(ch_client) == ["subject_key", "erased_at"]
    assert "TTL erased_at + toIntervalDay(30)" in _engine(ch_client)
    assert ch_client.command("SELECT count() FROM records.erased_keys") == 1  # the erased key is kept
    assert ch_client.command("EXISTS TABLE records.erasure_ledger") == 0
