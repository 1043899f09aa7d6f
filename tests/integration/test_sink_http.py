"""The embedded store's read-only HTTP endpoint (what the sink serves while it owns the chDB
directory), with clickhouse-connect's HTTP client, plain HTTP and `records sql`.

This test process owns the directory (like the sink would) and serves it; `records sql`
runs in another process and must find the endpoint through the owner file."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.chdb_owner import Owner, read_owner
from pipeline.config import Settings
from sink.sink_process import apply_schema
from tests.support.cli import chdb_env, run_records
from tests.support.endpoint import insert_calls, owner_client, owner_headers, served_store

ROWS = 12


@pytest.fixture
def served(ch_client: Client, chdb_settings: Settings) -> Iterator[Owner]:
    apply_schema(ch_client)
    insert_calls(ch_client, ROWS)
    with served_store(chdb_settings) as owner:
        yield owner


def test_clickhouse_connect_reads_through_the_endpoint(served: Owner, chdb_path: Path) -> None:
    client = owner_client(served, chdb_path)
    in_analyst = owner_client(served, chdb_path, database="analyst")

    assert client.query("SELECT count() FROM analyst.calls").result_rows == [(ROWS,)]
    assert in_analyst.query("SELECT count() FROM calls").result_rows == [(ROWS,)]
    assert "caller_number" not in in_analyst.query("SELECT * FROM calls LIMIT 1").column_names
    frame = client.query_df("SELECT call_id, duration_s FROM analyst.calls ORDER BY call_id LIMIT 2")
    assert list(frame["call_id"]) == ["c0", "c1"]
    bound = client.query(
        "SELECT count() FROM records.calls WHERE hasAny(subject_keys, {keys:Array(String)}) AND direction = {d:String}",
        parameters={"keys": ["k1", "k2", "it's"], "d": "INBOUND"},
    )
    assert bound.result_rows == [(2,)]
    many = [f"k{n}" for n in range(20_000)]  # long parameters travel as multipart form fields
    assert client.query(
        "SELECT count() FROM records.calls WHERE hasAny(subject_keys, {keys:Array(String)})", parameters={"keys": many}
    ).result_rows == [(ROWS,)]
    assert client.command("SELECT version()") == client.server_version


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("INSERT INTO records.calls (event_id) VALUES ('x')", 164),
        ("ALTER TABLE records.calls DELETE WHERE 1", 164),
        ("DROP TABLE records.calls", 164),
        ("SYSTEM STOP MERGES", 164),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 497),
        ("SELECT 1 INTO OUTFILE '/tmp/records-endpoint-test.txt'", 497),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", 497),
    ],
)
def test_the_endpoint_refuses_writes_and_outside_access(
    served: Owner, chdb_path: Path, statement: str, code: int
) -> None:
    client = owner_client(served, chdb_path)
    with pytest.raises(DatabaseError) as refused:
        client.command(statement)
    assert refused.value.code == code
    assert client.query("SELECT count() FROM records.calls").result_rows == [(ROWS,)]


def test_a_client_insert_is_refused(served: Owner, chdb_path: Path) -> None:
    client = owner_client(served, chdb_path)
    with pytest.raises(DatabaseError, match="read-only"):
        client.insert("records.subject_restrictions", [["k", "RESTRICTION", True, "r", datetime.now(UTC)]])


def test_plain_http_gets_the_engines_own_formats(served: Owner, chdb_path: Path) -> None:
    base = f"http://{served.host}:{served.port}"
    auth = owner_headers(chdb_path)
    with urllib.request.urlopen(f"{base}/ping") as response:
        assert response.read() == b"Ok.\n"
    query = urllib.parse.quote("SELECT count() AS n FROM analyst.calls FORMAT JSONEachRow")
    with urllib.request.urlopen(urllib.request.Request(f"{base}/?query={query}", headers=auth)) as response:
        assert response.headers["X-ClickHouse-Format"] == "JSONEachRow"
        assert json.loads(response.read()) == {"n": ROWS}
    request = urllib.request.Request(base, data=b"SELECT 40 + 2", method="POST", headers=auth)
    with urllib.request.urlopen(request) as response:
        assert response.read() == b"42\n"
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(
            urllib.request.Request(base, data=b"SELECT * FROM records.nowhere", method="POST", headers=auth)
        )
    assert failed.value.code == 404
    assert failed.value.headers["X-ClickHouse-Exception-Code"] == "60"


def test_records_sql_goes_through_the_owner(served: Owner, chdb_path: Path) -> None:
    assert read_owner(chdb_path) == served

    read = run_records("sql", "-f", "json", "SELECT count() AS n FROM analyst.calls", env=chdb_env(chdb_path))
    write = run_records("sql", "INSERT INTO records.calls (event_id) VALUES ('x')", env=chdb_env(chdb_path))

    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [{"n": ROWS}]
    assert write.returncode == 1
    [line] = write.stderr.strip().splitlines()
    assert line.startswith("error: ") and "read-only" in line


def test_without_an_owner_file_records_sql_names_the_owner(ch_client: Client, chdb_path: Path) -> None:
    result = run_records("sql", "SELECT 1", env=chdb_env(chdb_path))
    assert result.returncode == 1
    assert "owned by another process" in result.stderr


def test_init_while_the_sink_owns_the_store_checks_through_it(served: Owner, chdb_path: Path) -> None:
    result = run_records("clickhouse", "init", env=chdb_env(chdb_path))
    assert result.returncode == 0, result.stderr
    assert f"owned by the running sink (pid {served.pid}" in result.stdout
    assert "every table and view is present" in result.stdout
