"""The embedded engine opened by pipeline/clickhouse.py starts with its caches capped
(pipeline/chdb_engine_options.py, "Memory"): the server defaults (5 GiB each for the mark,
primary-index and skip-index mark caches) put no bound on a worker's memory."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from pipeline.chdb_engine_options import CACHE_CAPS_BYTES

CEILING = 256 << 20  # no cache of the engine may hold more than this inside a worker


def test_the_engine_caches_are_capped(ch_client: Client) -> None:
    names = sorted(CACHE_CAPS_BYTES)
    rows = dict(
        ch_client.query(
            "SELECT name, value FROM system.server_settings WHERE name IN {names:Array(String)}",
            parameters={"names": names},
        ).result_rows
    )
    assert sorted(rows) == names
    for name in names:
        assert 0 < int(rows[name]) <= CEILING, name
    assert {name: int(value) for name, value in rows.items()} == dict(CACHE_CAPS_BYTES)

