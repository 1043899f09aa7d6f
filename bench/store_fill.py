"""Grows the benchmark's store to a target number of rows before erasures are timed, so
the erasure figure is taken "with N rows stored", not on whatever a short run left.

How: with the sink stopped (embedded chDB: one process owns the directory), each table
with subject keys gets copies of its own rows, stored by the real sink from the
simulated traffic: `INSERT INTO t SELECT ... FROM t, numbers(k)`. A copy keeps every
column (sizes, dates, partitions, the bloom-filter index see realistic values) except
its id (`<id>-fill<n>`, so the ReplacingMergeTree keeps it as a row of its own) and its
subject keys (each replaced by a digest of key and copy number: the copies belong to
other subjects, so an erasure deletes only the real subject's rows). Statements run
through `records sql`, as an operator would run them.
"""

from __future__ import annotations

import json
import math

from bench.stack import Stack
from pipeline.clickhouse_ddl import TableModel, table_models

# Copy rounds at most; each at least doubles the rows, so one or two suffice.
_FILL_ROUNDS = 3


def subject_models() -> list[TableModel]:
    return [m for m in table_models() if m.has_subject_keys]


def copy_rows_sql(model: TableModel, copies: int) -> str:
    """INSERT `copies` copies of every row of `model`, each with a new id and new subject keys."""
    replaced = {
        model.id_column: f"concat(`{model.id_column}`, '-fill', toString(number))",
        "subject_keys": "arrayMap(k -> lower(hex(SHA256(concat(k, toString(number))))), subject_keys)",
    }
    names = [c.name for c in model.columns]
    select = ", ".join(replaced.get(n, f"`{n}`") for n in names)
    columns = ", ".join(f"`{n}`" for n in names)
    return (
        f"INSERT INTO {model.qualified} ({columns}) SELECT {select} "
        f"FROM {model.qualified} AS source CROSS JOIN numbers({copies}) AS copy WHERE number > 0"
    )


def _sql(stack: Stack, statement: str) -> str:
    return stack.run_records("sql", "--format", "json", statement)


def stored_row_count(stack: Stack) -> int:
    """Rows of the tables with subject keys, each row once (FINAL: two stored versions of a
    row, from a replay, count once; their copies collapse into one as well, so counting
    versions made the filled store fall short of its target once merges ran). The sink's
    endpoint answers while it runs."""
    union = " UNION ALL ".join(f"SELECT count() AS n FROM {m.qualified} FINAL" for m in subject_models())
    rows = json.loads(_sql(stack, f"SELECT sum(n) AS total FROM ({union})"))
    return int(rows[0]["total"])


def fill_store(stack: Stack, target: int) -> int:
    """Copy rows until the tables with subject keys hold at least `target` rows (the sink
    must be stopped); the rows stored afterwards."""
    current = stored_row_count(stack)
    for _ in range(_FILL_ROUNDS):  # a table whose sort key is not its id folds some copies together
        if current >= target or current == 0:
            return current
        copies = math.ceil(target / current) + 1  # numbers(copies), number > 0: copies - 1 new rows per row
        for model in subject_models():
            _sql(stack, copy_rows_sql(model, copies))
        current = stored_row_count(stack)
    return current
