"""Replays cannot resurrect an erased subject: the sink's insert path refuses the rows of
erased subjects that are dated up to their erasure.

An erasure deletes the subject's rows (sink/dsr_commands.py) and writes each of its
subject keys with the time of the erasure to records.erased_keys. Rows of that subject
may still arrive afterwards: the enriched topics keep messages until their retention, a
crash or a reset consumer group replays a batch, the streams stage may enrich raw events
again. A row ingested (`ingested_at`, stamped by the streams stage) at or before the
erasure time is a copy of erased data and is not stored, whatever its event time says
(a source may date a row in the future); a row ingested after the erasure is new data
(the person came back) and is. Raw events enriched again after the erasure get a new
`ingested_at`; the streams stage's own erased-keys table drops those that predate the erasure.

How: every insert into a table with subject keys carries the filter, so a refused row
never reaches a part (no mutation, nothing left on disk):

    INSERT INTO t (columns)
    WITH (<the erased-keys table as a Map: subject key -> erased_at>) AS erased
    SELECT columns FROM <the batch's Avro container>
    WHERE NOT arrayExists(k -> mapContains(erased, k) AND ingested_at <= erased[k], subject_keys)

The container is the one the sink built (sink/avro_container.py): the engine reads
the Avro itself, nothing is decoded in Python. Embedded, the engine reads it from a
temporary file (`file()`, as clickhouse-connect's own chDB raw insert does with
`FROM INFILE`); a server reads it from the request body (`input()`). Measured on 50k chat
rows, the filtered insert takes the time of the plain `INSERT ... FORMAT Avro` (~0.4 s on
two cores); with an empty erased-keys table the subquery reads nothing. So the filter is always on:
it needs no cached idea of whether anything was erased, and with several sinks (server
mode) each one sees the erased-keys table as soon as it is written.

Only ledger rows younger than the longest retention of a table with subject keys are
read: an older erasure could only refuse rows past their retention, which ClickHouse's
TTL drops on insert anyway. That keeps the Map small however long the pipeline runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient

from pipeline.clickhouse_ddl import TableModel
from sink.consent_withdrawal import sql_string
from sink.dsr_storage import ERASED_KEYS, subject_tables


def window_days(models: Iterable[TableModel]) -> int:
    """How far back erasures matter: the longest retention of a table with subject keys."""
    return max((m.record.period.max_days for m in subject_tables(models)), default=0)


def structure(model: TableModel) -> str:
    """The table's columns as a table-function structure ('`a` String, `b` Int32, ...')."""
    return ", ".join(f"`{c.name}` {c.type}" for c in model.columns)


def guarded_insert(model: TableModel, source: str, window: int) -> str:
    """INSERT ... SELECT from `source` (a table function over the Avro container) without
    the rows of subjects erased at or after the row's ingestion."""
    columns = ", ".join(f"`{c.name}`" for c in model.columns)
    erased = (
        "SELECT CAST((groupArray(subject_key), groupArray(until)), 'Map(String, DateTime64(3, \\'UTC\\'))') "
        f"FROM (SELECT subject_key, max(erased_at) AS until FROM {ERASED_KEYS} "
        f"WHERE erased_at >= now64(3) - toIntervalDay({window}) GROUP BY subject_key)"
    )
    ingested = model.ingest_column
    return (
        f"INSERT INTO {model.qualified} ({columns})\n"
        f"WITH ({erased}) AS erased\n"
        f"SELECT {columns} FROM {source}\n"
        f"WHERE NOT arrayExists(k -> mapContains(erased, k) AND `{ingested}` <= erased[k], subject_keys)"
    )


class ErasureGuard:
    """The sink's insert guard (ClickHouseSink's `insert_guard`): inserts the containers of
    tables with subject keys through the erased-keys table filter; other tables take the plain path."""

    def __init__(self, models: Iterable[TableModel]) -> None:
        models = list(models)
        self.window = window_days(models)
        self._guarded = frozenset(m.name for m in subject_tables(models))

    def insert(self, client: Client, table: TableModel, block: bytes, settings: Mapping[str, str]) -> bool:
        """Insert `block` (an Avro container of `table` rows) without the erased subjects'
        rows; False when the table has no subject keys (the caller inserts it as is)."""
        if table.name not in self._guarded:
            return False
        if isinstance(client, HttpClient):
            sql = guarded_insert(table, f"input({sql_string(structure(table))})", self.window)
            client.command(f"{sql}\nFORMAT Avro", data=block, settings=dict(settings))
            return True
        # Embedded: the engine runs in this process and reads the container from a file.
        fd, name = tempfile.mkstemp(prefix="records-insert-", suffix=".avro")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(block)
            source = f"file({sql_string(name)}, 'Avro', {sql_string(structure(table))})"
            client.command(guarded_insert(table, source, self.window), settings=dict(settings))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
        return True
