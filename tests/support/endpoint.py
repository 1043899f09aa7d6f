"""Reaching the store a running sink serves: its query endpoint has no anonymous access,
so tests log in with the sink's owner credential (as `pipeline.clickhouse.connect` does).
`served_store` serves a test's own store the way the sink does in embedded mode."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.access_users import read_owner_credential
from pipeline.chdb_owner import Owner, remove_owner, write_owner
from pipeline.clickhouse import connect
from pipeline.clickhouse_http import EmbeddedHttpServer
from pipeline.config import Settings
from pipeline.query_endpoint import EndpointLimits, endpoint_for


def owner_client(owner: Owner, chdb_path: Path, **kwargs: Any) -> Client:
    """clickhouse-connect on the sink's endpoint with its owner credential."""
    credential = read_owner_credential(chdb_path)
    assert credential is not None, f"no owner credential beside {chdb_path}"
    return clickhouse_connect.get_client(
        host=owner.host, port=owner.port, username=credential.user, password=credential.password.get(), **kwargs
    )


def owner_headers(chdb_path: Path) -> dict[str, str]:
    """The owner credential as the HTTP headers clickhouse-connect sends."""
    credential = read_owner_credential(chdb_path)
    assert credential is not None, f"no owner credential beside {chdb_path}"
    return {"X-ClickHouse-User": credential.user, "X-ClickHouse-Key": credential.password.get()}


@contextlib.contextmanager
def served_store(settings: Settings, *, as_owner: bool = True, limits: EndpointLimits | None = None) -> Iterator[Owner]:
    """The embedded store of `settings` served read-only on 127.0.0.1 (a free port), as the
    sink serves it. `as_owner`: this process is also named the store's owner, as the sink
    does, so `records` commands on the directory go through the endpoint. Stopped after."""
    reader = connect(settings, readonly=True)
    server = EmbeddedHttpServer(endpoint_for(settings, reader, threading.RLock(), limits), port=0)
    server.start()
    try:
        if as_owner:
            owner = write_owner(settings.chdb_path, "127.0.0.1", server.port)
        else:
            started = datetime.now(UTC).isoformat(timespec="seconds")
            owner = Owner(os.getpid(), "127.0.0.1", server.port, str(settings.chdb_path), started)
        yield owner
    finally:
        if as_owner:
            remove_owner(settings.chdb_path)
        server.close()
        reader.close()


def insert_calls(client: Client, rows: int) -> None:
    """`rows` call rows (ids c0, c1, ...; one caller number) for a served store to answer with."""
    client.command(
        "INSERT INTO records.calls (event_id, source_event_id, subject_keys, call_id, direction, caller_number, "
        "service_number, started_at, ended_at, ingested_at, expires_at) "
        f"SELECT 'c' || toString(number), 's', ['k' || toString(number)], 'c' || toString(number), 'INBOUND', "
        f"'+358401234567', '+35810100', now64(3), now64(3), now64(3), now64(3) + INTERVAL 730 DAY FROM numbers({rows})"
    )
