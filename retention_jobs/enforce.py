"""Enforce retention now, then prove it: `records retention run`, and the sink's scheduled job.

ClickHouse applies a table's TTL only during merges (at most every `merge_with_ttl_timeout`,
and only while the engine runs), so the TTL in the DDL is a backstop, not the proof. One
run, for every record table of the policy:

1. find the monthly partitions holding rows whose time field is older than the policy's
   limit at `now`;
2. drop, in one statement, every partition whose whole month lies before the cutoff
   (instant, and the bytes are gone: any row that could ever land there is expired);
3. delete what is left (the rows of the month the cutoff falls in) with ONE `ALTER TABLE
   ... DELETE ... SETTINGS mutations_sync = 2` per table: a real mutation that rewrites the
   parts, so the bytes are gone rather than masked as with a lightweight DELETE. chDB takes
   1-2 s per mutation whatever the size, which is why it is one per table and none when
   nothing expired;
4. verify: count again, and read the oldest row; any row still past its limit is a
   violation (logged, returned, and exported as the `retention_violations` gauge).

Idempotent (a second run finds nothing to delete and issues no statement) and safe while
the sink inserts: a mutation applies to the parts present when it starts, and ClickHouse
merges and inserts keep running meanwhile. Limits come from the policy only; the table's
TTL is read back and a mismatch is reported, because a TTL left from an older policy
would let merges delete rows the policy still keeps (or keep them longer).

On a ClickHouse cluster (`cluster`, CLICKHOUSE_CLUSTER; pipeline/clickhouse_cluster.py)
the counts and the expired months are read through the Distributed tables (every shard),
the TTL and partition key from the local tables `<table>_local`, and steps 2 and 3 go to
the local tables ON CLUSTER (`alter_sync = 2` for the drop, `mutations_sync = 2` for the
delete: the call returns when every replica of every shard has applied them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import run_statement
from pipeline.clickhouse_cluster import local_table, statement_for
from pipeline.clickhouse_ddl import RECORDS_DB, TableModel, table_models
from pipeline.exceptions import ClickHouseError
from pipeline.policy import Policy, default_policy
from pipeline.retention_period import RetentionPeriod
from retention_jobs.exceptions import RetentionError

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_TTL = re.compile(r"\bTTL\b(?P<clause>.*)")
_MONTH = re.compile(r"\d{4}(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class TableRetention:
    """What one run found and did for one record type."""

    record_type: str
    table: str
    limit: RetentionPeriod
    deleted: int  # rows past the limit before the run (deleted by it, unless check-only)
    remaining_expired: int  # rows past the limit after the run: must be 0
    rows: int  # rows stored after the run
    oldest_age_days: float | None  # age of the oldest row after the run; None: empty table
    table_ttl: RetentionPeriod | None  # the TTL the table was created with, None when it has none
    dropped_partitions: int = 0  # whole months dropped by the run

    @property
    def violated(self) -> bool:
        return self.remaining_expired > 0

    @property
    def ttl_matches_policy(self) -> bool:
        return self.table_ttl == self.limit

    @property
    def limit_days(self) -> int:
        """The limit in nominal days, for display next to ages in days."""
        return self.limit.nominal_days

    def describe_violation(self) -> str:
        age = f"{self.oldest_age_days:.1f}" if self.oldest_age_days is not None else "?"
        return (
            f"retention violated for {self.record_type} ({RECORDS_DB}.{self.table}): "
            f"{self.remaining_expired} row(s) older than {self.limit.label} remain, oldest {age} d"
        )


@dataclass(frozen=True)
class RetentionResult:
    now: datetime
    tables: tuple[TableRetention, ...]
    deleted_by_run: bool  # False for a check-only run

    @property
    def violations(self) -> tuple[TableRetention, ...]:
        return tuple(t for t in self.tables if t.violated)

    @property
    def ok(self) -> bool:
        return not self.violations


def enforce_retention(
    client: Client,
    policy: Policy | None = None,
    now: datetime | None = None,
    *,
    delete: bool = True,
    cluster: str | None = None,
) -> RetentionResult:
    """Delete every row past its policy limit (unless `delete` is False) and verify.

    `now` defaults to the current time; it must be timezone-aware. `cluster`: the
    ClickHouse cluster the tables are sharded over (None: one server or the embedded engine).
    """
    policy = policy or default_policy()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tables = _table_info(client, cluster)
    models = table_models(policy)
    missing = [m.qualified for m in models if m.name not in tables]
    if missing:
        raise RetentionError(
            f"no table {', '.join(missing)} in ClickHouse: create the storage first (the sink does on start)"
        )
    results = []
    for model in models:
        results.append(_enforce_table(client, model, now, delete, tables[model.name], cluster))
    result = RetentionResult(now=now, tables=tuple(results), deleted_by_run=delete)
    for table in result.tables:
        if not table.ttl_matches_policy:
            log.warning(
                "table %s.%s has TTL %s but the policy says %s: run `records clickhouse init`",
                RECORDS_DB,
                table.table,
                table.table_ttl.label if table.table_ttl else "none",
                table.limit.label,
            )
        if table.violated:
            log.error("%s", table.describe_violation())
        elif table.deleted and delete:
            log.info(
                "retention: deleted %d expired row(s) of %s (%d whole month(s) dropped)",
                table.deleted,
                table.record_type,
                table.dropped_partitions,
            )
    return result


def retention_job(
    policy: Policy | None = None, *, observe: Callable[[RetentionResult], None] | None = None
) -> Callable[[Client], RetentionResult]:
    """A maintenance job `fn(client)` for the sink's scheduler: one enforcement run at the
    current time, its result passed to `observe` (e.g. `RetentionMetrics.observe`)."""

    def run(client: Client) -> RetentionResult:
        result = enforce_retention(client, policy)
        if observe is not None:
            observe(result)
        return result

    return run


def _enforce_table(
    client: Client, model: TableModel, now: datetime, delete: bool, info: _TableInfo, cluster: str | None
) -> TableRetention:
    before, _, _ = table_age(client, model, now)
    dropped = 0
    if before and delete:
        whole_months, partial = _expired_partitions(client, model, now, info)
        if whole_months:
            run_statement(client, statement_for(drop_months_statement(model, whole_months), cluster))
            dropped = len(whole_months)
        if partial:
            run_statement(client, statement_for(delete_expired_statement(model, now), cluster))
    remaining, rows, oldest_ms = table_age(client, model, now)
    now_ms = int(now.timestamp() * 1000)
    return TableRetention(
        record_type=model.record.record_type,
        table=model.name,
        limit=model.record.period,
        deleted=before,
        remaining_expired=remaining,
        rows=rows,
        oldest_age_days=(now_ms - oldest_ms) / _DAY_MS if rows else None,
        table_ttl=info.ttl,
        dropped_partitions=dropped,
    )


def drop_months_statement(model: TableModel, partition_ids: list[str]) -> str:
    """Step 2: drop whole expired months in one statement."""
    drops = ", ".join(f"DROP PARTITION ID '{pid}'" for pid in partition_ids)
    return f"ALTER TABLE {model.qualified} {drops}"


def delete_expired_statement(model: TableModel, now: datetime) -> str:
    """Step 3: ONE real mutation deleting the rest of the rows past the limit at `now`."""
    return f"ALTER TABLE {model.qualified} DELETE WHERE {_expired_predicate(model, now)} SETTINGS mutations_sync = 2"


def _expired_partitions(client: Client, model: TableModel, now: datetime, info: _TableInfo) -> tuple[list[str], bool]:
    """(ids of partitions whose whole month is before the cutoff, whether other partitions
    hold expired rows). Whole months are only recognised under the DDL's monthly
    partitioning of the policy's time field; any other key leaves everything to the mutation."""
    rows = run_statement(
        client,
        f"SELECT DISTINCT _partition_id FROM {model.qualified} WHERE {_expired_predicate(model, now)}",
    )
    ids = [str(r[0]) for r in rows.rows] if rows else []
    if info.partition_key != f"toYYYYMM({model.record.time_field})":
        return [], bool(ids)
    period = model.record.period
    whole = [pid for pid in ids if _MONTH.fullmatch(pid) and period.add_to(_month_end(pid)) <= now]
    return whole, len(whole) < len(ids)


def _month_end(partition_id: str) -> datetime:
    """The first instant after the month of a toYYYYMM partition id (UTC, the columns' zone)."""
    year, month = int(partition_id[:4]), int(partition_id[4:])
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def _expired_predicate(model: TableModel, now: datetime) -> str:
    """`time + INTERVAL <policy period> < now`: the TTL's own calendar arithmetic."""
    now_ms = int(now.timestamp() * 1000)
    now_sql = f"fromUnixTimestamp64Milli(toInt64({now_ms}), 'UTC')"
    return model.record.period.sql_expired(f"`{model.record.time_field}`", now_sql)


def table_age(client: Client, model: TableModel, now: datetime) -> tuple[int, int, int]:
    """(rows past the policy limit at `now`, all rows, oldest time in Unix ms) of a record
    table, every part
    included (no FINAL: a duplicate not merged yet is still stored data)."""
    time = f"`{model.record.time_field}`"
    rows = run_statement(
        client,
        f"SELECT countIf({_expired_predicate(model, now)}), count(), "
        f"toUnixTimestamp64Milli(min({time})) FROM {model.qualified}",
    )
    if rows is None or not rows.rows:
        raise ClickHouseError(f"no result counting expired rows of {model.qualified}")
    expired, total, oldest = rows.rows[0]
    return int(expired), int(total), int(oldest or 0)


@dataclass(frozen=True)
class _TableInfo:
    ttl: RetentionPeriod | None
    partition_key: str


def _table_info(client: Client, cluster: str | None) -> dict[str, _TableInfo]:
    """TTL and partition key by record table name; on a cluster, those of its local table
    (the Distributed table has neither; ON CLUSTER created the local tables on every node)."""
    rows = run_statement(
        client, f"SELECT name, engine_full, partition_key FROM system.tables WHERE database = '{RECORDS_DB}'"
    )
    out: dict[str, _TableInfo] = {}
    for name, engine, partition_key in rows.rows if rows else []:
        found = _TTL.search(str(engine))
        ttl = RetentionPeriod.from_clickhouse(found["clause"]) if found else None
        out[str(name)] = _TableInfo(ttl, str(partition_key))
    if cluster:
        return {name: out[local_table(name)] for name in out if local_table(name) in out}
    return out
