"""Reaching the store a running sink serves: its query endpoint has no anonymous access,
so tests log in with the sink's owner credential (as `pipeline.clickhouse.connect` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.access_users import read_owner_credential
from pipeline.clickhouse_http import Owner


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
