"""`records users ...` and `records sql` as a personal user, through the endpoint the sink
serves (this test process owns the chDB directory and serves it like the sink)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from sink.sink_process import apply_schema
from tests.support.endpoint import served_store

PASSWORD = "correct horse battery"


def records(chdb_path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "RECORDS_SQL_USER", "RECORDS_SQL_PASSWORD")
    }
    environment.update(RECORDS_CHDB_PATH=str(chdb_path), RECORDS_DATA_DIR=str(chdb_path.parent / "data"), **env)
    return subprocess.run(
        [sys.executable, "-c", "from records.cli import main; main()", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_dpo_adds_lists_changes_and_removes_a_user(chdb_path: Path, chdb_settings: Settings) -> None:
    added = records(chdb_path, "users", "add", "alice", "--role", "analyst", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "user alice added with role analyst"

    users_file = chdb_settings.users_file
    assert oct(users_file.stat().st_mode & 0o777) == "0o600"
    assert oct(users_file.parent.stat().st_mode & 0o777) == "0o700"
    assert PASSWORD not in users_file.read_text()
    assert json.loads(users_file.read_text())["users"][0]["password_hash"].startswith("scrypt$")

    listed = records(chdb_path, "users", "list")
    assert listed.stdout.split("\t")[:2] == ["alice", "analyst"]
    again = records(chdb_path, "users", "add", "alice", "--role", "dpo", "--password-stdin", stdin=PASSWORD + "\n")
    assert (
        again.returncode == 1
        and again.stderr.strip() == "error: user alice exists already (use `records users passwd alice`)"
    )
    short = records(chdb_path, "users", "add", "bob", "--role", "analyst", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    bad_role = records(chdb_path, "users", "add", "bob", "--role", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_role.returncode != 0

    before = users_file.read_text()
    assert (
        records(chdb_path, "users", "passwd", "alice", "--password-stdin", stdin="another long one\n").returncode == 0
    )
    assert users_file.read_text() != before
    assert records(chdb_path, "users", "remove", "alice").returncode == 0
    assert records(chdb_path, "users", "list").stdout.startswith("no users")


@pytest.fixture
def sink_endpoint(ch_client: Client, chdb_settings: Settings) -> Iterator[None]:
    apply_schema(ch_client)
    with served_store(chdb_settings):
        yield


def test_an_analyst_queries_with_her_own_user_and_the_dpo_sees_it(chdb_path: Path, sink_endpoint: None) -> None:
    records(chdb_path, "users", "add", "alice", "--role", "analyst", "--password-stdin", stdin=PASSWORD + "\n")
    as_alice = {"RECORDS_SQL_USER": "alice", "RECORDS_SQL_PASSWORD": PASSWORD}

    views = records(chdb_path, "sql", "-f", "json", "SELECT count() AS n FROM analyst.calls", **as_alice)
    raw = records(chdb_path, "sql", "SELECT count() FROM records.calls", **as_alice)
    wrong = records(chdb_path, "sql", "SELECT 1", RECORDS_SQL_USER="alice", RECORDS_SQL_PASSWORD="guess-guess")
    owner = records(chdb_path, "sql", "-f", "json", "SELECT count() AS n FROM records.calls")

    assert views.returncode == 0, views.stderr
    assert json.loads(views.stdout) == [{"n": 0}]
    assert raw.returncode == 1
    [line] = raw.stderr.strip().splitlines()
    assert line.startswith("error: ") and "not enough privileges to read records.calls" in line
    assert wrong.returncode == 1 and "Authentication failed" in wrong.stderr and "guess-guess" not in wrong.stderr
    assert owner.returncode == 0 and json.loads(owner.stdout) == [{"n": 0}]

    log = records(chdb_path, "users", "access-log", "--user", "alice")
    lines = [line.split("\t") for line in log.stdout.strip().splitlines()]
    assert ["alice", "analyst", "accepted", "analyst.calls", "1"] in [row[1:6] for row in lines]
    assert any(row[3] == "refused" and row[4] == "records.calls" for row in lines)
