"""Mutations issued together (sink/mutations_together.py) on the real engine: when
`run_together` returns every table's rows are gone from its parts and no mutation is
left unfinished, and a mutation that fails raises instead of being waited for forever."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.chdb_engine_options import ENGINE_OPTIONS
from sink.mutations_together import MutationFailed, run_together

DB = "together_test"


def _tables(client: Client, names: list[str]) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    for name in names:
        client.command(f"CREATE TABLE {DB}.{name} (id UInt32, subject String) ENGINE = MergeTree ORDER BY id")
        for part in range(3):  # a few parts each
            client.command(
                f"INSERT INTO {DB}.{name} SELECT number + {part * 100}, if(number % 10 = 0, 'gone', 'kept') "
                "FROM numbers(100)"
            )


def test_every_table_is_rewritten_when_it_returns(ch_client: Client) -> None:
    names = ["a", "b", "c"]
    _tables(ch_client, names)
    statements = {name: f"ALTER TABLE {DB}.{name} DELETE WHERE subject = 'gone'" for name in names}

    run_together(ch_client, statements, {}, database=DB)

    for name in names:
        assert ch_client.query(f"SELECT countIf(subject = 'gone'), count() FROM {DB}.{name}").result_rows == [(0, 270)]
    unfinished = ch_client.query(f"SELECT count() FROM system.mutations WHERE database = '{DB}' AND NOT is_done")
    assert unfinished.result_rows == [(0,)]


def test_a_failing_mutation_raises(ch_client: Client) -> None:
    _tables(ch_client, ["a", "b"])
    statements = {
        "a": f"ALTER TABLE {DB}.a DELETE WHERE subject = 'gone'",
        "b": f"ALTER TABLE {DB}.b DELETE WHERE throwIf(id = 7, 'refused') = 0",  # fails while it runs
    }
    try:
        with pytest.raises(MutationFailed, match="mutation failed on b"):
            run_together(ch_client, statements, {}, database=DB, timeout_s=600)
    finally:
        ch_client.command(f"KILL MUTATION WHERE database = '{DB}' AND table = 'b'")


def test_the_embedded_engine_queues_a_burst_of_part_tasks(ch_client: Client) -> None:
    """The engine opened by pipeline/clickhouse.py starts with pipeline/chdb_engine_options.py:
    a queue of 128 background tasks on its 2 threads, so a mutation's per-part tasks go in
    by the hundred: the engine queues one only while the queue keeps
    `number_of_free_entries_in_pool_to_execute_mutation` entries free (with the queue of
    16 before, none ever was: tasks went in one or two at a time). The scheduler's sleeps
    have no setting to read back; they are passed in the same call."""
    rows = dict(
        ch_client.query(
            "SELECT name, value FROM system.server_settings "
            "WHERE name IN ('background_pool_size', 'background_merges_mutations_concurrency_ratio')"
        ).result_rows
    )
    assert rows == {"background_merges_mutations_concurrency_ratio": "64", "background_pool_size": "2"}
    queue = int(rows["background_pool_size"]) * int(rows["background_merges_mutations_concurrency_ratio"])
    kept_free = int(
        ch_client.query(
            "SELECT value FROM system.merge_tree_settings "
            "WHERE name = 'number_of_free_entries_in_pool_to_execute_mutation'"
        ).result_rows[0][0]
    )
    assert queue - kept_free >= 100  # part tasks of a mutation queued at once


def test_the_embedded_engine_caps_its_schedulers_idle_sleep() -> None:
    """A table's background scheduler sleeps 1.1x longer per turn without work, up to
    `..._when_no_work_max` (600 s by default): a mutation left waiting on parts a merge
    held waited that long (an erasure stalled for minutes). The engine cannot read the
    value back, so this checks what pipeline/clickhouse.py passes it."""
    assert float(ENGINE_OPTIONS["background_processing_pool_task_sleep_seconds_when_no_work_max"]) <= 1.0
