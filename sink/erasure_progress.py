"""An erasure's progress kept in the store, so a sink killed during its mutations resumes
it with the receipt it would have written had it not been killed.

The receipt of an erasure reports, per table, the subject's rows that were deleted; they
are counted before the table's mutation (sink/dsr_commands.py `DsrExecutor.erase`). A
sink killed (`kill -9`, a lost host) after the first table's mutation and before the
receipt would, on restart, count 0 in the tables already done and under-report. So the
counts go into records.dsr_erasure_progress BEFORE the first mutation, and the counts
recorded first win over any taken later (`resume`): a restarted or retried erasure
reports the original numbers. Which tables are done needs no record of its own: the
count query on the store says which still hold the subject's rows, and a table's
mutation is idempotent.

The table holds request ids, table names and counts: no subject key, no identifier. Its
rows expire after ERASURE_PROGRESS_DAYS (pipeline/clickhouse_ddl.py), long after any
command may still be redelivered (RECORDS_COMMAND_MAX_AGE_HOURS).

`pause_after_mutation` and `pause_before_receipts` are the fault tests' hooks
(RECORDS_FAULT_ERASURE_PAUSE_S): they let tests/faults/test_kill_sink_erasure.py kill the
sink deterministically between two tables' mutations, or after an erasure's receipt is
recorded in records.dsr_executed and before it is produced. Unset (production) they do
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import ERASURE_PROGRESS_TABLE, RECORDS_DB
from pipeline.dsr import utcnow
from sink.rows_insert import insert_rows

log = logging.getLogger(__name__)

PROGRESS = f"{RECORDS_DB}.{ERASURE_PROGRESS_TABLE}"
PROGRESS_COLUMNS = ("request_id", "store", "rows", "counted_at")
# Counts of one request: store (table) name -> rows of the subject counted before deletion.
Counts = Mapping[str, int]


def recorded(client: Client, request_ids: list[str]) -> dict[str, dict[str, int]]:
    """The counts recorded for these requests, by request id (absent: none recorded)."""
    if not request_ids:
        return {}
    result = client.query(
        f"SELECT request_id, store, rows FROM {PROGRESS} FINAL WHERE request_id IN {{ids:Array(String)}}",
        parameters={"ids": request_ids},
    )
    out: dict[str, dict[str, int]] = {}
    for request_id, store, rows in result.result_rows:
        out.setdefault(str(request_id), {})[str(store)] = int(rows)
    return out


def resume(client: Client, counted: Mapping[str, Counts], *, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """The counts to report for each request of `counted` (request id -> counts just
    taken): those recorded earlier win, store by store; the ones not recorded yet are
    recorded now, before any mutation. Raises the driver's error when the store fails
    (the sink then retries the batch; nothing was mutated)."""
    before = recorded(client, list(counted))
    merged: dict[str, dict[str, int]] = {}
    new_rows: list[tuple[str, str, int, datetime]] = []
    at = now or utcnow()
    for request_id, counts in counted.items():
        kept = before.get(request_id, {})
        merged[request_id] = {store: kept.get(store, rows) for store, rows in counts.items()} | kept
        new_rows += [(request_id, store, rows, at) for store, rows in counts.items() if store not in kept]
        if kept:
            log.info("DSR %s: erasure resumed with the %d count(s) recorded before", request_id, len(kept))
    if new_rows:
        insert_rows(client, PROGRESS, PROGRESS_COLUMNS, new_rows)
    return merged


def pause_after_mutation(seconds: int, done: int, total: int) -> None:
    """Fault tests only: sleep `seconds` after the `done`-th of `total` mutations (0: return)."""
    if seconds <= 0:
        return
    log.warning("erasure paused %d s after mutation %d of %d (RECORDS_FAULT_ERASURE_PAUSE_S)", seconds, done, total)
    time.sleep(seconds)


def pause_before_receipts(seconds: int, receipts: int) -> None:
    """Fault tests only: sleep `seconds` once a batch's receipts (an erasure's among them)
    are recorded and before they are produced (0: return)."""
    if seconds <= 0:
        return
    log.warning("erasure paused %d s before producing %d receipt(s) (RECORDS_FAULT_ERASURE_PAUSE_S)", seconds, receipts)
    time.sleep(seconds)
