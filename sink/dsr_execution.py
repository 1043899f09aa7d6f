"""Executing one verified data-subject request on the store, by type (the SQL is
sink/dsr_storage.py): an access export, a rectification, a restriction or objection (and
its lifting), a consent withdrawal's counts, and a run of erasures together. Step 4 of
sink/dsr_commands.py, which verifies the commands first and records and produces the
receipts after. ClickHouse failures raise (the sink retries the batch); a request that
cannot be executed as it is gets a FAILED result."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_cluster import statement_for
from pipeline.clickhouse_ddl import RECORDS_DB, RESTRICTIONS_TABLE, TableModel
from pipeline.config import Settings
from pipeline.dsr import RECTIFIABLE_FIELDS, RequestType
from pipeline.dsr_contract import ReceiptStatus
from pipeline.exports import exports_dir, remove_subject_exports
from pipeline.policy import Policy
from sink.dsr_export import collect, document, export_path, write_export
from sink.dsr_shards import ShardCounts, check_nothing_left, counts_per_shard
from sink.dsr_storage import (
    ERASED_KEYS,
    ERASED_KEYS_COLUMNS,
    RESTRICTION_COLUMNS,
    RESTRICTIONS,
    DsrCommand,
    DsrCommandError,
    counts_query,
    erase_mutation,
    erased_key_rows,
    erasure_time,
    optimize_partition,
    rectification_targets,
    rectified_count,
    rectified_partitions,
    rectified_value,
    rectified_versions,
    restriction_rows,
    restrictions_by_key,
    restrictions_erase,
    store_name,
    subject_rows_count,
    withdrawn_count,
)
from sink.erasure_progress import pause_after_mutation, resume
from sink.mutations_together import run_together
from sink.rows_insert import insert_rows

log = logging.getLogger(__name__)

COMPLETED, REJECTED, FAILED = ReceiptStatus.COMPLETED, ReceiptStatus.REJECTED, ReceiptStatus.FAILED
EXPORTS_STORE = "exports"  # store_counts: access exports removed by an erasure
LARGE_QUERY = {"max_query_size": str(16 * 1024 * 1024)}  # a count or lookup over many subject keys
# Every mutation and merge goes through statement_for: on a cluster (CLICKHOUSE_CLUSTER)
# it runs on the local tables ON CLUSTER (pipeline/clickhouse_cluster.py).
_MUTATION = {"mutations_sync": "2", **LARGE_QUERY}


@dataclass(frozen=True)
class ExecutionResult:
    """What executing one request came to, before it becomes a receipt."""

    status: ReceiptStatus
    store_counts: dict[str, int]
    detail: str | None = None
    shard_counts: ShardCounts = field(default_factory=dict)  # cluster mode: store -> shard -> rows


def erase_together(
    client: Client,
    run: Sequence[DsrCommand],
    *,
    settings: Settings,
    tables: Sequence[TableModel],
    counted: dict[str, dict[str, int]],
    shard_counted: dict[str, ShardCounts],
) -> dict[str, ExecutionResult]:
    """Erase every subject of `run` together: one count query over every table and, per
    table holding any of them, one mutation. The ledger rows go in before the mutations,
    so an insert running concurrently (another sink, server mode) is filtered as soon
    as possible.

    Row counts taken before a deletion go into `counted` (request id -> store -> rows) and,
    on a cluster, `shard_counted`; the caller keeps both until the receipt is stored, so a
    retried batch does not report 0 for tables already erased."""
    erasures = [(set(c.keys), erasure_time(c)) for c in run]
    every = set().union(*(keys for keys, _ in erasures))
    to_delete: list[TableModel] = []
    per_table = client.query(counts_query(tables, erasures), settings=LARGE_QUERY).result_rows
    found_in = {int(position): rest for position, *rest in per_table}
    for position, model in enumerate(tables):
        total, *per_subject = found_in[position]
        for command, found in zip(run, per_subject, strict=True):
            counted.setdefault(command.request_id, {}).setdefault(store_name(model), int(found))
        if total:
            to_delete.append(model)
    restricted = {
        str(key): int(rows) for key, rows in client.query(restrictions_by_key(every), settings=LARGE_QUERY).result_rows
    }
    for command in run:
        counted[command.request_id].setdefault(RESTRICTIONS, sum(restricted.get(k, 0) for k in command.keys))
    # Recorded before the first mutation; counts recorded by an earlier, killed run win.
    counted.update(resume(client, {c.request_id: counted[c.request_id] for c in run}))
    cluster = settings.clickhouse_cluster
    if cluster:  # the receipts' rows per shard (sink/dsr_shards.py)
        ids = [c.request_id for c in run]
        for request_id, stores in counts_per_shard(client, to_delete, ids, erasures, cluster).items():
            shard_counted.setdefault(request_id, stores)
    rows = [row for command, (_, at) in zip(run, erasures, strict=True) for row in erased_key_rows(command, at)]
    insert_rows(client, ERASED_KEYS, ERASED_KEYS_COLUMNS, rows)
    mutations = {model.name: statement_for(erase_mutation(model, erasures), cluster) for model in to_delete}
    if restricted:
        mutations[RESTRICTIONS_TABLE] = statement_for(restrictions_erase(every), cluster)
    pause_s = settings.fault_erasure_pause_s
    run_together(
        client,
        mutations,
        _MUTATION,
        database=RECORDS_DB,
        synchronous=bool(cluster),
        after_each=lambda done, total: pause_after_mutation(pause_s, done, total),
    )
    if cluster:
        check_nothing_left(client, to_delete, erasures, cluster)
    log.info(
        "erased %d subject(s) of %d request(s): %d mutation(s) on %s",
        len(erasures),
        len(run),
        len(to_delete) + bool(restricted),
        ", ".join(m.name for m in to_delete) or "no table",
    )
    outcomes: dict[str, ExecutionResult] = {}
    for command in run:
        counts = dict(counted[command.request_id])
        # The subject's earlier access exports hold the rows just deleted: they go too.
        counts[EXPORTS_STORE] = remove_subject_exports(exports_dir(settings.data_dir), command.keys)
        tables_hit = sum(1 for m in tables if counts.get(store_name(m)))
        outcomes[command.request_id] = ExecutionResult(
            COMPLETED,
            {**counts, **command.envelope.kafka_counts},
            f"rows deleted from {tables_hit} of {len(tables)} tables (mutations, parts rewritten); "
            f"{counts[EXPORTS_STORE]} earlier export(s) removed; "
            f"{len(command.keys)} subject key(s) in {ERASED_KEYS}",
            shard_counted.get(command.request_id, {}),
        )
    return outcomes


def execute_by_type(
    client: Client,
    command: DsrCommand,
    *,
    settings: Settings,
    policy: Policy,
    tables: Sequence[TableModel],
    clock: Callable[[], datetime],
) -> ExecutionResult:
    """Execute one request other than an erasure, by its type: an access export, a
    rectification, a restriction, objection or lifting, or a consent withdrawal's counts."""
    kind = command.request_type
    try:
        if kind is RequestType.ACCESS:
            return _access(client, command, settings.data_dir, policy, tables, clock)
        if kind is RequestType.RECTIFICATION:
            return _rectify(client, command, settings.clickhouse_cluster, tables)
        if kind in (RequestType.RESTRICTION, RequestType.OBJECTION, RequestType.RESTRICTION_LIFTED):
            return _restrict(client, command, tables)
        if kind is RequestType.CONSENT_WITHDRAWAL:
            return _withdrawal(client, command, tables)
    except DsrCommandError as exc:
        return ExecutionResult(FAILED, {}, str(exc))
    return ExecutionResult(FAILED, {}, "unsupported request type")


def _access(
    client: Client,
    command: DsrCommand,
    data_dir: Path,
    policy: Policy,
    tables: Sequence[TableModel],
    clock: Callable[[], datetime],
) -> ExecutionResult:
    rows = collect(client, tables, command.keys)
    path = export_path(data_dir, command.request_id)
    content = document(
        policy,
        tables,
        rows,
        request_id=command.request_id,
        issued_at=command.issued_at,
        generated_at=clock(),
    )
    write_export(path, content)
    counts = {store_name(m): len(rows[m.name]) for m in tables}
    log.info("DSR %s: export of %d row(s) written", command.request_id, sum(counts.values()))
    return ExecutionResult(COMPLETED, {**counts, **command.envelope.kafka_counts}, f"export written to {path}")


def _rectify(client: Client, command: DsrCommand, cluster: str | None, tables: Sequence[TableModel]) -> ExecutionResult:
    field_name, value = rectified_value(command.request.get("rectify_field"), command.request.get("rectify_value"))
    is_identifier = RECTIFIABLE_FIELDS[field_name] is not None
    new_key = command.envelope.new_subject_key if is_identifier else None
    counts: dict[str, int] = {}
    for model, column in rectification_targets(tables, field_name):
        rows = _scalar(client, rectified_count(model, column, command.keys))
        counts[store_name(model)] = rows
        if rows:
            partitions = client.query(rectified_partitions(model, column, command.keys), settings=LARGE_QUERY)
            sql, parameters = rectified_versions(model, column, value, command.keys, new_key)
            client.command(statement_for(sql, cluster), parameters=parameters, settings=LARGE_QUERY)
            for (partition,) in partitions.result_rows:
                client.command(statement_for(optimize_partition(model, str(partition)), cluster), settings=LARGE_QUERY)
    detail = f"{field_name} corrected in {sum(counts.values())} row(s)"
    if is_identifier:
        detail += (
            "; the corrected identifier's subject key added"
            if new_key
            else "; no new subject key in the command: the corrected identifier's key was not added"
        )
    return ExecutionResult(COMPLETED, {**counts, **command.envelope.kafka_counts}, detail)


def _restrict(client: Client, command: DsrCommand, tables: Sequence[TableModel]) -> ExecutionResult:
    rows = restriction_rows(command)
    insert_rows(client, RESTRICTIONS, RESTRICTION_COLUMNS, rows)
    counts = {store_name(m): _scalar(client, subject_rows_count(m, command.keys)) for m in tables}
    counts[RESTRICTIONS] = len(rows)
    shown = (
        "shown to analysts again" if command.request_type is RequestType.RESTRICTION_LIFTED else "hidden from analysts"
    )
    return ExecutionResult(
        COMPLETED, {**counts, **command.envelope.kafka_counts}, f"{sum(counts.values()) - len(rows)} row(s) {shown}"
    )


def _withdrawal(client: Client, command: DsrCommand, tables: Sequence[TableModel]) -> ExecutionResult:
    counts: dict[str, int] = {}
    for model in tables:
        query = withdrawn_count(model, command.keys)
        if query is not None:
            counts[store_name(model)] = _scalar(client, query)
    return ExecutionResult(
        COMPLETED,
        {**counts, **command.envelope.kafka_counts},
        "fields are cleared by the consent ledger's WITHDRAWN rows; counts: rows of the subject cleared so far",
    )


# ---- receipts, dead letters, metrics --------------------------------------------------


def _scalar(client: Client, sql: str) -> int:
    """The one number a count query returns."""
    return int(client.query(sql, settings=LARGE_QUERY).result_rows[0][0])
