"""The embedded store's read-only ClickHouse HTTP endpoint: the HTTP side (parsing, Host/Origin
checks, the server thread) of pipeline/query_endpoint.py.

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
Every query is logged without its text (pipeline/access_log.py). The owner file lives in
pipeline/chdb_owner.py; authentication, the checks and the run in pipeline/query_endpoint.py.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Mapping
from email import policy as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.exceptions import ClickHouseError
from pipeline.query_check import Refused, check_statement_kind, denied, read_only
from pipeline.query_endpoint import Answer, QueryEndpoint, error_answer

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 8123

_LOCAL_HOST = re.compile(r"^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$")
_LOCAL_ORIGIN = re.compile(r"^https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$")
_MAX_BODY = 64 * 1024 * 1024
_MAX_URI = 1024 * 1024


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
            self._send(error_answer(foreign.code, str(foreign), {}), head=True)
            return
        self._send(Answer(200, b"", {"Content-Type": "text/html; charset=UTF-8"}), head=True)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        foreign = self._foreign()
        if foreign is not None:
            self._send(error_answer(foreign.code, str(foreign), {}))
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._send(error_answer(1001, f"Code: 1001. DB::Exception: {exc}. (BAD_REQUEST)", {}))
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
                self._send(error_answer(exc.code, str(exc), {}))
                return
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            # clickhouse-connect sends the query and long parameters as form fields
            try:
                fields = form_fields(content_type, body)
            except ValueError as exc:
                self._send(error_answer(1001, f"Code: 1001. DB::Exception: {exc}. (BAD_REQUEST)", {}))
                return
            params.update(fields)
            body = b""
        encoding = self.headers.get("Content-Encoding")
        if encoding and encoding != "identity":
            # clients compress only insert data
            refused = read_only()
            self._send(error_answer(refused.code, f"{refused}; compressed ({encoding[:32]}) bodies are inserts", {}))
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
