"""The storage model on the real engine (chDB): init is idempotent, the analyst views hold
no direct identifier (enumerated from system.columns), tables follow the policy's
retention, a part replaced by a mutation leaves the disk within OLD_PARTS_LIFETIME_S, and
the server-mode access statements parse."""

from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import (
    ANALYST_DB,
    OLD_PARTS_LIFETIME_S,
    RECORDS_DB,
    ROLES,
    access_statements,
    statements,
    table_models,
)
from pipeline.policy import default_policy
from sink.sink_process import apply_schema

POLICY = default_policy()
# The notice's direct identifiers (name, email, phone, address, personnel number,
# username, network address, precise location) as columns, plus the other identifiers the
# policy marks and the pseudonymous keys that link a person across rows.
DIRECT_IDENTIFIERS = {
    "name",
    "email",
    "phone",
    "postal_address",
    "person_number",
    "app_username",
    "ip_address",
    "latitude",
    "longitude",
    "caller_number",
    "visitor_id",
    "subject_keys",
    "source_event_id",
}


@pytest.fixture
def initialised(ch_client: Client) -> Client:
    apply_schema(ch_client)
    return ch_client


def _columns(client: Client, database: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for table, column in client.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String}", parameters={"db": database}
    ).result_rows:
        out.setdefault(table, set()).add(column)
    return out


def test_analyst_views_have_no_direct_identifier_column(initialised: Client) -> None:
    views = _columns(initialised, ANALYST_DB)
    policy_identifiers = {name for record in POLICY.records.values() for name in record.identifier_fields}

    assert set(views) == {record.table for record in POLICY.records.values()}
    for table, columns in views.items():
        assert not columns & (DIRECT_IDENTIFIERS | policy_identifiers), table
    assert "text" not in views["chat_messages"]
    assert "text_length" in views["chat_messages"]
    stored = _columns(initialised, RECORDS_DB)
    for table, columns in views.items():  # everything else an analyst may need is there
        hidden = stored[table] - columns
        assert hidden <= DIRECT_IDENTIFIERS | policy_identifiers | {"text", "message"}, table
    assert "message" not in views["contact_forms"] and "message_length" in views["contact_forms"]


def test_init_twice_changes_nothing_and_keeps_the_data(initialised: Client) -> None:
    initialised.command(
        "INSERT INTO records.subject_restrictions VALUES ('key-1', 'RESTRICTION', true, 'r-1', now64(3))"
    )
    before = initialised.query(
        "SELECT database, name, create_table_query FROM system.tables WHERE database IN ('records', 'analyst') "
        "ORDER BY database, name"
    ).result_rows

    applied = apply_schema(initialised)

    after = initialised.query(
        "SELECT database, name, create_table_query FROM system.tables WHERE database IN ('records', 'analyst') "
        "ORDER BY database, name"
    ).result_rows
    assert applied == len(list(statements()))
    assert after == before
    assert initialised.command("SELECT count() FROM records.subject_restrictions") == 1


def test_tables_expire_rows_by_the_policy_and_partition_by_month(initialised: Client) -> None:
    created = dict(
        initialised.query("SELECT name, create_table_query FROM system.tables WHERE database = 'records'").result_rows
    )
    for record in POLICY.records.values():
        ddl = created[record.table]
        interval = f"toInterval{record.period.unit.title()}({record.period.amount})"
        assert f"TTL {record.time_field} + {interval}" in ddl, record.table
        assert f"PARTITION BY toYYYYMM({record.time_field})" in ddl, record.table
        assert "ReplacingMergeTree" in ddl, record.table


def test_record_tables_drop_replaced_parts_after_the_short_lifetime_also_when_created_before_it(
    initialised: Client,
) -> None:
    lifetime = f"old_parts_lifetime = {OLD_PARTS_LIFETIME_S}"
    created = dict(
        initialised.query("SELECT name, create_table_query FROM system.tables WHERE database = 'records'").result_rows
    )
    for model in table_models():
        assert lifetime in created[model.name], model.name

    # a table an older version created (ClickHouse's 480 s) gets it from the next init
    calls = next(m for m in table_models() if m.name == "calls")
    initialised.command(f"DROP TABLE {calls.qualified}")
    initialised.command(calls.create_table().replace(f", {lifetime}", ""))
    assert "old_parts_lifetime" not in initialised.command(f"SHOW CREATE TABLE {calls.qualified}")
    apply_schema(initialised)
    assert lifetime in initialised.command(f"SHOW CREATE TABLE {calls.qualified}")


def test_a_part_an_erasure_replaced_leaves_the_disk_within_about_a_minute(initialised: Client) -> None:
    """The part an erasure rewrote still holds the erased row: it goes once the lifetime is
    over (plus the engine's cleanup turn), not ClickHouse's default eight minutes later."""
    table = "records.calls"
    initialised.command(
        f"INSERT INTO {table} (event_id, started_at, ingested_at) VALUES "
        "('e-1', now64(3), now64(3)), ('e-2', now64(3), now64(3))"
    )

    def parts() -> set[str]:
        return {n for (n,) in initialised.query("SELECT name FROM system.parts WHERE table = 'calls'").result_rows}

    before = parts()
    initialised.command(f"ALTER TABLE {table} DELETE WHERE event_id = 'e-1' SETTINGS mutations_sync = 1")
    assert initialised.command(f"SELECT event_id FROM {table}") == "e-2"
    assert before <= parts()  # the erased row's part, replaced but still on disk
    deadline = time.monotonic() + OLD_PARTS_LIFETIME_S + 90
    while before & parts():
        assert time.monotonic() < deadline, "the replaced part outlived its lifetime by 90 s"
        time.sleep(1)


def test_access_statements_parse_and_cover_every_role_and_table(initialised: Client) -> None:
    sql = list(access_statements())
    for statement in sql:
        formatted = initialised.query("SELECT formatQuery({s:String})", parameters={"s": statement}).result_rows[0][0]
        assert formatted.split()[0] == statement.split()[0]
    for role in ROLES:
        assert f"CREATE ROLE IF NOT EXISTS {role}" in sql
    assert f"GRANT SELECT ON {ANALYST_DB}.* TO analyst" in sql
    assert not any("TO analyst" in s and f"ON {RECORDS_DB}." in s and s.startswith("GRANT") for s in sql)
    for model in table_models():
        if model.has_subject_keys:
            assert any(s.startswith("CREATE ROW POLICY") and f"ON {model.qualified} " in s for s in sql), model.name
