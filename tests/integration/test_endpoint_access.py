"""The embedded query endpoint against the attacks of issue 11 finding 1, on the real engine.

This test process owns a chDB directory and serves it like the sink does (`endpoint_for`);
the requests are what an attacker on the same machine, or a web page in the analyst's
browser, would send: plain HTTP, and clickhouse-connect as analysts use it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.access_roles import Role
from pipeline.access_users import UserStore, read_owner_credential
from pipeline.config import Settings
from pipeline.query_endpoint import EndpointLimits
from sink.sink_process import apply_schema
from tests.support.endpoint import insert_calls, served_store

ROWS = 12
SECRET = "PEPPER-0123456789abcdef-not-for-analysts"
PASSWORDS = {"ana": "analyst-pass-1", "dora": "dpo-pass-12", "pipe": "pipeline-pass-1"}


@dataclass(frozen=True)
class Served:
    base: str
    chdb_path: Path
    secret_file: Path
    log_file: Path


def _serve(ch_client: Client, settings: Settings, chdb_path: Path, limits: EndpointLimits) -> Iterator[Served]:
    apply_schema(ch_client)
    insert_calls(ch_client, ROWS)
    store = UserStore(settings.users_file)
    now = datetime.now(UTC).isoformat()
    store.add("ana", Role.analyst, PASSWORDS["ana"], now)
    store.add("dora", Role.dpo, PASSWORDS["dora"], now)
    store.add("pipe", Role.pipeline, PASSWORDS["pipe"], now)
    secret_file = settings.data_dir / "secrets" / "pepper"
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(SECRET + "\n")
    with served_store(settings, limits=limits) as owner:
        yield Served(f"http://127.0.0.1:{owner.port}", chdb_path, secret_file, settings.access_log_file)


@pytest.fixture
def served(ch_client: Client, chdb_settings: Settings, chdb_path: Path) -> Iterator[Served]:
    yield from _serve(ch_client, chdb_settings, chdb_path, EndpointLimits())


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ask(served: Served, sql: str, *, headers: Mapping[str, str] | None = None, **params: str) -> Reply:
    """POST `sql` with URL `params`; the reply whatever its status."""
    url = served.base + "/?" + urllib.parse.urlencode(params) if params else served.base
    request = urllib.request.Request(url, data=sql.encode(), method="POST", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))


def analyst_client(served: Served, **kwargs: object) -> Client:
    port = int(served.base.rsplit(":", 1)[1])
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=port, username="ana", password=PASSWORDS["ana"], **kwargs
    )


# ---- who may ask ----------------------------------------------------------------------


def test_anonymous_and_wrong_passwords_are_refused(served: Served) -> None:
    anonymous = ask(served, "SELECT count() FROM records.calls")
    wrong = ask(served, "SELECT 1", headers={"X-ClickHouse-User": "ana", "X-ClickHouse-Key": "guess"})
    unknown = ask(served, "SELECT 1", user="mallory", password="x")

    for reply in (anonymous, wrong, unknown):
        assert reply.status == 401
        assert reply.headers["X-ClickHouse-Exception-Code"] == "516"
    assert str(ROWS).encode() not in anonymous.body
    # the three ways ClickHouse takes credentials all work
    assert ask(served, "SELECT 7", headers=basic("ana")).body == b"7\n"
    assert (
        ask(served, "SELECT 7", headers={"X-ClickHouse-User": "ana", "X-ClickHouse-Key": PASSWORDS["ana"]}).body
        == b"7\n"
    )
    assert ask(served, "SELECT 7", user="ana", password=PASSWORDS["ana"]).body == b"7\n"


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example"},
        {"Host": "attacker.example:8123"},
        {"Host": "127.0.0.1.attacker.example"},
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
    ],
)
def test_dns_rebinding_and_browser_pages_are_refused(served: Served, headers: dict[str, str]) -> None:
    reply = ask(served, "SELECT count() FROM analyst.calls", headers={**basic("ana"), **headers})
    assert reply.status == 403
    assert reply.body.startswith(b"Code: 497.")


def test_local_hosts_and_origins_are_served(served: Served) -> None:
    port = served.base.rsplit(":", 1)[1]
    for headers in ({"Host": f"localhost:{port}"}, {"Origin": f"http://127.0.0.1:{port}"}):
        assert ask(served, "SELECT 1", headers={**basic("ana"), **headers}).body == b"1\n"


# ---- one statement, checked as it runs --------------------------------------------------


def test_a_second_statement_in_default_format_does_not_run(served: Served) -> None:
    smuggled = [
        "TSV; SELECT 222",
        f"TSV; SELECT * FROM file('{served.secret_file}', 'LineAsString')",
        "TSV; SYSTEM STOP MERGES",
        "TSV; KILL MUTATION WHERE 1",
        "TSV; SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    ]
    for default_format in smuggled:
        reply = ask(served, "SELECT 1", headers=basic("pipe"), default_format=default_format)
        assert reply.status == 400, default_format
        assert b"222" not in reply.body and SECRET.encode() not in reply.body


def test_multi_statements_are_refused_by_the_engines_parser(served: Served) -> None:
    reply = ask(served, "SELECT 1; SELECT 222", headers=basic("pipe"))
    assert reply.status == 400
    assert reply.headers["X-ClickHouse-Exception-Code"] == "62"
    assert not reply.body.startswith(b"1\n")


def test_string_literal_tables_do_not_read_files(served: Served) -> None:
    for sql in (
        f"SELECT * FROM '{served.secret_file}'",
        f"SELECT * FROM `{served.secret_file}`",
        f"SELECT * FROM default.`{served.secret_file}`",
    ):
        reply = ask(served, sql, headers=basic("pipe"))
        assert reply.status == 403, sql
        assert SECRET.encode() not in reply.body


def test_into_outfile_is_refused_for_every_statement(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "evil.pth"
    for sql in (
        f"DESCRIBE (SELECT 1 AS x) INTO OUTFILE '{target}' FORMAT TSVRaw",
        f"SELECT 1 INTO OUTFILE '{target}'",
        f"SELECT 1 INTO OUTFILE '{target}' FORMAT TSV",
    ):
        reply = ask(served, sql, headers=basic("pipe"))
        assert reply.status in (403, 400), sql
    assert not target.exists()


# The endpoint's refusals before the engine sees a statement: 497 for a table function,
# 164 (readonly) for writes, SYSTEM, KILL, SET and per-query settings.
TABLE_FUNCTIONS = [
    "SELECT * FROM numbers(3)",
    "SELECT * FROM s3('http://127.0.0.1:1/x.csv')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM merge('records', '.*')",
    "SELECT * FROM (SELECT * FROM file('/etc/hostname', 'LineAsString'))",
    "SELECT 1 WHERE 1 IN (SELECT 1 FROM url('http://127.0.0.1:1/', 'LineAsString'))",
]
WRITES_SYSTEM_AND_SETTINGS = [
    "SYSTEM STOP MERGES",
    "KILL MUTATION WHERE 1",
    "SET max_execution_time = 0",
    "ALTER TABLE records.calls DELETE WHERE 1",
    "INSERT INTO records.calls (event_id) VALUES ('x')",
    "DROP TABLE records.calls",
    "EXPLAIN SELECT * FROM file('/etc/hostname')",
    "SELECT 1 SETTINGS max_execution_time = 0",
]


@pytest.mark.parametrize(
    ("sql", "code"),
    [(sql, "497") for sql in TABLE_FUNCTIONS] + [(sql, "164") for sql in WRITES_SYSTEM_AND_SETTINGS],
)
def test_table_functions_writes_system_and_settings_statements_are_refused(served: Served, sql: str, code: str) -> None:
    reply = ask(served, sql, headers=basic("pipe"))
    assert reply.status == 403
    assert reply.headers["X-ClickHouse-Exception-Code"] == code


def test_formats_and_settings_are_allow_listed(served: Served) -> None:
    assert ask(served, "SELECT 1 FORMAT TSV SETTINGS max_result_rows = 0", headers=basic("ana")).status in (400, 403)
    assert ask(served, "SELECT 1", headers=basic("ana"), max_execution_time="0").status == 403
    assert ask(served, "SELECT 1", headers=basic("ana"), output_format_schema="/tmp/x").status == 403
    assert ask(served, "SELECT 1 FORMAT Template", headers=basic("ana")).status == 400
    ok = ask(served, "SELECT 1 AS n", headers=basic("ana"), default_format="JSONEachRow", max_threads="1")
    assert json.loads(ok.body) == {"n": 1}


# ---- what each role may read ------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "sql", "allowed"),
    [
        ("ana", "SELECT count() FROM analyst.calls", True),
        ("ana", "SELECT count() FROM calls", True),  # the analyst's default database
        ("ana", "SELECT count() FROM records.calls", False),
        ("ana", "SELECT count() FROM analyst.calls WHERE call_id IN records.calls", False),
        ("ana", "SELECT (SELECT any(caller_number) FROM records.calls)", False),
        ("ana", "WITH x AS (SELECT caller_number FROM records.calls) SELECT count() FROM x", False),
        ("ana", "SELECT name FROM system.tables", False),
        ("ana", "SELECT count() FROM system.mutations", False),
        ("ana", "SHOW TABLES FROM records", False),
        ("ana", "DESCRIBE TABLE records.calls", False),
        ("ana", "DESCRIBE TABLE analyst.calls", True),
        ("dora", "SELECT count() FROM records.calls", True),
        ("dora", "SELECT count() FROM analyst.calls", True),
        ("dora", "SELECT name FROM system.tables WHERE database = 'records'", True),
        ("dora", "SELECT count() FROM system.mutations", False),
        ("dora", "SELECT count() FROM system.query_log", False),
        ("pipe", "SELECT count() FROM system.parts WHERE database = 'records'", True),
        ("pipe", "SELECT count() FROM system.mutations", False),
    ],
)
def test_each_role_reads_only_its_tables(served: Served, user: str, sql: str, allowed: bool) -> None:
    reply = ask(served, sql, headers=basic(user))
    if allowed:
        assert reply.status == 200, reply.body
    else:
        assert reply.status == 403, reply.body
        assert reply.headers["X-ClickHouse-Exception-Code"] == "497"
        assert b"+358" not in reply.body


def test_an_analyst_uses_clickhouse_connect_on_the_views_only(served: Served) -> None:
    client = analyst_client(served, database="analyst")
    assert client.query("SELECT count() FROM calls").result_rows == [(ROWS,)]
    assert "caller_number" not in client.query("SELECT * FROM calls LIMIT 1").column_names
    with pytest.raises(DatabaseError) as refused:
        client.query("SELECT caller_number FROM records.calls")
    assert refused.value.code == 497
    with pytest.raises(DatabaseError):
        analyst_client(served, database="records")


# ---- limits -------------------------------------------------------------------------------


@pytest.fixture
def tight(ch_client: Client, chdb_settings: Settings, chdb_path: Path) -> Iterator[Served]:
    yield from _serve(ch_client, chdb_settings, chdb_path, EndpointLimits(max_execution_time=1, max_result_rows=5))


def test_a_slow_query_is_stopped_and_big_results_refused(tight: Served) -> None:
    # 12 rows x 0.25 s, one block (the engine's cap on a sleep is 3 s a block); the limit is 1 s
    slow = ask(tight, "SELECT sum(sleepEachRow(0.25)) FROM analyst.calls", headers=basic("ana"))
    assert slow.headers.get("X-ClickHouse-Exception-Code") == "159", slow.body  # TIMEOUT_EXCEEDED
    big = ask(tight, "SELECT call_id FROM analyst.calls", headers=basic("ana"))
    assert big.headers["X-ClickHouse-Exception-Code"] == "396"  # TOO_MANY_ROWS_OR_BYTES
    assert ask(tight, "SELECT count() FROM analyst.calls", headers=basic("ana")).body == f"{ROWS}\n".encode()


# ---- the access log -----------------------------------------------------------------------


def test_every_query_is_logged_without_its_literals(served: Served) -> None:
    assert (
        ask(served, "SELECT count() FROM analyst.calls WHERE call_id != 'needle-4711'", headers=basic("ana")).status
        == 200
    )
    assert (
        ask(
            served, "SELECT caller_number FROM records.calls WHERE caller_number = '+358409999'", headers=basic("ana")
        ).status
        == 403
    )
    assert ask(served, "SELECT 1", user="ana", password="wrong").status == 401

    text = served.log_file.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert oct(served.log_file.stat().st_mode & 0o777) == "0o600"
    assert oct(served.log_file.parent.stat().st_mode & 0o777) == "0o700"
    assert "needle-4711" not in text and "+358409999" not in text
    accepted, refused, unauthenticated = entries[-3:]
    assert accepted["user"] == "ana" and accepted["role"] == "analyst" and accepted["outcome"] == "accepted"
    assert accepted["tables"] == ["analyst.calls"] and accepted["rows"] == 1
    assert refused["outcome"] == "refused" and "records.calls" in refused["reason"]
    assert unauthenticated["outcome"] == "refused" and unauthenticated["reason"] == "AUTHENTICATION_FAILED"


def test_a_failed_login_under_an_unknown_name_does_not_log_the_name(served: Served) -> None:
    # A password typed into the user field must not end up in the access log.
    assert ask(served, "SELECT 1", user="S3cret-Typed-As-Name", password="x").status == 401
    assert ask(served, "SELECT 1", user="ana", password="wrong").status == 401

    text = served.log_file.read_text()
    assert "S3cret-Typed-As-Name" not in text
    unknown, known = (json.loads(line) for line in text.splitlines()[-2:])
    assert unknown["user"] == "(unknown user)" and unknown["reason"] == "AUTHENTICATION_FAILED"
    assert known["user"] == "ana" and known["reason"] == "AUTHENTICATION_FAILED"


def test_password_guessing_locks_the_name_not_the_other_users(served: Served) -> None:
    for _ in range(5):  # the default LoginThrottle: locked after 5 failures in a row
        assert ask(served, "SELECT 1", user="ana", password="guess").status == 401

    # locked: even the right password is refused, without telling that it was right
    locked = ask(served, "SELECT 7", headers=basic("ana"))
    assert locked.status == 401 and b"7" not in locked.body
    assert b"too many failed logins" in locked.body
    assert 0 < int(locked.headers["Retry-After"]) <= 30
    assert json.loads(served.log_file.read_text().splitlines()[-1])["reason"] == "AUTHENTICATION_LOCKED"
    # other users, and the owner credential (random, nothing to guess), are not affected
    assert ask(served, "SELECT 7", headers=basic("dora")).body == b"7\n"
    credential = read_owner_credential(served.chdb_path)
    assert credential is not None
    for _ in range(6):
        ask(served, "SELECT 1", headers={"X-ClickHouse-User": credential.user, "X-ClickHouse-Key": "guess"})
    owner = {"X-ClickHouse-User": credential.user, "X-ClickHouse-Key": credential.password.get()}
    assert ask(served, "SELECT 7", headers=owner).body == b"7\n"


def test_the_owner_credential_is_private_and_works(served: Served) -> None:
    credential = read_owner_credential(served.chdb_path)
    assert credential is not None
    path = served.chdb_path.with_name(served.chdb_path.name + ".owner.credential")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    headers = {"X-ClickHouse-User": credential.user, "X-ClickHouse-Key": credential.password.get()}
    assert ask(served, "SELECT count() FROM records.calls", headers=headers).body == f"{ROWS}\n".encode()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM {t:Identifier}",
        "SELECT count() FROM analyst.calls WHERE call_id IN {t:Identifier}",
        "SELECT (SELECT any(caller_number) FROM {t:Identifier})",
    ],
)
def test_table_names_in_parameters_are_held_to_the_role(served: Served, sql: str) -> None:
    reply = ask(served, sql, headers=basic("ana"), param_t="records.calls")
    assert reply.status == 403, reply.body
    assert b"+358" not in reply.body
