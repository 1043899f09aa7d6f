"""The one way to reach ClickHouse: an embedded chDB engine on local disk (default) or a
ClickHouse server named by CLICKHOUSE_URL. Both are clickhouse-connect clients, so callers
do not know which one they hold. Library errors leave this module as ClickHouseError, one
line, without the password or the full URL."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from clickhouse_connect.driver.exceptions import OperationalError, scrub_error_details
from clickhouse_connect.driver.summary import QuerySummary

from pipeline.access_users import Credential, read_owner_credential
from pipeline.chdb_engine_options import ENGINE_OPTIONS
from pipeline.chdb_owner import read_owner
from pipeline.config import Secret, Settings
from pipeline.exceptions import ClickHouseError
from pipeline.private_files import private_dir

# readonly=2 forbids writes and DDL but still lets the client send its per-query settings.
_READONLY = {"readonly": 2}
_URL_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")
_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")


@dataclass(frozen=True)
class ServerTarget:
    """Where CLICKHOUSE_URL points; the password stays a Secret until the client is built."""

    host: str
    port: int
    username: str
    password: Secret
    database: str | None
    secure: bool

    def describe(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"server {where}/{self.database}" if self.database else f"server {where}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for clickhouse_connect.get_client."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password.get(),
            "database": self.database,
            "secure": self.secure,
        }


@dataclass(frozen=True)
class Rows:
    """The result set of one query, in column order."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def parse_server_url(url: str) -> ServerTarget:
    """http(s)://user:password@host:port/database; port defaults to 8123 (http) / 8443 (https)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClickHouseError("CLICKHOUSE_URL must look like http(s)://user:password@host:8123/database")
    try:
        port = parts.port or (8443 if secure else 8123)
    except ValueError:
        raise ClickHouseError(f"CLICKHOUSE_URL for host {parts.hostname} has an invalid port") from None
    return ServerTarget(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or "") or "default",
        password=Secret(unquote(parts.password or "")),
        database=unquote(parts.path.strip("/")) or None,
        secure=secure,
    )


def describe_target(settings: Settings, *, path: Path | None = None) -> str:
    """Where `connect` would go, for logs and messages: no user, no password."""
    if settings.clickhouse_url is not None:
        return parse_server_url(settings.clickhouse_url.get()).describe()
    return f"embedded chDB at {path or settings.chdb_path}"


def connect(
    settings: Settings,
    *,
    path: Path | None = None,
    database: str | None = None,
    readonly: bool = False,
    credential: Credential | None = None,
) -> Client:
    """A clickhouse-connect client for the configured ClickHouse; the caller closes it.

    path: the embedded data directory to open instead of settings.chdb_path (embedded mode
    only). database: instead of the URL's (server) or the engine's default (embedded); it
    must exist. readonly: refuse writes and DDL on this client.

    Embedded mode: one OS process may open a chDB directory at a time, and one process can
    hold only one directory at a time (close the client before opening another). While
    another process owns the directory and serves it (the sink, with its owner file
    `<dir>.owner.json`), the client returned is an HTTP client to that owner's read-only
    endpoint: reads work as usual, writes and DDL are refused (READONLY). The endpoint
    requires a user: `credential`, else RECORDS_SQL_USER/RECORDS_SQL_PASSWORD, else the
    owner credential the sink wrote next to its owner file (readable by its OS user).
    """
    client_settings = dict(_READONLY) if readonly else None
    if settings.clickhouse_url is not None:
        if path is not None:
            raise ClickHouseError("path= applies to embedded chDB only, but CLICKHOUSE_URL names a server")
        return _connect_server(parse_server_url(settings.clickhouse_url.get()), database, client_settings)
    if credential is None and settings.sql_user is not None:
        credential = Credential(settings.sql_user, settings.sql_password or Secret(""))
    return _connect_embedded(path or settings.chdb_path, database, client_settings, credential)


def run_statement(client: Client, sql: str) -> Rows | None:
    """Run one SQL statement: the rows of a query, or None for a statement without a result
    set (DDL, INSERT, ALTER ...)."""
    statement = sql.strip().rstrip(";")
    try:
        context = client.create_query_context(query=statement)
        if context.is_command or context.is_insert:
            response = client.command(statement)
            if isinstance(response, QuerySummary) or response == "":
                return None
            values = response if isinstance(response, list) else [response]
            return Rows(("result",), [(value,) for value in values])
        result = client.query(statement)
    except DriverError as exc:
        raise ClickHouseError(_one_line(exc)) from exc
    return Rows(tuple(result.column_names), [tuple(row) for row in result.result_rows])


def _connect_server(target: ServerTarget, database: str | None, client_settings: dict[str, Any] | None) -> Client:
    kwargs = target.client_kwargs()
    if database is not None:
        kwargs["database"] = database
    password = target.password.get()
    try:
        return clickhouse_connect.get_client(**kwargs, settings=client_settings)
    except OperationalError as exc:
        found = _ERRNO_REASON.search(str(exc))
        reason = found.group(1).strip() if found else _one_line(exc, password)
        raise ClickHouseError(f"cannot reach ClickHouse {target.describe()}: {reason}") from exc
    except DriverError as exc:
        raise ClickHouseError(f"ClickHouse {target.describe()} refused: {_one_line(exc, password)}") from exc


def _connect_embedded(
    path: Path, database: str | None, client_settings: dict[str, Any] | None, credential: Credential | None
) -> Client:
    # Ask before opening: on a locked directory the engine fails with a vague error and
    # writes its own lines to the process's stderr.
    owner = _lock_owner(path / "status")
    if owner is not None and owner != os.getpid():
        served = _served_by_owner(path, owner, database, credential)
        if served is not None:
            return served
        raise ClickHouseError(
            f"embedded chDB at {path} is owned by another process (pid {owner}, probably the running sink): "
            "stop that process and retry, or point CLICKHOUSE_URL at a ClickHouse server"
        )
    try:
        private_dir(path)  # chDB parts hold personal data: 0700 (the process umask makes them 0600)
    except OSError as exc:
        raise ClickHouseError(f"cannot create the chDB directory {path}: {exc.strerror}") from exc
    try:
        return clickhouse_connect.get_client(
            interface="chdb",
            path=str(path),
            database=database,
            settings=client_settings,
            chdb_options=dict(ENGINE_OPTIONS),  # the engine's start-up options: pipeline/chdb_engine_options.py
        )
    except DriverError as exc:
        if "already initialized with path" in str(exc):
            raise ClickHouseError(
                f"this process already has another chDB directory open; close that client before opening {path}"
            ) from exc
        raise ClickHouseError(f"cannot open embedded chDB at {path}: {_one_line(exc)}") from exc


def _served_by_owner(path: Path, lock_owner: int, database: str | None, credential: Credential | None) -> Client | None:
    """An HTTP client to the read-only endpoint of the process that owns `path` (the running
    sink, see pipeline/clickhouse_http.py), when its owner file names that process. The
    endpoint is read-only whatever the caller asked for, and shows what the user's role may read."""
    owner = read_owner(path)
    if owner is None or owner.pid != lock_owner:
        return None
    credential = credential or read_owner_credential(path)
    if credential is None:
        raise ClickHouseError(
            f"embedded chDB at {path} is served by pid {owner.pid}, which needs a user: this OS user cannot read "
            "the sink's owner credential; set RECORDS_SQL_USER and RECORDS_SQL_PASSWORD (or `records sql --user`)"
        )
    password = credential.password.get()
    try:
        return clickhouse_connect.get_client(
            host=owner.host,
            port=owner.port,
            username=credential.user,
            password=password,
            database=database,
            compress=False,
            autogenerate_session_id=False,
        )
    except DriverError as exc:
        raise ClickHouseError(
            f"embedded chDB at {path} is owned by pid {owner.pid}, whose endpoint {owner.url()} "
            f"refused or did not answer: {_one_line(exc, password)}"
        ) from exc


def _lock_owner(status_file: Path) -> int | None:
    """The pid holding the lock a running engine keeps on <chdb dir>/status, from /proc/locks.

    None when the file is absent (the engine removes it on a clean stop), nobody holds it,
    or the system has no /proc/locks (not Linux): the open then fails with the engine's error.
    """
    try:
        stat = status_file.stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in locks.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 6280 fe:00:9978097 0 EOF"; blocked waiters' lines carry "->"
        fields = line.split()
        if len(fields) >= 6 and "->" not in fields and fields[5] == wanted and fields[4].isdigit():
            return int(fields[4])
    return None


def _one_line(exc: BaseException, *secrets: str) -> str:
    """The driver's message on one line, without version trailer, URL credentials or secrets."""
    text = " ".join(scrub_error_details(str(exc)).split())
    text = _URL_CREDENTIALS.sub("", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
