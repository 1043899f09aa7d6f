"""The query endpoint of the embedded store without the HTTP: authenticate the caller,
check the query with the engine's own parser (pipeline/query_check.py), run it under the
endpoint's limits on the read-only engine handle, and log it without its text
(pipeline/access_log.py). pipeline/clickhouse_http.py serves it over HTTP; its docstring
describes the subset of ClickHouse's interface and the three layers of guarding.

Engine calls are serialised with the owner's lock, shared with the sink's writes."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from pipeline.access_log import AccessEntry, AccessLog
from pipeline.access_roles import GRANTS, Role
from pipeline.access_users import Authenticator, UserStore, create_owner_credential
from pipeline.config import Settings
from pipeline.exceptions import AccessError
from pipeline.login_throttle import LoginThrottle
from pipeline.query_check import (
    Refused,
    check_ast,
    check_format,
    check_settings,
    check_statement_kind,
    check_tables,
    denied,
    split_formatted,
    string_literal,
    tables_of_query_tree,
    trailing_format,
)

log = logging.getLogger(__name__)

# What the access log says for a failed login under a name that is no user.
UNKNOWN_USER = "(unknown user)"

# Parameters a ClickHouse server reads itself rather than as query settings.
_TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "user",
        "password",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "readonly",
        "http_response_buffer_size",
        "cancel_http_readonly_queries_on_client_close",
    }
)
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}
_STATUS_BY_CODE = {
    62: 400,
    27: 400,
    36: 400,
    73: 400,
    115: 400,
    164: 403,
    497: 403,
    516: 401,
    60: 404,
    81: 404,
    47: 404,
}
_ERROR_NAME = re.compile(r"\(([A-Z_]+)\)\s*$")
_CODE = re.compile(r"Code: (\d+)\.")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class EndpointLimits:
    """Bounds on every query: seconds, result rows and result bytes (the engine throws)."""

    max_execution_time: int = 60
    max_result_rows: int = 5_000_000
    max_result_bytes: int = 512 * 1024 * 1024

    def timeout(self) -> dict[str, str]:
        """The time bound alone (for the checks, whose output is the plan, not the result)."""
        return {"max_execution_time": str(self.max_execution_time), "timeout_overflow_mode": "throw"}

    def settings(self) -> dict[str, str]:
        return {
            "max_execution_time": str(self.max_execution_time),
            "timeout_overflow_mode": "throw",
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "result_overflow_mode": "throw",
        }


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request."""

    user: str
    role: Role


@dataclass
class _Ran:
    """What one request did, for the access log."""

    tables: tuple[str, ...] = ()
    rows: int | None = None
    format: str | None = None


class LoginLocked(Refused):
    """A login under a name locked after repeated failures (pipeline/login_throttle.py);
    the password was not checked."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            516,
            "AUTHENTICATION_LOCKED",
            f"too many failed logins under this user name: try again in {math.ceil(retry_after)} s",
        )
        self.retry_after = retry_after


class QueryEndpoint:
    """Authenticates, checks and runs one HTTP query on the read-only engine handle, and
    logs it; no HTTP parsing here."""

    def __init__(
        self,
        reader: Client,
        lock: threading.Lock | threading.RLock,
        *,
        authenticator: Authenticator,
        access_log: AccessLog | None,
        limits: EndpointLimits | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.reader = reader
        self.lock = lock
        self.authenticator = authenticator
        self.throttle = throttle or LoginThrottle()
        self.access_log = access_log
        self.limits = limits or EndpointLimits()
        with lock:
            self.timezone = str(reader.command("SELECT timezone()"))
            self.version = str(reader.command("SELECT version()"))
            names = reader.query("SELECT name FROM system.databases").result_rows
            self.databases = frozenset(str(row[0]) for row in names) | {"default"}

    def authenticate(self, user: str | None, password: str | None) -> Caller:
        """The caller, or Refused (516) for a missing user or a wrong password."""
        if not user:
            raise Refused(
                516, "AUTHENTICATION_FAILED", "authentication required: the embedded endpoint has no anonymous access"
            )
        owner = self.authenticator.owner
        throttled = owner is None or user != owner.user  # see pipeline/login_throttle.py
        if throttled and (wait := self.throttle.locked_for(user)) > 0:
            raise LoginLocked(wait)
        try:
            role = self.authenticator.authenticate(user, password or "")
        except AccessError as exc:
            log.error("%s", exc)
            raise Refused(516, "AUTHENTICATION_FAILED", "the users file cannot be read: ask the operator") from exc
        if role is None:
            if throttled and (lockout := self.throttle.failed(user)) > 0:
                log.warning("a user name is locked for %d s after repeated failed logins", math.ceil(lockout))
            raise Refused(
                516,
                "AUTHENTICATION_FAILED",
                f"{user[:64]}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        if throttled:
            self.throttle.succeeded(user)
        return Caller(user, role)

    def refuse_unauthenticated(self, user: str | None, exc: Refused) -> Answer:
        """The answer to a request that failed authentication, logged."""
        # An unknown name is not logged as typed: it may be a password typed into the wrong field.
        try:
            known = bool(user) and self.authenticator.knows(user or "")
        except AccessError:
            known = False
        self._log((user or "")[:64] if known else UNKNOWN_USER, "", "", "refused", exc.name, _Ran(), 0)
        headers = {"Retry-After": str(math.ceil(exc.retry_after))} if isinstance(exc, LoginLocked) else {}
        return error_answer(exc.code, str(exc), headers)

    def run(self, sql: str, params: Mapping[str, str], caller: Caller) -> Answer:
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.timezone}
        started = time.perf_counter_ns()
        ran = _Ran()
        try:
            body = self._checked_run(sql, params, caller, ran)
        except Refused as exc:
            ran.tables = ran.tables or exc.tables
            self._log(caller.user, caller.role.value, query_id, "refused", f"{exc.name}: {exc.reason}", ran, started)
            return error_answer(exc.code, str(exc), headers)
        except DriverError as exc:
            message = str(exc)
            found = _CODE.search(message)
            code = int(found.group(1)) if found else 1001
            name = _ERROR_NAME.search(message)
            self._log(
                caller.user,
                caller.role.value,
                query_id,
                "failed",
                name.group(1) if name else f"code {code}",
                ran,
                started,
            )
            return error_answer(code, message[found.start() :] if found else message, headers)
        self._log(caller.user, caller.role.value, query_id, "accepted", "", ran, started)
        fmt = ran.format or "TabSeparated"
        elapsed = time.perf_counter_ns() - started
        summary = {"read_rows": str(ran.rows or 0), "result_bytes": str(len(body)), "elapsed_ns": str(elapsed)}
        headers.update(
            {
                "X-ClickHouse-Format": fmt,
                "Content-Type": _CONTENT_TYPES.get(fmt, "application/octet-stream"),
                "X-ClickHouse-Summary": json.dumps(summary),
            }
        )
        return Answer(200, body, headers)

    def _checked_run(self, sql: str, params: Mapping[str, str], caller: Caller, ran: _Ran) -> bytes:
        """Check the final text with the engine's parser (see the module docstring), then
        run the engine's own formatting of it: what was checked is what runs."""
        grants = GRANTS[caller.role]
        database = params.get("database") or grants.default_database
        if not grants.may_use_database(database):
            raise denied(f"not enough privileges to use database {database[:64]}")
        settings = check_settings(
            {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
        )
        bound = {k: v for k, v in params.items() if k.startswith("param_")}
        sql = sql.strip().rstrip(";").rstrip()
        check_statement_kind(sql)
        final = (
            sql
            if trailing_format(sql)
            else f"{sql}\n FORMAT {check_format(params.get('default_format') or 'TabSeparated')}"
        )
        with self.lock:
            formatted = split_formatted(self._format_query(final, database))
            ran.format = formatted.format
            ast, _ = self._engine(f"EXPLAIN AST {formatted.body}\nFORMAT TabSeparatedRaw", bound, {}, database)
            statement = check_ast(ast.decode("utf-8", "replace"), grants, database, self.databases)
            ran.tables = statement.tables
            if statement.kind == "select":
                tree, _ = self._engine(
                    f"EXPLAIN QUERY TREE {formatted.body}\nFORMAT TabSeparatedRaw",
                    bound,
                    self.limits.timeout(),
                    database,
                )
                ran.tables = tables_of_query_tree(tree.decode("utf-8", "replace"))
                check_tables(ran.tables, grants)
            body, ran.rows = self._engine(formatted.text, bound, {**settings, **self.limits.settings()}, database)
        return body

    def _format_query(self, text: str, database: str) -> str:
        """The engine's formatting of `text`; the engine's SYNTAX_ERROR unless it is exactly one statement."""
        out, _ = self._engine(f"SELECT formatQuery({string_literal(text)}) AS q FORMAT JSONEachRow", {}, {}, database)
        return str(json.loads(out)["q"])

    def _engine(
        self, sql: str, bound: Mapping[str, str], settings: Mapping[str, str], database: str
    ) -> tuple[bytes, int]:
        """Run `sql` on the reader handle: its output and the number of result rows.
        Server-side parameters (`param_<name>`) arrive in ClickHouse's escaped-text form,
        ready for the engine, and go to the chDB backend untouched; settings are applied
        for this call only."""
        backend = self.reader._backend  # type: ignore[attr-defined]
        values = {k.removeprefix("param_"): v for k, v in bound.items()}
        result = backend._run_with_settings(sql, "TabSeparated", dict(settings), params=values, database=database)
        return result.bytes() or b"", int(result.rows_read())

    def _log(self, user: str, role: str, query_id: str, outcome: str, reason: str, ran: _Ran, started: int) -> None:
        if self.access_log is None:
            return
        elapsed_ms = (time.perf_counter_ns() - started) // 1_000_000 if started else 0
        entry = AccessEntry(
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            user=user,
            role=role,
            outcome=outcome,
            reason=reason,
            tables=ran.tables,
            rows=ran.rows,
            format=ran.format,
            query_id=query_id[:128],
            elapsed_ms=elapsed_ms,
        )
        try:
            self.access_log.append(entry)
        except OSError as exc:
            log.error("cannot write the access log %s: %s", self.access_log.path, exc.strerror)


def error_answer(code: int, message: str, headers: Mapping[str, str]) -> Answer:
    """An error as a ClickHouse server sends it: the text, its code in a header, the HTTP
    status of that code (500 for any other), and a basic-auth challenge for 516."""
    headers = {**headers, "X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain; charset=UTF-8"}
    if code == 516:
        headers["WWW-Authenticate"] = 'Basic realm="ClickHouse server"'
    return Answer(_STATUS_BY_CODE.get(code, 500), (message.rstrip() + "\n").encode(), headers)


def endpoint_for(
    settings: Settings,
    reader: Client,
    lock: threading.Lock | threading.RLock,
    limits: EndpointLimits | None = None,
) -> QueryEndpoint:
    """The endpoint the owner of `settings.chdb_path` serves: a fresh owner credential
    (pipeline/access_users.py), the personal users of `settings.users_file`, and the access
    log `settings.access_log_file`."""
    owner = create_owner_credential(settings.chdb_path)
    return QueryEndpoint(
        reader,
        lock,
        authenticator=Authenticator(UserStore(settings.users_file), owner),
        access_log=AccessLog(settings.access_log_file),
        limits=limits,
    )
