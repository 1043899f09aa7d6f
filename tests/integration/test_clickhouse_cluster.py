"""The storage model on a ClickHouse cluster (pipeline/clickhouse_cluster.py): every
statement parses with the engine's own parser (chDB `formatQuery`; no cluster or Keeper
runs here, so nothing is executed), the tables, columns, keys and TTLs are those of the
single-node model, and the cluster form of the DDL, the DSR mutations and the retention
statements is golden-tested against tests/golden/*.sql.golden
(tests/support/golden.py).

Regenerate the golden files after an intended change with
`RECORDS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_clickhouse_cluster.py` and
review the diff.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from pipeline.clickhouse_cluster import (
    Cluster,
    cluster_access_statements,
    cluster_mutation,
    cluster_statements,
    local_table,
    mutation_for,
)
from pipeline.clickhouse_ddl import RECORDS_DB, statements, support_tables, table_models
from pipeline.exceptions import ConfigError
from records.cli import app as records_cli
from retention_jobs.enforce import delete_expired_statement, drop_months_statement
from sink.consent_withdrawal import clearing_mutation, consent_bound
from sink.dsr_storage import erase_mutation, restrictions_erase
from tests.support.golden import assert_golden

CLUSTER = Cluster("records_cluster")
KEY_A, KEY_B = "a" * 64, "b" * 64
ERASED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _format(client: Client, sql: str) -> str:
    """The statement as the engine's parser reads it, on one line (raises if it does not parse)."""
    return str(client.query("SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql}).result_rows[0][0])


def _clause(formatted: str, keyword: str, until: str) -> str:
    match = re.search(rf" {keyword} (.+?)(?: {until} |$)", formatted)
    assert match is not None, (keyword, formatted)
    return match.group(1)


def _dsr_statements() -> list[str]:
    """The single-node SQL of the sink's erasure, restriction removal and
    consent clearing, and of the retention job, for fixed inputs."""
    models = table_models()
    out = []
    for model in models:
        if model.has_subject_keys:
            out.append(erase_mutation(model, [({KEY_A, KEY_B}, ERASED_AT)]))
    out.append(restrictions_erase({KEY_A, KEY_B}))
    for model in models:
        table = consent_bound(model)
        statement = clearing_mutation(table, {need: ["evt-1", "evt-2"] for need in table.fields}) if table else None
        if statement:
            out.append(statement)
    for model in models:
        out.append(drop_months_statement(model, ["202401", "202402"]))
        out.append(delete_expired_statement(model, NOW))
    return out


def test_every_cluster_statement_parses_with_the_engine(ch_client: Client) -> None:
    ddl = list(cluster_statements(CLUSTER))
    access = list(cluster_access_statements(CLUSTER))
    mutations = [cluster_mutation(s, CLUSTER) for s in _dsr_statements()]
    for statement in ddl + access + mutations:
        formatted = _format(ch_client, statement)
        assert "ON CLUSTER records_cluster" in formatted or formatted.startswith(
            ("ALTER TABLE records.subject_restrictions", "ALTER TABLE records.erased_keys")
        ), formatted


def test_cluster_tables_keep_the_single_node_columns_keys_and_ttls(ch_client: Client) -> None:
    single = {s.split("\n", 1)[0].split()[-1]: _format(ch_client, s) for s in statements() if "TABLE" in s[:20]}
    cluster = [_format(ch_client, s) for s in cluster_statements(CLUSTER)]
    created = {f.split()[5]: f for f in cluster if f.startswith("CREATE TABLE")}
    models = table_models()

    # The table set: each record table as <table>_local plus the Distributed <table>; the
    # DSR state tables under their own names.
    expected = {m.qualified for m in models} | {f"{RECORDS_DB}.{local_table(m.name)}" for m in models}
    expected |= {s.split("\n", 1)[0].split()[-1] for s in support_tables() if s.startswith("CREATE TABLE")}
    assert set(created) == expected
    for model in models:
        local = created[f"{RECORDS_DB}.{local_table(model.name)}"]
        one = single[model.qualified]
        for keyword, until in (("TTL", "SETTINGS"), ("ORDER BY", "TTL"), ("PARTITION BY", "ORDER BY")):
            assert _clause(local, keyword, until) == _clause(one, keyword, until), (model.name, keyword)
        period = model.record.period
        assert f"toInterval{period.unit.title()}({period.amount})" in _clause(local, "TTL", "SETTINGS")
        columns = re.search(r"\((.*)\) ENGINE", one)
        assert columns is not None and f"({columns.group(1)}) ENGINE" in local  # columns and index, as on one node
        version = model.version_column
        assert f"'{{replica}}', {version})" in local, local
        distributed = created[model.qualified]
        assert f"Distributed(records_cluster, records, {local_table(model.name)}, cityHash64({model.id_column}))" in (
            distributed
        )
    for model in models:  # row tables shard by the event id: all versions of a row on one shard
        if model.id_column == "event_id":
            assert "cityHash64(event_id)" in created[model.qualified]


def test_analyst_views_are_the_single_node_views_on_every_node(ch_client: Client) -> None:
    single = [_format(ch_client, s) for s in statements() if s.startswith("CREATE OR REPLACE VIEW")]
    cluster = [_format(ch_client, s) for s in cluster_statements(CLUSTER) if s.startswith("CREATE OR REPLACE VIEW")]
    assert [v.replace(" ON CLUSTER records_cluster", "") for v in cluster] == single


def test_mutations_address_the_local_tables_on_every_shard_and_wait() -> None:
    for single in _dsr_statements():
        table = single.split()[2].split(".")[1]
        mutation = cluster_mutation(single, CLUSTER)
        sync = "alter_sync = 2" if "DROP PARTITION" in single else "mutations_sync = 2"
        assert mutation.count(sync) == 1, mutation
        if table in ("subject_restrictions", "erased_keys"):
            assert mutation.startswith(f"ALTER TABLE records.{table} ") and "ON CLUSTER" not in mutation
        else:
            assert re.match(rf"ALTER TABLE records\.{table}_local ON CLUSTER records_cluster\s", mutation), mutation


def test_golden_cluster_ddl() -> None:
    text = "".join(s + ";\n\n" for s in cluster_statements(CLUSTER))
    text += "".join(s + ";\n" for s in cluster_access_statements(CLUSTER))
    assert_golden("clickhouse_cluster_ddl.sql", text)


def test_golden_cluster_dsr_and_retention_sql() -> None:
    text = "".join(cluster_mutation(s, CLUSTER) + ";\n\n" for s in _dsr_statements())
    assert_golden("clickhouse_cluster_mutations.sql", text)


def test_the_cli_prints_the_cluster_ddl() -> None:
    result = CliRunner().invoke(records_cli, ["clickhouse", "ddl", "--cluster", "records_cluster"])
    assert result.exit_code == 0, result.output
    assert result.output == "".join(s + ";\n\n" for s in cluster_statements(CLUSTER))


def test_init_on_a_cluster_needs_a_server(tmp_path: Path) -> None:
    env = {"CLICKHOUSE_CLUSTER": "records_cluster", "RECORDS_DATA_DIR": str(tmp_path), "CLICKHOUSE_URL": ""}
    result = CliRunner().invoke(records_cli, ["clickhouse", "init"], env=env)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "CLICKHOUSE_URL" in str(result.exception)


@pytest.mark.parametrize("name", ["", "two words", "x;DROP", "c`"])
def test_a_bad_cluster_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        Cluster(name)


def test_a_mutation_outside_the_records_database_is_refused() -> None:
    with pytest.raises(ValueError):
        cluster_mutation("ALTER TABLE analyst.calls DELETE WHERE 1", CLUSTER)


def test_without_a_cluster_mutations_run_as_written() -> None:
    for statement in _dsr_statements():
        assert mutation_for(statement, None) == statement
        assert mutation_for(statement, CLUSTER.name) == cluster_mutation(statement, CLUSTER)
