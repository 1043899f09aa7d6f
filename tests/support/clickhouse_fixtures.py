"""ClickHouse fixtures: the real engine, embedded (chDB), on a fresh directory per test.

One process can hold one chDB directory at a time, so `ch_client` closes its client at
teardown, letting the next test open its own directory. Tests that use these fixtures are
marked `chdb` automatically (select or skip them with `-m chdb` / `-m "not chdb"`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import connect
from pipeline.config import Settings, load_settings

_CHDB_FIXTURES = {"chdb_path", "chdb_settings", "ch_client"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _CHDB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.chdb)


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    """A fresh, not yet existing chDB data directory."""
    return tmp_path / "chdb"


@pytest.fixture
def chdb_settings(chdb_path: Path, tmp_path: Path) -> Settings:
    """Embedded-mode settings on `chdb_path`, independent of the caller's environment."""
    return load_settings(env={"RECORDS_DATA_DIR": str(tmp_path / "data"), "RECORDS_CHDB_PATH": str(chdb_path)})


@pytest.fixture
def ch_client(chdb_settings: Settings) -> Iterator[Client]:
    """A factory client on the embedded engine at `chdb_path`, closed at teardown."""
    client = connect(chdb_settings)
    try:
        yield client
    finally:
        client.close()
