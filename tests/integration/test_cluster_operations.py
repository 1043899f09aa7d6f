"""Retention, rectification and the erasure receipt's per-shard counts on a ClickHouse
cluster (CLICKHOUSE_CLUSTER; pipeline/clickhouse_cluster.py, sink/dsr_shards.py).

Two engines here: plain chDB for the engine's parser (`formatQuery`) and the single-node
form, and chDB with a one-shard cluster configured (tests/support/one_shard_cluster.py),
on which the Distributed tables, `cluster()`, `clusterAllReplicas()` and `shardNum()` run
for real. ON CLUSTER statements need Keeper, which chDB has not: the engine refuses them
(code 392), which is how these tests see that the cluster form was sent, and that nothing
reached the Distributed table, which supports neither mutations nor OPTIMIZE.

Regenerate the golden file after an intended change with
`RECORDS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_cluster_operations.py`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from pipeline.clickhouse_cluster import per_shard, statement_for
from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings
from pipeline.dsr_contract import Receipt, ReceiptStatus
from pipeline.exceptions import ClickHouseError
from pipeline.policy import default_policy
from pipeline.serde import Serde
from retention_jobs.enforce import enforce_retention
from sink.dsr_commands import DsrExecutor
from sink.dsr_execution import COMPLETED, ExecutionResult
from sink.dsr_shards import (
    ErasureIncomplete,
    check_nothing_left,
    counts_per_shard,
    left_per_shard,
    shard_count_query,
    subject_rows_per_shard,
)
from sink.dsr_storage import (
    count_query,
    optimize_partition,
    rectification_targets,
    rectified_partitions,
    rectified_versions,
    subject_rows_count,
    subject_tables,
)
from sink.sink_process import apply_schema
from tests.support.golden import assert_golden
from tests.support.one_shard_cluster import CLUSTER, create_one_shard_model, open_one_shard_cluster
from tests.support.sink_store import erasure_command, model, rectification_command, store, verified_command
from tests.support.stored_records import record

ANNA, BERT = ["a" * 64], ["b" * 64]
NEW_KEY = "c" * 64
AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NO_KEEPER = "Replicated DDL queries are disabled"


@pytest.fixture
def cluster_client(chdb_path: Path, tmp_path: Path) -> Iterator[Client]:
    """chDB with CLUSTER configured and the cluster storage model created."""
    client = open_one_shard_cluster(chdb_path, tmp_path / "config")
    try:
        create_one_shard_model(client)
        yield client
    finally:
        client.close()


@pytest.fixture
def clustered(chdb_settings: Settings) -> Settings:
    return dataclasses.replace(chdb_settings, clickhouse_cluster=CLUSTER.name)


def _format(client: Client, sql: str) -> str:
    return str(client.query("SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql}).result_rows[0][0])


def _cluster_sql() -> list[str]:
    """For fixed inputs: a rectification of every rectifiable field as the sink sends it on a
    cluster, then an erasure's per-shard counts before and after its mutations."""
    models = table_models()
    out: list[str] = []
    for field_name, value in (("email", "anna@example.fi"), ("phone", "+358401234567")):
        for table, column in rectification_targets(models, field_name):
            out.append(statement_for(rectified_partitions(table, column, ANNA), CLUSTER.name))
            sql, _ = rectified_versions(table, column, value, ANNA, NEW_KEY)
            out.append(statement_for(sql, CLUSTER.name))
            out.append(statement_for(optimize_partition(table, "202611"), CLUSTER.name))
    for table in subject_tables(models):
        for after in (False, True):
            out.append(shard_count_query(table, [(set(ANNA), AT), (set(BERT), AT)], CLUSTER.name, after=after))
        out.append(per_shard(subject_rows_count(table, ANNA), CLUSTER.name))
    return out


def test_golden_cluster_rectification_and_shard_counts(ch_client: Client) -> None:
    statements = _cluster_sql()
    text = "".join(s + ";\n\n" for s in statements)
    assert_golden("clickhouse_cluster_dsr_reads_and_merges.sql", text)
    for statement in statements:
        formatted = _format(ch_client, statement)  # parses with the engine's parser
        if formatted.startswith("OPTIMIZE"):
            assert "_local ON CLUSTER records_cluster PARTITION ID '202611' FINAL SETTINGS alter_sync = 2" in formatted
        elif formatted.startswith("INSERT"):
            # New versions go through the Distributed table (the shard of their row id), in the foreground.
            assert "_local" not in formatted and "SETTINGS distributed_foreground_insert = 1 SELECT" in formatted
        elif "shardNum()" in formatted:
            assert re.search(r" FROM (cluster|clusterAllReplicas)\('records_cluster', records, \w+_local\) ", formatted)
            assert formatted.endswith("GROUP BY shard ORDER BY shard ASC")


def test_the_single_node_counts_are_one_shard(ch_client: Client) -> None:
    """Without a cluster the per-shard count reads the table itself: shard 0, the same
    numbers as the count the receipt's store_counts come from."""
    apply_schema(ch_client)
    calls = model("calls")
    store(ch_client, calls, [record(calls.schema, n, subject_keys=ANNA, ingested_at=AT) for n in (1, 2)])
    store(ch_client, calls, [record(calls.schema, 3, subject_keys=BERT, ingested_at=AT)])
    erasures = [(set(ANNA), AT), (set(BERT), AT)]

    assert counts_per_shard(ch_client, [calls], ["req-a", "req-b"], erasures, None) == {
        "req-a": {"records.calls": {"0": 2}},
        "req-b": {"records.calls": {"0": 1}},
    }
    assert ch_client.query(count_query(calls, erasures)).result_rows == [(3, 2, 1)]
    assert ch_client.query(per_shard(count_query(calls, erasures), None)).result_rows == [(0, 3, 2, 1)]
    assert subject_rows_per_shard(ch_client, [calls], ANNA, None) == {"records.calls": {"0": 2}}


def test_on_a_cluster_the_counts_are_per_shard_and_every_replica_is_checked(cluster_client: Client) -> None:
    calls, chats = model("calls"), model("chat_conversations")
    store(cluster_client, calls, [record(calls.schema, n, subject_keys=ANNA, ingested_at=AT) for n in (1, 2)])
    store(cluster_client, chats, [record(chats.schema, 1, subject_keys=BERT, ingested_at=AT)])
    # Stored through the Distributed tables: the rows are in the shard's local tables.
    assert cluster_client.command("SELECT count() FROM records.calls_local") == 2
    erasures = [(set(ANNA), AT), (set(BERT), AT)]

    counts = counts_per_shard(cluster_client, [calls, chats], ["req-a", "req-b"], erasures, CLUSTER.name)

    assert counts == {"req-a": {"records.calls": {"1": 2}}, "req-b": {"records.chat_conversations": {"1": 1}}}
    left = left_per_shard(cluster_client, [calls, chats], erasures, CLUSTER.name)
    assert left == ["records.calls on shard 1", "records.chat_conversations on shard 1"]
    with pytest.raises(ErasureIncomplete) as raised:
        check_nothing_left(cluster_client, [calls, chats], erasures, CLUSTER.name)
    assert "a" * 64 not in str(raised.value) and "b" * 64 not in str(raised.value)
    for table in ("calls_local", "chat_conversations_local"):  # what the mutation does on each shard
        cluster_client.command(f"ALTER TABLE records.{table} DELETE WHERE 1 SETTINGS mutations_sync = 2")
    check_nothing_left(cluster_client, [calls, chats], erasures, CLUSTER.name)


def test_on_a_cluster_the_erasure_counts_per_shard_then_mutates_on_cluster(
    cluster_client: Client, clustered: Settings
) -> None:
    calls = model("calls")
    store(cluster_client, calls, [record(calls.schema, 1, subject_keys=ANNA, ingested_at=AT)])
    executor = DsrExecutor(clustered, serde=Serde(), clock=lambda: AT)
    command = erasure_command(ANNA, AT + timedelta(minutes=1))

    with pytest.raises(DriverError, match=NO_KEEPER):
        executor.erase(cluster_client, [command])

    # Counted per shard before the mutation, kept for the retried batch's receipt.
    assert executor._shard_counted[command.request_id] == {"records.calls": {"1": 1}}
    assert cluster_client.command("SELECT count() FROM records.calls_local") == 1


def test_on_a_cluster_other_requests_say_where_the_subjects_rows_are(
    cluster_client: Client, clustered: Settings
) -> None:
    calls, chats = model("calls"), model("chat_conversations")
    store(cluster_client, calls, [record(calls.schema, n, subject_keys=ANNA, ingested_at=AT) for n in (1, 2)])
    store(cluster_client, chats, [record(chats.schema, 1, subject_keys=BERT, ingested_at=AT)])
    request = {"request_id": str(uuid.uuid4()), "request_type": "RESTRICTION", "issued_at": AT}

    result = DsrExecutor(clustered, serde=Serde()).execute(cluster_client, verified_command(request, ANNA, AT))

    assert result.status == COMPLETED
    assert result.shard_counts == {"records.calls": {"1": 2}}
    assert result.store_counts["records.calls"] == 2


def test_on_a_cluster_rectified_versions_reach_the_shard_of_their_row_and_merge_on_cluster(
    cluster_client: Client, clustered: Settings
) -> None:
    chats = model("chat_conversations")
    ingested = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    store(cluster_client, chats, [record(chats.schema, 1, subject_keys=ANNA, ingested_at=ingested, email="old@a.fi")])
    command = rectification_command(ANNA, ingested, "email", "new@a.fi", NEW_KEY)

    # The insert runs (Distributed, foreground); the merge goes ON CLUSTER to the local tables.
    with pytest.raises(DriverError, match=NO_KEEPER):
        DsrExecutor(clustered, serde=Serde())._execute(cluster_client, command)

    versions = cluster_client.query(
        "SELECT email, shardNum() FROM cluster('records_cluster', records, chat_conversations_local) "
        "WHERE event_id = 'event_id-1' ORDER BY ingested_at"
    ).result_rows
    assert versions == [("old@a.fi", 1), ("new@a.fi", 1)]  # both versions on the row's shard
    assert cluster_client.command("SELECT email FROM records.chat_conversations FINAL") == "new@a.fi"


def test_on_a_cluster_retention_reads_the_local_tables_and_deletes_on_cluster(cluster_client: Client) -> None:
    cluster_client.command("SYSTEM STOP TTL MERGES")  # only the run may remove rows
    now = datetime.now(UTC)
    calls = model("calls")
    old = now - timedelta(days=calls.record.retention_days + 40)
    times = [c.name for c in calls.columns if c.type.startswith("DateTime64")]
    cluster_client.insert(
        calls.qualified,
        [["old-call", *[old] * len(times)], ["new-call", *[now] * len(times)]],
        column_names=["event_id", *times],
    )
    policy = default_policy()

    checked = enforce_retention(cluster_client, policy, now, delete=False, cluster=CLUSTER.name)

    by_type = {t.record_type: t for t in checked.tables}
    assert all(t.ttl_matches_policy for t in checked.tables)  # the local tables' TTL, not the Distributed one's
    assert (by_type["call"].deleted, by_type["call"].rows) == (1, 2)
    with pytest.raises(ClickHouseError, match=NO_KEEPER):
        enforce_retention(cluster_client, policy, now, cluster=CLUSTER.name)
    assert cluster_client.command("SELECT count() FROM records.calls_local") == 2


def test_a_receipt_keeps_its_shard_counts_when_stored_and_encoded(ch_client: Client, chdb_settings: Settings) -> None:
    apply_schema(ch_client)  # records.dsr_executed gains the column on an existing table too
    executor = DsrExecutor(chdb_settings, serde=Serde(), clock=lambda: AT)
    command = verified_command({"request_id": str(uuid.uuid4()), "request_type": "ERASURE", "issued_at": AT}, ANNA, AT)
    shards = {"records.calls": {"1": 2, "2": 1}}
    result = ExecutionResult(COMPLETED, {"records.calls": 3}, "done", shards)

    receipt = executor._finish(ch_client, command, result)

    assert receipt.shard_counts == shards
    stored, _ = executor._executed(ch_client, [command.request_id])[command.request_id]
    assert stored.shard_counts == shards  # a redelivered command's receipt says the same
    serde = Serde()
    decoded = serde.decode(serde.encoder("cs.records.DsrReceipt")(receipt.to_value())).value
    assert Receipt.from_value(decoded) == receipt


def test_a_receipt_without_shard_counts_reads_as_empty() -> None:
    receipt = Receipt.from_value(
        {
            "request_id": "r",
            "request_type": "ERASURE",
            "status": "COMPLETED",
            "requested_at": AT,
            "completed_at": AT,
            "store_counts": {"records.calls": 1},
            "detail": None,
        }
    )
    assert receipt.status is ReceiptStatus.COMPLETED and receipt.shard_counts == {}
