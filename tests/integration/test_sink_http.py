"""The embedded store's read-only HTTP endpoint (what the sink serves while it owns the chDB
directory), with clickhouse-connect's HTTP client, plain HTTP and `records sql`.

This test process owns the directory (like the sink would) and serves it; `records sql`
runs in another process and must find the endpoint through the owner file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.access_users import read_owner_credential
from pipeline.clickhouse import connect
from pipeline.clickhouse_http import EmbeddedHttpServer, Owner, endpoint_for, read_owner, remove_owner, write_owner
from pipeline.config import Settings
from sink.sink_process import apply_schema

ROWS = 12


@pytest.fixture
def served(ch_client: Client, chdb_settings: Settings, chdb_path: Path) -> Iterator[Owner]:
    apply_schema(ch_client)
    ch_client.command(
        "INSERT INTO records.calls (event_id, source_event_id, subject_keys, call_id, direction, caller_number, "
        "service_number, started_at, ended_at, ingested_at, expires_at) "
        f"SELECT 'c' || toString(number), 's', ['k' || toString(number)], 'c' || toString(number), 'INBOUND', "
        f"'+358401234567', '+35810100', now64(3), now64(3), now64(3), now64(3) + INTERVAL 730 DAY FROM numbers({ROWS})"
    )
    reader = connect(chdb_settings, readonly=True)
    server = EmbeddedHttpServer(endpoint_for(chdb_settings, reader, threading.RLock()), port=0)
    server.start()
    owner = write_owner(chdb_path, "127.0.0.1", server.port)
    try:
        yield owner
    finally:
        remove_owner(chdb_path)
        server.close()
        reader.close()


def owner_client(owner: Owner, chdb_path: Path, **kwargs: Any) -> Client:
    """clickhouse-connect with the sink's owner credential, as `pipeline.clickhouse.connect` uses it."""
    credential = read_owner_credential(chdb_path)
    assert credential is not None
    return clickhouse_connect.get_client(
        host=owner.host, port=owner.port, username=credential.user, password=credential.password.get(), **kwargs
    )


def owner_headers(chdb_path: Path) -> dict[str, str]:
    credential = read_owner_credential(chdb_path)
    assert credential is not None
    return {"X-ClickHouse-User": credential.user, "X-ClickHouse-Key": credential.password.get()}


def records_cli(chdb_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"}
    env.update(RECORDS_CHDB_PATH=str(chdb_path), RECORDS_DATA_DIR=str(chdb_path.parent / "data"))
    return subprocess.run(
        [sys.executable, "-c", "from records.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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

    read = records_cli(chdb_path, "sql", "-f", "json", "SELECT count() AS n FROM analyst.calls")
    write = records_cli(chdb_path, "sql", "INSERT INTO records.calls (event_id) VALUES ('x')")

    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [{"n": ROWS}]
    assert write.returncode == 1
    [line] = write.stderr.strip().splitlines()
    assert line.startswith("error: ") and "read-only" in line


def test_without_an_owner_file_records_sql_names_the_owner(ch_client: Client, chdb_path: Path) -> None:
    result = records_cli(chdb_path, "sql", "SELECT 1")
    assert result.returncode == 1
    assert "owned by another process" in result.stderr


def test_init_while_the_sink_owns_the_store_checks_through_it(served: Owner, chdb_path: Path) -> None:
    result = records_cli(chdb_path, "clickhouse", "init")
    assert result.returncode == 0, result.stderr
    assert f"owned by the running sink (pid {served.pid}" in result.stdout
    assert "every table and view is present" in result.stdout
