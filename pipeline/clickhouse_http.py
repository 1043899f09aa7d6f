"""The embedded store's read-only ClickHouse HTTP endpoint, and the owner file naming it.

In embedded mode one OS process owns the chDB directory (the sink). So that analysts
and tools can still query while it runs, the owner serves the subset of ClickHouse's
HTTP interface that clients use for reading, on 127.0.0.1, and records where in
`<chdb dir>.owner.json` ({"pid", "host", "port", ...}). `pipeline.clickhouse.connect`
reads that file and hands out an HTTP client to the owner instead of failing on the
lock, so `records sql`, clickhouse-connect and any ClickHouse tool work the same against
embedded and server mode.

The subset (what clickhouse-connect's HttpClient and curl send):
- `GET /ping` (and `GET /` without a query): `Ok.`;
- `GET|POST /?query=...` and/or the SQL in the body (they are joined with a newline), URL
  parameters: `database`, `default_format`, `query_id` (echoed), `param_<name>`
  (server-side parameters `{name:Type}`), any other ClickHouse setting (applied for that
  query); transport parameters (`session_id`, `compress`, `wait_end_of_query`,
  `client_protocol_version`, ...) are accepted and ignored: no sessions, no compression,
  protocol version 0 (Native blocks without block info, which clients then expect);
- answer: the engine's own output in the query's `FORMAT` (else `default_format`, else
  TabSeparated) with `X-ClickHouse-Format`, `X-ClickHouse-Timezone`,
  `X-ClickHouse-Query-Id`, `X-ClickHouse-Summary`; errors as ClickHouse sends them: the
  `Code: N. DB::Exception: ...` text, `X-ClickHouse-Exception-Code`, HTTP 400/403/404/500.
- `multipart/form-data` bodies (clickhouse-connect's form encoding for long parameters):
  the `query` and `param_<name>` fields;
Not served: external data (file parts), request compression, sessions, inserts.

Guarded like a ClickHouse server with users, in three layers:
- who: every query needs a user (HTTP basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key`
  as clickhouse-connect sends them, or `user`/`password` URL parameters): a personal user
  of pipeline/access_users.py or the sink's owner credential; `/ping` answers without.
  The Host header must name this machine (127.0.0.1, localhost, [::1]) and a browser's
  Origin must be local too, so a web page cannot reach the endpoint by DNS rebinding;
- what: the text exactly as it will run (the client's SQL plus the appended ` FORMAT x`)
  is parsed by the engine as one statement and checked on its AST and query tree
  (pipeline/query_check.py): reads only, no INTO OUTFILE, no table functions or file
  paths, only the tables the user's role may read (pipeline/access_roles.py), allow-listed
  formats and settings. The engine handle also runs with readonly=2;
- how much: `max_execution_time` and result-size limits (`EndpointLimits`) bound every
  query, so a slow one cannot hold the engine lock the sink's inserts and erasures share.
Every query is logged without its text (pipeline/access_log.py).

Engine calls are serialised with the owner's lock, shared with the sink's writes.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from pipeline.access_log import AccessEntry, AccessLog
from pipeline.access_roles import GRANTS, Role
from pipeline.access_users import Authenticator, UserStore, create_owner_credential, remove_owner_credential
from pipeline.config import Settings
from pipeline.exceptions import AccessError, ClickHouseError
from pipeline.login_throttle import LoginThrottle
from pipeline.query_check import (
    Refused,
    check_ast,
    check_format,
    check_settings,
    check_statement_kind,
    check_tables,
    denied,
    read_only,
    split_formatted,
    string_literal,
    tables_of_query_tree,
    trailing_format,
)

log = logging.getLogger(__name__)

# What the access log says for a failed login under a name that is no user.
UNKNOWN_USER = "(unknown user)"

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 8123

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
_LOCAL_HOST = re.compile(r"^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$")
_LOCAL_ORIGIN = re.compile(r"^https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$")
_CODE = re.compile(r"Code: (\d+)\.")
_MAX_BODY = 64 * 1024 * 1024
_MAX_URI = 1024 * 1024


# ---- the owner file -------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Who owns an embedded chDB directory and where it serves queries."""

    pid: int
    host: str
    port: int
    path: str
    started_at: str

    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def owner_file(chdb_path: Path) -> Path:
    """`<chdb dir>.owner.json`, next to the directory (the engine owns what is inside)."""
    return chdb_path.with_name(chdb_path.name + ".owner.json")


def write_owner(chdb_path: Path, host: str, port: int) -> Owner:
    owner = Owner(os.getpid(), host, port, str(chdb_path), datetime.now(UTC).isoformat(timespec="seconds"))
    target = owner_file(chdb_path)
    partial = target.with_name(target.name + f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(owner)) + "\n", encoding="utf-8")
    partial.replace(target)
    return owner


def read_owner(chdb_path: Path) -> Owner | None:
    """The owner file's content when it names a live process; None otherwise."""
    try:
        raw = json.loads(owner_file(chdb_path).read_text(encoding="utf-8"))
        owner = Owner(int(raw["pid"]), str(raw["host"]), int(raw["port"]), str(raw["path"]), str(raw["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return owner


def remove_owner(chdb_path: Path) -> None:
    """Remove the owner file if it is this process's."""
    current = read_owner(chdb_path)
    if current is not None and current.pid == os.getpid():
        owner_file(chdb_path).unlink(missing_ok=True)
        remove_owner_credential(chdb_path)


# ---- request checks ------------------------------------------------------------------


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body; a file part (external data) is refused."""
    message = BytesParser(policy=email_policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError("malformed multipart body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("a form part without a name")
        if part.get_filename() is not None:
            raise ValueError("external data (file parts) is not served by the embedded endpoint")
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else str(part.get_payload())
    return fields


# ---- the server -----------------------------------------------------------------------


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
        return self._error(exc.code, str(exc), headers)

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
            return self._error(exc.code, str(exc), headers)
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
            return self._error(code, message[found.start() :] if found else message, headers)
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

    @staticmethod
    def _error(code: int, message: str, headers: dict[str, str]) -> Answer:
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmbeddedHttpServer

    def handle_one_request(self) -> None:
        """http.server's, with ClickHouse's URI limit (1 MiB, `http_max_uri_size`) instead of
        64 KiB: clickhouse-connect puts a command's parameters in the URL."""
        try:
            self.raw_requestline = self.rfile.readline(_MAX_URI + 1)
            if len(self.raw_requestline) > _MAX_URI:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            handler = getattr(self, "do_" + self.command, None)
            if handler is None:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            handler()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        foreign = self._foreign()
        if foreign is not None:
            self._send(QueryEndpoint._error(foreign.code, str(foreign), {}), head=True)
            return
        self._send(Answer(200, b"", {"Content-Type": "text/html; charset=UTF-8"}), head=True)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        foreign = self._foreign()
        if foreign is not None:
            self._send(QueryEndpoint._error(foreign.code, str(foreign), {}))
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._send(QueryEndpoint._error(1001, f"Code: 1001. DB::Exception: {exc}. (BAD_REQUEST)", {}))
            return
        if parts.path.rstrip("/") in ("/ping", "/replicas_status"):
            self._send(Answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"}))
            return
        if parts.path not in ("", "/"):
            self._send(Answer(404, b"There is no handle " + parts.path.encode() + b"\n", {}))
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        endpoint = self.server.endpoint
        user, password = self._credentials(params)
        try:
            caller = endpoint.authenticate(user, password)
        except Refused as exc:
            self._send(endpoint.refuse_unauthenticated(user, exc))
            return
        if params.get("query", "").strip():
            try:
                check_statement_kind(params["query"])
            except Refused as exc:  # e.g. an INSERT with its data in the body
                self._send(QueryEndpoint._error(exc.code, str(exc), {}))
                return
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            # clickhouse-connect sends the query and long parameters as form fields
            try:
                fields = form_fields(content_type, body)
            except ValueError as exc:
                self._send(QueryEndpoint._error(1001, f"Code: 1001. DB::Exception: {exc}. (BAD_REQUEST)", {}))
                return
            params.update(fields)
            body = b""
        encoding = self.headers.get("Content-Encoding")
        if encoding and encoding != "identity":
            # clients compress only insert data
            refused = read_only()
            self._send(
                QueryEndpoint._error(refused.code, f"{refused}; compressed ({encoding[:32]}) bodies are inserts", {})
            )
            return
        text = body.decode("utf-8", "replace")
        sql = "\n".join(p for p in (params.get("query", ""), text) if p.strip())
        if not sql.strip():
            self._send(Answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"}))
            return
        self._send(endpoint.run(sql, params, caller))

    def _foreign(self) -> Refused | None:
        """Refused when the request does not come the way a local client sends it: a Host
        header naming another site (DNS rebinding) or a browser Origin that is not local."""
        host = (self.headers.get("Host") or "").strip().lower()
        if not _LOCAL_HOST.match(host):
            return denied("the embedded endpoint answers only requests for Host 127.0.0.1 or localhost")
        origin = self.headers.get("Origin")
        if origin is not None and not _LOCAL_ORIGIN.match(origin.strip().lower()):
            return denied("the embedded endpoint does not answer cross-origin (browser) requests")
        return None

    def _credentials(self, params: Mapping[str, str]) -> tuple[str | None, str | None]:
        """User and password from basic auth, X-ClickHouse-User/Key or the URL, like ClickHouse."""
        authorization = self.headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None, None
            user, _, password = decoded.partition(":")
            return user, password
        if self.headers.get("X-ClickHouse-User"):
            return self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
        if params.get("user"):
            return params["user"], params.get("password", "")
        return None, None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline()
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += length
                if size > _MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, answer: Answer, *, head: bool = False) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if not head:
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


class EmbeddedHttpServer(ThreadingHTTPServer):
    """The read-only endpoint on `host`:`port` (0: any free port), served from a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, endpoint: QueryEndpoint, host: str = LOCALHOST, port: int = DEFAULT_PORT) -> None:
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ClickHouseError(f"cannot serve the embedded store on {host}:{port}: {exc.strerror}") from exc
        self.endpoint = endpoint
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="chdb-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
