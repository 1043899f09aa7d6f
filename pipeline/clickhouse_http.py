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

Read-only, in two layers. The engine handle runs with readonly=2, but chDB (clickhouse-
local) still lets such a handle write files and stop merges, so every query is first
parsed by the engine (`EXPLAIN AST`): only SELECT / SHOW / DESCRIBE / EXISTS / EXPLAIN
run, without `INTO OUTFILE` and without functions that reach files, URLs, other servers
or programs (`file`, `url`, `s3`, `remote`, `executable`, ...). No access control
beyond that: embedded mode is the single-user local setup (anyone who can read the
directory can read the data); roles, users and row policies need a ClickHouse server.

Engine calls are serialised with the owner's lock, shared with the sink's writes.
"""

from __future__ import annotations

import json
import logging
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

from clickhouse_connect.driver._backend.models import QueryRuntime
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from pipeline.exceptions import ClickHouseError

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 8123

_READ_STATEMENTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Show", "Describe", "Exists", "Explain")
# Functions (regular and table functions) that reach outside the engine's own tables.
_EXTERNAL_FUNCTIONS = frozenset(
    {
        "file",
        "url",
        "urlcluster",
        "input",
        "python",
        "sqlite",
        "redis",
        "odbc",
        "jdbc",
        "dictionary",
        "filesystem",
    }
)
_EXTERNAL_PREFIXES = (
    "file",
    "s3",
    "gcs",
    "oss",
    "cosn",
    "hdfs",
    "azure",
    "remote",
    "cluster",
    "mysql",
    "postgres",
    "mongo",
    "executable",
    "iceberg",
    "deltalake",
    "hudi",
    "paimon",
    "arrowflight",
    "ytsaurus",
    "hive",
    "kafka",
)
_FUNCTION_NODE = re.compile(r"^\s*Function (\w+)", re.MULTILINE)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
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
_STATUS_BY_CODE = {62: 400, 27: 400, 36: 400, 164: 403, 497: 403, 60: 404, 81: 404, 47: 404}
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


# ---- query checks ---------------------------------------------------------------------


class Refused(Exception):
    """A request the endpoint does not run; carries ClickHouse's error code and name."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name})")
        self.code = code


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
_READ_ONLY_REFUSAL = (
    "the embedded store's HTTP endpoint is read-only: only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN "
    "run here (stop the sink to write, or use a ClickHouse server)"
)


def check_statement_kind(sql: str) -> None:
    """Raise Refused unless the statement starts with a read keyword (cheap first gate)."""
    rest = sql[_LEADING_NOISE.match(sql).end() :]  # type: ignore[union-attr]
    word = re.match(r"[A-Za-z]+", rest)
    if word is None or word.group(0).upper() not in _READ_KEYWORDS:
        raise Refused(164, "READONLY", _READ_ONLY_REFUSAL)


def check_read_only(ast: str) -> None:
    """Raise Refused unless the `EXPLAIN AST` text is a read statement without external access."""
    top = ast.lstrip().split(" ", 1)[0] if ast.strip() else ""
    if not top.startswith(_READ_STATEMENTS):
        raise Refused(164, "READONLY", _READ_ONLY_REFUSAL)
    if top.startswith("SelectWithUnionQuery") and re.search(r"^ Literal ", ast, re.MULTILINE):
        raise Refused(497, "ACCESS_DENIED", "INTO OUTFILE is not available on the embedded store's HTTP endpoint")
    for name in _FUNCTION_NODE.findall(ast):
        lowered = name.lower()
        if lowered in _EXTERNAL_FUNCTIONS or lowered.startswith(_EXTERNAL_PREFIXES):
            raise Refused(
                497,
                "ACCESS_DENIED",
                f"function {name} reaches outside the store and is not available on the embedded HTTP endpoint",
            )


def trailing_format(sql: str) -> str | None:
    found = _TRAILING_FORMAT.search(sql)
    return found.group(1) if found else None


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


class QueryEndpoint:
    """Runs one HTTP query on the read-only engine handle; no HTTP parsing here."""

    def __init__(self, reader: Client, lock: threading.Lock | threading.RLock) -> None:
        self.reader = reader
        self.lock = lock
        with lock:
            self.timezone = str(reader.command("SELECT timezone()"))
            self.version = str(reader.command("SELECT version()"))

    def run(self, sql: str, params: Mapping[str, str]) -> Answer:
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.timezone}
        started = time.perf_counter_ns()
        sql = sql.strip().rstrip(";").rstrip()
        fmt = trailing_format(sql)
        default_format = params.get("default_format") or "TabSeparated"
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
        bound = {k: v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database") or "default"
        try:
            check_statement_kind(sql)
            with self.lock:
                ast = self._raw(f"EXPLAIN AST {sql}\n FORMAT TabSeparatedRaw", bound, {}, database)
                check_read_only(ast.decode("utf-8", "replace"))
                body = self._raw(sql if fmt else f"{sql}\n FORMAT {default_format}", bound, settings, database)
        except Refused as exc:
            return self._error(exc.code, str(exc), headers)
        except DriverError as exc:
            message = str(exc)
            found = _CODE.search(message)
            code = int(found.group(1)) if found else 1001
            return self._error(code, message[found.start() :] if found else message, headers)
        fmt = fmt or default_format
        elapsed = time.perf_counter_ns() - started
        headers.update(
            {
                "X-ClickHouse-Format": fmt,
                "Content-Type": _CONTENT_TYPES.get(fmt, "application/octet-stream"),
                "X-ClickHouse-Summary": json.dumps({"result_bytes": str(len(body)), "elapsed_ns": str(elapsed)}),
            }
        )
        return Answer(200, body, headers)

    def _raw(self, sql: str, bound: Mapping[str, str], settings: Mapping[str, str], database: str) -> bytes:
        """Run `sql` on the reader handle. Server-side parameters (`param_<name>`) arrive in
        ClickHouse's escaped-text form, ready for the engine: they go through the driver's
        backend contract untouched (the public raw_query would format them a second time)."""
        self.reader.database = database
        if not bound:
            return self.reader.raw_query(sql, settings=dict(settings) or None)
        runtime = QueryRuntime(database=database, settings=self.reader._validate_settings(dict(settings)))
        return self.reader._backend.execute_raw_query(sql, dict(bound), None, runtime, None)  # type: ignore[attr-defined]

    @staticmethod
    def _error(code: int, message: str, headers: dict[str, str]) -> Answer:
        headers = {**headers, "X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain; charset=UTF-8"}
        return Answer(_STATUS_BY_CODE.get(code, 500), (message.rstrip() + "\n").encode(), headers)


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
        self._send(Answer(200, b"", {"Content-Type": "text/html; charset=UTF-8"}), head=True)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
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
            refused = Refused(164, "READONLY", _READ_ONLY_REFUSAL + f"; compressed ({encoding}) bodies are inserts")
            self._send(QueryEndpoint._error(refused.code, str(refused), {}))
            return
        text = body.decode("utf-8", "replace")
        sql = "\n".join(p for p in (params.get("query", ""), text) if p.strip())
        if not sql.strip():
            self._send(Answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"}))
            return
        self._send(self.server.endpoint.run(sql, params))

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
