"""How the sink stores one Avro container (one table, one writer schema; sink/avro_container.py).

Most containers go in as they are: `INSERT INTO t FORMAT Avro`. Two things turn the insert
into an INSERT ... SELECT over the container:
- the erasure guard (sink/erasure_guard.py) of a table with subject keys: a WITH prelude and
  a WHERE condition that drop the rows of erased subjects;
- the sole writer's consent clearing (sink/clear_before_insert.py): rows a withdrawal
  covers, by event id and need, are stored with those fields NULL and listed in `stripped`,
  through the same column expressions as the mutation that clears stored rows
  (sink/consent_withdrawal.py), so Python never decodes or re-encodes a row.

    INSERT INTO t (columns)
    [WITH <prelude>]
    SELECT <one expression per column, in column order> FROM <the container>
    [WHERE <condition>]

The engine reads the Avro itself. Embedded, it reads the container from a private
temporary file (`file()`, as clickhouse-connect's own chDB raw insert does with `FROM
INFILE`), and the covered rows' ids from a second one (RowBinary: event id, need index),
so a batch's ids never travel as SQL text. A server reads the container from the request
body (`input()`); it only ever gets the guard's filter, since clearing at insert is the
sole writer's, which is embedded. The output columns carry no aliases: an alias would
shadow the column it replaces in the other expressions, and `stripped` must see the
values as they were.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient

from pipeline.clickhouse_ddl import TableModel
from sink.consent_withdrawal import ConsentBoundTable, clearing_columns, sql_string

_COVERED_STRUCTURE = "event_id String, need UInt8"


@dataclass(frozen=True)
class RowFilter:
    """A WITH prelude and the WHERE condition a row must meet to be stored."""

    prelude: str
    where: str


@dataclass(frozen=True)
class Clearing:
    """Rows of a consent-bound table to store cleared: need -> event ids."""

    table: ConsentBoundTable
    covered: Mapping[str, Collection[str]]


def structure(model: TableModel) -> str:
    """The table's columns as a table-function structure ('`a` String, `b` Int32, ...')."""
    return ", ".join(f"`{c.name}` {c.type}" for c in model.columns)


def select_insert_sql(
    model: TableModel, source: str, *, columns: list[str] | None = None, row_filter: RowFilter | None = None
) -> str:
    """INSERT INTO `model` SELECT `columns` (default: each column as read) FROM `source`."""
    names = ", ".join(f"`{c.name}`" for c in model.columns)
    selected = ", ".join(columns) if columns is not None else names
    lines = [f"INSERT INTO {model.qualified} ({names})"]
    if row_filter is not None:
        lines.append(f"WITH {row_filter.prelude}")
    lines.append(f"SELECT {selected} FROM {source}")
    if row_filter is not None:
        lines.append(f"WHERE {row_filter.where}")
    return "\n".join(lines)


def insert_container(
    client: Client,
    model: TableModel,
    parts: Sequence[bytes],
    settings: Mapping[str, str],
    *,
    row_filter: RowFilter | None = None,
    clearing: Clearing | None = None,
) -> None:
    """Store the Avro container of `model` rows whose bytes are `parts` one after the other
    (sink/avro_container.py's `container_parts`; embedded, they go to the file unjoined)."""
    if clearing is not None and not any(clearing.covered.values()):
        clearing = None
    if row_filter is None and clearing is None:
        client.raw_insert(model.qualified, insert_block=b"".join(parts), fmt="Avro", settings=dict(settings))
        return
    if isinstance(client, HttpClient):
        if clearing is not None:  # BatchWriter refuses the sole writer's path on a server
            raise ValueError("clearing at insert needs the embedded engine")
        sql = select_insert_sql(model, f"input({sql_string(structure(model))})", row_filter=row_filter)
        client.command(f"{sql}\nFORMAT Avro", data=b"".join(parts), settings=dict(settings))
        return
    with contextlib.ExitStack() as files:
        path = files.enter_context(_private_file(parts, ".avro"))
        source = f"file({sql_string(path)}, 'Avro', {sql_string(structure(model))})"
        columns = None
        if clearing is not None:
            needs = sorted(need for need, ids in clearing.covered.items() if ids)
            ids = files.enter_context(_private_file([_covered_rows(clearing.covered, needs)], ".bin"))
            covered = f"file({sql_string(ids)}, 'RowBinary', {sql_string(_COVERED_STRUCTURE)})"
            hits = {
                need: f"event_id IN (SELECT event_id FROM {covered} WHERE need = {index})"
                for index, need in enumerate(needs)
            }
            columns = clearing_columns(clearing.table, hits)
        sql = select_insert_sql(model, source, columns=columns, row_filter=row_filter)
        client.command(sql, settings=dict(settings))


def _covered_rows(covered: Mapping[str, Collection[str]], needs: list[str]) -> bytes:
    """RowBinary rows (event id, index of the need in `needs`)."""
    out = bytearray()
    for index, need in enumerate(needs):
        for event_id in covered[need]:
            raw = event_id.encode("utf-8")
            out += _uleb128(len(raw))
            out += raw
            out.append(index)
    return bytes(out)


def _uleb128(n: int) -> bytes:
    """RowBinary's string length: unsigned little-endian base-128."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@contextlib.contextmanager
def _private_file(data: Iterable[bytes], suffix: str) -> Iterator[str]:
    """`data`'s pieces in a new temporary file (mode 0600), deleted afterwards; yields its path."""
    fd, name = tempfile.mkstemp(prefix="records-insert-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.writelines(data)
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
