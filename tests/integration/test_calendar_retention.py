"""Calendar retention against the real engine (embedded chDB): the policy's "3 months" and
"2 years" are ClickHouse calendar intervals in the TTL, in the retention run and in
`records clickhouse init`, which moves a table created with a TTL in days to them."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import TableModel, statements, table_models
from pipeline.config import Settings
from pipeline.policy import POLICY_FILE, default_policy, parse_policy
from retention_jobs.enforce import enforce_retention
from tests.support.cli import chdb_env, run_records

# A `now` after the real clock, so no row below is past its TTL for the engine itself
# (only the retention run's `now` decides): 3 months before it is 92 days, 2 years 731.
NOW = datetime(2028, 5, 31, 12, 0, tzinfo=UTC)


def _model(record_type: str) -> TableModel:
    return next(m for m in table_models() if m.record.record_type == record_type)


def _insert(client: Client, model: TableModel, ages_days: dict[str, float]) -> None:
    times = [c.name for c in model.columns if c.type.startswith("DateTime64")]
    names = [model.id_column, *times]
    rows = [[row_id, *[NOW - timedelta(days=age)] * len(times)] for row_id, age in ages_days.items()]
    client.insert(model.qualified, rows, column_names=names)


def _ids(client: Client, model: TableModel) -> set[str]:
    return {str(row[0]) for row in client.query(f"SELECT {model.id_column} FROM {model.qualified}").result_rows}


def _ttl(client: Client, model: TableModel) -> str:
    query = f"SELECT engine_full FROM system.tables WHERE database = 'records' AND name = '{model.name}'"
    return str(client.command(query))


def test_the_run_keeps_a_recording_for_three_calendar_months_and_a_call_for_two_years(ch_client: Client) -> None:
    for statement in statements():
        ch_client.command(statement)
    recordings, calls = _model("call_recording"), _model("call")
    _insert(ch_client, recordings, {"r-91d": 91.0, "r-93d": 93.0})  # 90 days would drop r-91d
    _insert(ch_client, calls, {"c-730.5d": 730.5, "c-731.5d": 731.5})  # 730 days would drop c-730.5d

    result = enforce_retention(ch_client, default_policy(), NOW)

    assert result.ok
    assert _ids(ch_client, recordings) == {"r-91d"}
    assert _ids(ch_client, calls) == {"c-730.5d"}
    assert "toIntervalMonth(3)" in _ttl(ch_client, recordings)
    assert "toIntervalYear(2)" in _ttl(ch_client, calls)
    assert all(t.ttl_matches_policy for t in result.tables)


def test_init_moves_a_table_created_with_a_ttl_in_days_to_the_policy_interval(
    chdb_path: Path, chdb_settings: Settings
) -> None:
    raw = tomllib.loads(POLICY_FILE.read_text(encoding="utf-8"))
    in_days = {"180 days": 180, "3 months": 90, "2 years": 730, "5 years": 1825}
    for spec in raw["records"].values():  # the policy as it was: limits in days
        spec["retention_days"] = in_days[spec.pop("retention")]
    old = parse_policy(raw)
    with connect(chdb_settings) as client:
        for statement in statements(old):
            client.command(statement)
        assert "toIntervalDay(90)" in _ttl(client, _model("call_recording"))
        stale = enforce_retention(client, default_policy(), NOW, delete=False)
        assert {t.record_type for t in stale.tables if not t.ttl_matches_policy} == {
            "call",
            "call_recording",
            "consent_ledger",
            "dsr_receipt",
        }

    done = run_records("clickhouse", "init", env=chdb_env(chdb_path))

    assert done.returncode == 0, done.stderr
    with connect(chdb_settings) as client:
        assert "toIntervalMonth(3)" in _ttl(client, _model("call_recording"))
        assert "toIntervalYear(2)" in _ttl(client, _model("call"))
        after = enforce_retention(client, default_policy(), NOW, delete=False)
        assert all(t.ttl_matches_policy for t in after.tables)
