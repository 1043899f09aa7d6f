"""With CLICKHOUSE_CLUSTER set, the sink's data-subject mutations go to the local tables
ON CLUSTER (pipeline/clickhouse_cluster.py), on the real engine (chDB).

chDB has no cluster configured here: the erasure's first cluster statement, its count per
shard through `cluster()` (sink/dsr_shards.py), is refused (code 701), which is how this
test sees that the cluster form was sent. The same erasure without a cluster deletes the
row, so the two cases differ only in the setting. On a configured one-shard cluster the
mutation ON CLUSTER itself is refused (no Keeper): tests/integration/test_cluster_operations.py.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from pipeline.config import Settings
from pipeline.serde import Serde
from sink.dsr_commands import DsrExecutor
from sink.dsr_storage import DsrCommand
from sink.sink_process import apply_schema
from tests.support.sink_store import verified_command

KEY = "d" * 64
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _erasure() -> DsrCommand:
    request = {"request_id": "req-cluster-1", "request_type": "ERASURE", "issued_at": NOW}
    return verified_command(request, (KEY,), NOW)


def _rows(client: Client) -> int:
    return int(client.query(f"SELECT count() FROM records.calls WHERE has(subject_keys, '{KEY}')").result_rows[0][0])


@pytest.fixture
def stored(ch_client: Client) -> Client:
    apply_schema(ch_client)
    ch_client.command(
        "INSERT INTO records.calls (event_id, subject_keys, started_at, ended_at) "
        f"VALUES ('call-cluster-1', ['{KEY}'], toDateTime64('2026-11-01 10:00:00', 3, 'UTC'), "
        "toDateTime64('2026-11-01 10:05:00', 3, 'UTC'))"
    )
    return ch_client


def test_on_a_cluster_the_erasure_is_sent_on_cluster_to_the_local_tables(
    stored: Client, chdb_settings: Settings
) -> None:
    clustered = dataclasses.replace(chdb_settings, clickhouse_cluster="records_cluster")
    with pytest.raises(DriverError, match="Requested cluster 'records_cluster' not found"):
        DsrExecutor(clustered, serde=Serde(), clock=lambda: NOW).erase(stored, [_erasure()])
    assert _rows(stored) == 1  # nothing ran as a single-node mutation

    outcome = DsrExecutor(chdb_settings, serde=Serde(), clock=lambda: NOW).erase(stored, [_erasure()])
    assert outcome["req-cluster-1"].status == "COMPLETED"
    assert _rows(stored) == 0
