"""Retention against the real engine (embedded chDB): rows spread over three years, one
enforcement run, and exactly the rows younger than their limit are left in every table."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from pipeline.clickhouse_ddl import TableModel, statements, table_models
from pipeline.config import Settings
from pipeline.policy import POLICY_FILE, Policy, default_policy, parse_policy
from retention_jobs.enforce import enforce_retention
from retention_jobs.metrics import RetentionMetrics
from tests.support.cli import chdb_env, run_records
from tests.support.endpoint import served_store

# Ages in days over three years, each at least half a day away from every limit of the
# policy (180 days; 3 months: 89 to 92 days back; 2 years: 730 or 731; 5 years: 1826 or
# 1827) whatever today's date, so that the clock moving during the test changes nothing.
AGES_DAYS = (0.0, 0.5, 3, 29, 60, 88.5, 92.5, 120, 179.5, 180.5, 250, 364, 400, 729.5, 731.5, 800, 1000, 1094.5)


def _row(model: TableModel, index: int, at: datetime) -> dict[str, Any]:
    """One valid row: the time field (and every other required timestamp) at `at`, the id
    unique, everything else the column's default."""
    row: dict[str, Any] = {model.id_column: f"{model.name}-{index:03d}"}
    for column in model.columns:
        if column.type.startswith("DateTime64"):
            row[column.name] = at
    if any(c.name == "channel" for c in model.columns):
        row["channel"] = "WEB"
    return row


def insert_rows(client: Client, model: TableModel, times: list[datetime]) -> None:
    rows = [_row(model, i, at) for i, at in enumerate(times)]
    names = list(rows[0])
    client.insert(model.qualified, [[r[n] for n in names] for r in rows], column_names=names)


def create_tables(client: Client, policy: Policy | None = None) -> None:
    for statement in statements(policy):
        client.command(statement)


def count(client: Client, model: TableModel) -> int:
    return int(client.command(f"SELECT count() FROM {model.qualified}"))


def ids(client: Client, model: TableModel) -> set[str]:
    return set(client.query(f"SELECT {model.id_column} FROM {model.qualified}").result_columns[0])


def test_run_keeps_exactly_the_rows_within_their_limit(ch_client: Client) -> None:
    create_tables(ch_client)
    # Only the explicit run may remove rows here (a TTL merge could otherwise run first).
    ch_client.command("SYSTEM STOP TTL MERGES")
    now = datetime.now(UTC)
    models = table_models()
    for model in models:
        insert_rows(ch_client, model, [now - timedelta(days=age) for age in AGES_DAYS])
        assert count(ch_client, model) == len(AGES_DAYS)

    result = enforce_retention(ch_client, default_policy(), now)

    assert result.ok, [t.describe_violation() for t in result.violations]
    for model in models:
        period = model.record.period  # calendar arithmetic: 3 months back is 89-92 days
        kept = {
            f"{model.name}-{i:03d}"
            for i, age in enumerate(AGES_DAYS)
            if not period.expired(now - timedelta(days=age), now)
        }
        assert ids(ch_client, model) == kept, model.name
        table = next(t for t in result.tables if t.record_type == model.record.record_type)
        assert (table.deleted, table.rows, table.remaining_expired) == (len(AGES_DAYS) - len(kept), len(kept), 0)
        assert table.oldest_age_days is not None and table.oldest_age_days <= period.max_days
        assert table.ttl_matches_policy
    by_type = {t.record_type: t for t in result.tables}
    assert by_type["call_recording"].rows == 6  # within 3 months
    assert by_type["chat_conversation"].rows == 9  # < 180 d
    assert by_type["call"].rows == 14  # within 2 years
    assert by_type["dsr_receipt"].rows == len(AGES_DAYS)  # 5 years: all kept
    # The months of the 800, 1000 and 1094.5 days old calls lie wholly before the cutoff:
    # dropped as partitions, not rewritten by the mutation.
    assert by_type["call"].dropped_partitions >= 3

    registry = CollectorRegistry()
    RetentionMetrics.create(registry).observe(result)
    assert registry.get_sample_value("retention_violations", {"record_type": "call_recording"}) == 0
    oldest = registry.get_sample_value("oldest_record_age_days", {"record_type": "call_recording"})
    assert oldest is not None and 88 < oldest < 89
    assert registry.get_sample_value("retention_deleted_rows", {"record_type": "call"}) == 4

    again = enforce_retention(ch_client, default_policy(), now)  # idempotent: nothing left to delete
    assert again.ok
    assert [t.deleted for t in again.tables] == [0] * len(models)
    assert [t.rows for t in again.tables] == [t.rows for t in result.tables]


def test_check_only_reports_violations_and_sets_the_gauge(ch_client: Client) -> None:
    create_tables(ch_client)
    ch_client.command("SYSTEM STOP TTL MERGES")
    now = datetime.now(UTC)
    recordings = next(m for m in table_models() if m.record.record_type == "call_recording")
    insert_rows(ch_client, recordings, [now - timedelta(days=d) for d in (1, 100, 200)])

    result = enforce_retention(ch_client, default_policy(), now, delete=False)

    assert not result.ok
    (violation,) = result.violations
    assert (violation.record_type, violation.remaining_expired, violation.rows) == ("call_recording", 2, 3)
    assert "2 row(s) older than 3 months remain, oldest 200.0 d" in violation.describe_violation()
    registry = CollectorRegistry()
    RetentionMetrics.create(registry).observe(result)
    assert registry.get_sample_value("retention_violations", {"record_type": "call_recording"}) == 2
    assert registry.get_sample_value("retention_violations", {"record_type": "call"}) == 0


def _longer_policy(days: int) -> Policy:
    """The policy as it might have been when the tables were created: every limit `days`."""
    raw = tomllib.loads(POLICY_FILE.read_text(encoding="utf-8"))
    for spec in raw["records"].values():
        spec.pop("retention", None)
        spec["retention_days"] = days
    return parse_policy(raw)


def test_cli_exits_non_zero_while_a_violation_remains(ch_client: Client, chdb_path: Path) -> None:
    # Tables created under an older policy with a 10-year TTL: background TTL merges in the
    # CLI's process will not touch these rows, only the policy's limits make them expired.
    create_tables(ch_client, _longer_policy(3650))
    now = datetime.now(UTC)
    models = {m.record.record_type: m for m in table_models()}
    insert_rows(ch_client, models["call_recording"], [now - timedelta(days=d) for d in (1, 100, 200)])
    insert_rows(ch_client, models["call"], [now - timedelta(days=d) for d in (1, 800)])
    ch_client.close()
    metrics = chdb_path.parent / "retention.prom"

    env, cwd = chdb_env(chdb_path), chdb_path.parent
    checked = run_records("retention", "run", "--check-only", "--metrics-file", str(metrics), env=env, cwd=cwd)

    assert checked.returncode == 1, checked.stderr
    assert "error: retention violated for 2 record type(s): call, call_recording" in checked.stderr
    assert 'retention_violations{record_type="call_recording"} 2.0' in metrics.read_text()
    assert "VIOLATION" in checked.stdout
    assert "records.calls has TTL 3650 days but the policy says 2 years" in checked.stderr  # DDL older than policy

    enforced = run_records("retention", "run", "--metrics-file", str(metrics), env=env, cwd=cwd)

    assert enforced.returncode == 0, enforced.stderr
    assert 'retention_violations{record_type="call_recording"} 0.0' in metrics.read_text()
    assert 'retention_deleted_rows{record_type="call_recording"} 2.0' in metrics.read_text()
    assert run_records("retention", "run", "--check-only", env=env, cwd=cwd).returncode == 0


def test_while_the_sink_owns_the_store_the_cli_verifies_only(
    ch_client: Client, chdb_path: Path, chdb_settings: Settings
) -> None:
    """Embedded mode with the sink running: `records retention run` reaches the sink's
    read-only endpoint, says the sink enforces retention itself, and still proves it."""
    create_tables(ch_client, _longer_policy(3650))
    now = datetime.now(UTC)
    recordings = next(m for m in table_models() if m.record.record_type == "call_recording")
    insert_rows(ch_client, recordings, [now - timedelta(days=d) for d in (1, 100)])
    # What the sink does in embedded mode: serve the store read-only and name itself owner.
    with served_store(chdb_settings):
        through_sink = run_records("retention", "run", env=chdb_env(chdb_path), cwd=chdb_path.parent)

    assert "enforces retention itself: verifying only" in through_sink.stdout
    assert through_sink.returncode == 1
    assert "error: retention violated for 1 record type(s): call_recording" in through_sink.stderr
    assert count(ch_client, recordings) == 2  # nothing deleted through the read-only endpoint
