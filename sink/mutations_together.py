"""Runs several mutations (one per table) at once and waits until every one is done,
instead of one `mutations_sync = 2` statement after the other.

Why: the embedded engine (chDB 26.9) runs merges and mutations on a background pool of
two threads, so each synchronous mutation waits its turn behind the merges of the
sink's many small parts; issued together, the tables' per-part tasks share those waits.
The contract of `mutations_sync = 2` holds: when `run_together` returns, every part of
every table is rewritten (no mutation of those tables is left unfinished). A mutation
that fails (`latest_fail_reason` set while not done) raises, as a synchronous one
would, so the sink retries the batch; so does one unfinished after `timeout_s`.

On a cluster (CLICKHOUSE_CLUSTER) the statements run one after the other as before:
`system.mutations` of one node does not say when the other nodes are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from clickhouse_connect.driver.client import Client

from sink.consent_withdrawal import sql_string, sql_strings
from sink.exceptions import SinkError

POLL_S = 0.02  # system.mutations is read this often while waiting (a cheap query; the wait ends within it)


class MutationFailed(SinkError):
    """A mutation did not finish (its reason is ClickHouse's, never row data)."""


def pending_query(database: str, tables: Sequence[str]) -> str:
    """SELECT the unfinished mutations of `tables` and their latest failure reasons."""
    return (
        "SELECT table, latest_fail_reason FROM system.mutations "
        f"WHERE database = {sql_string(database)} AND has({sql_strings(tables)}, table) AND NOT is_done"
    )


def run_together(
    client: Client,
    statements: Mapping[str, str],
    settings: Mapping[str, str],
    *,
    database: str,
    synchronous: bool = False,
    timeout_s: float = 3600.0,
    after_each: Callable[[int, int], None] | None = None,
) -> None:
    """Run each table's (name -> ALTER statement) mutation, then wait until none of those
    tables has an unfinished mutation. `synchronous`: one `mutations_sync = 2` statement
    after the other instead (a cluster). `after_each(n, total)` is called once the n-th
    statement is sent (synchronous: finished); the fault tests pause there
    (sink/erasure_progress.py)."""
    total = len(statements)
    for n, statement in enumerate(statements.values(), 1):
        client.command(statement, settings={**settings, "mutations_sync": "2" if synchronous else "0"})
        if after_each is not None:
            after_each(n, total)
    if synchronous:
        return
    if not statements:
        return
    query = pending_query(database, sorted(statements))
    deadline = time.monotonic() + timeout_s
    while True:
        rows = client.query(query).result_rows
        if not rows:
            return
        failed = sorted({str(table) for table, reason in rows if reason})
        if failed:
            raise MutationFailed(f"mutation failed on {', '.join(failed)}")
        if time.monotonic() > deadline:
            unfinished = ", ".join(sorted({str(table) for table, _ in rows}))
            raise MutationFailed(f"mutations on {unfinished} not done in {timeout_s:.0f} s")
        time.sleep(POLL_S)
