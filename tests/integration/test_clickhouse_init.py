"""`records clickhouse init / ddl / roles-sql` as a user runs them, on a fresh embedded store."""

from __future__ import annotations

from pathlib import Path

from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import ROLES, support_tables, table_models
from pipeline.config import Settings
from tests.support.cli import chdb_env, run_records


def test_init_creates_the_model_then_finds_it_and_checks_the_access_sql(
    chdb_path: Path, chdb_settings: Settings
) -> None:
    first = run_records("clickhouse", "init", env=chdb_env(chdb_path))
    second = run_records("clickhouse", "init", env=chdb_env(chdb_path))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.splitlines()[0] == f"target: embedded chDB at {chdb_path}"
    for model in table_models():
        ttl = model.record.period.label
        assert f"table records.{model.name}: created; row TTL {ttl} on" in first.stdout
        assert f"table records.{model.name}: exists; row TTL {ttl} on" in second.stdout
        assert f"view analyst.{model.name}: created;" in first.stdout
        assert f"view analyst.{model.name}: replaced;" in second.stdout
    assert "access control:" in first.stdout and "parse; not applied" in first.stdout
    with connect(chdb_settings) as client:
        tables = client.command("SELECT count() FROM system.tables WHERE database IN ('records', 'analyst')")
    created = [s for s in support_tables() if s.startswith("CREATE TABLE")]  # the rest migrate their shape
    assert tables == 2 * len(table_models()) + len(created)


def test_ddl_and_roles_sql_print_statements(chdb_path: Path) -> None:
    ddl = run_records("clickhouse", "ddl", env=chdb_env(chdb_path))
    roles = run_records("clickhouse", "roles-sql", env=chdb_env(chdb_path))

    assert ddl.returncode == 0, ddl.stderr
    assert "CREATE TABLE IF NOT EXISTS records.calls" in ddl.stdout
    assert roles.returncode == 0, roles.stderr
    for role in ROLES:
        assert f"CREATE ROLE IF NOT EXISTS {role};" in roles.stdout
    assert "CREATE ROW POLICY OR REPLACE" in roles.stdout
    assert not chdb_path.exists()  # printing opens no store
