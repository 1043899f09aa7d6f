"""The ClickHouse factory and `records sql` against the real engine (embedded chDB)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import connect, describe_target, run_statement
from pipeline.config import Settings, load_settings
from pipeline.exceptions import ClickHouseError
from tests.support.cli import chdb_env, run_records

CHAT_TABLE = "CREATE TABLE chat (id UInt32, ts DateTime, body String) ENGINE = MergeTree ORDER BY id"
CHAT_TABLE_WITH_TTL = f"{CHAT_TABLE} TTL ts + INTERVAL 180 DAY"


def test_create_insert_select_round_trip(ch_client: Client) -> None:
    assert run_statement(ch_client, CHAT_TABLE) is None
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    ch_client.insert("chat", [(1, now, "hello"), (2, now, "world")], column_names=["id", "ts", "body"])

    result = run_statement(ch_client, "SELECT id, ts, body FROM chat ORDER BY id")

    assert result is not None
    assert result.columns == ("id", "ts", "body")
    assert result.rows == [(1, now, "hello"), (2, now, "world")]


def test_materialized_ttl_removes_exactly_the_expired_rows(ch_client: Client) -> None:
    ch_client.command(CHAT_TABLE_WITH_TTL)
    # A background TTL merge may drop expired rows at any moment (or hours later); stop it so
    # that only the explicit MATERIALIZE TTL, which retention relies on, removes them here.
    ch_client.command("SYSTEM STOP TTL MERGES chat")
    ages_in_days = [0, 10, 179, 181, 200, 365]
    for row_id, age in enumerate(ages_in_days):
        ch_client.command(f"INSERT INTO chat VALUES ({row_id}, now() - INTERVAL {age} DAY, 'x')")
    assert ch_client.command("SELECT count() FROM chat") == len(ages_in_days)

    ch_client.command("ALTER TABLE chat MATERIALIZE TTL SETTINGS mutations_sync = 2")

    remaining = ch_client.query("SELECT id FROM chat ORDER BY id").result_columns[0]
    assert remaining == [0, 1, 2]


def test_data_persists_after_close_and_reopen(ch_client: Client, chdb_path: Path, tmp_path: Path) -> None:
    ch_client.command(CHAT_TABLE)
    ch_client.command("INSERT INTO chat VALUES (7, now(), 'kept')")
    ch_client.close()

    elsewhere = load_settings(env={"RECORDS_CHDB_PATH": str(tmp_path / "unused")})
    with connect(elsewhere, path=chdb_path) as reopened:
        assert reopened.query("SELECT id, body FROM chat").result_rows == [(7, "kept")]
    assert not (tmp_path / "unused").exists()


def test_readonly_client_reads_but_refuses_writes(ch_client: Client, chdb_settings: Settings) -> None:
    ch_client.command(CHAT_TABLE)
    ch_client.command("INSERT INTO chat VALUES (1, now(), 'a')")

    with connect(chdb_settings, readonly=True) as reader:
        assert reader.command("SELECT count() FROM chat") == 1
        with pytest.raises(ClickHouseError, match="READONLY"):
            run_statement(reader, "INSERT INTO chat VALUES (2, now(), 'b')")
    assert ch_client.command("SELECT count() FROM chat") == 1


def test_describe_target_names_the_embedded_directory(chdb_settings: Settings, chdb_path: Path) -> None:
    assert describe_target(chdb_settings) == f"embedded chDB at {chdb_path}"


def test_cli_runs_ddl_insert_and_prints_json_and_csv(chdb_path: Path) -> None:
    env, cwd = chdb_env(chdb_path), chdb_path.parent
    create = run_records("sql", CHAT_TABLE, env=env, cwd=cwd)
    two_rows = "INSERT INTO chat VALUES (1, '2026-01-02 03:04:05', 'hi'), (2, now(), 'yo')"
    insert = run_records("sql", two_rows, env=env, cwd=cwd)
    as_json = run_records("sql", "--format", "json", "SELECT id, ts, body FROM chat ORDER BY id", env=env, cwd=cwd)
    as_csv = run_records("sql", "-f", "csv", "SELECT id, body FROM chat ORDER BY id", env=env, cwd=cwd)
    as_table = run_records("sql", "SELECT body FROM chat ORDER BY id", env=env, cwd=cwd)

    assert (create.returncode, create.stdout.strip()) == (0, "ok"), create.stderr
    assert (insert.returncode, insert.stdout.strip()) == (0, "ok"), insert.stderr
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [row["id"] for row in rows] == [1, 2]
    assert rows[0] == {"id": 1, "ts": "2026-01-02T03:04:05", "body": "hi"}
    dt.datetime.fromisoformat(rows[1]["ts"])
    assert list(csv.reader(as_csv.stdout.splitlines())) == [["id", "body"], ["1", "hi"], ["2", "yo"]]
    assert as_table.returncode == 0, as_table.stderr
    assert "body" in as_table.stdout
    assert "hi" in as_table.stdout
    assert "yo" in as_table.stdout


def test_cli_bad_query_is_one_error_line_and_exit_1(chdb_path: Path) -> None:
    result = run_records("sql", "SELECT * FROM no_such_table", env=chdb_env(chdb_path), cwd=chdb_path.parent)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "UNKNOWN_TABLE" in lines[0]


def test_cli_on_a_directory_owned_by_another_process_says_so(ch_client: Client, chdb_path: Path) -> None:
    result = run_records("sql", "SELECT 1", env=chdb_env(chdb_path), cwd=chdb_path.parent)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "owned by another process" in lines[0]
    assert str(chdb_path) in lines[0]
