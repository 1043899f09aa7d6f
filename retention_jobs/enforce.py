"""Enforce retention now, then prove it: `records retention run`, and the sink's scheduled job.

ClickHouse applies a table's TTL only during merges (at most every `merge_with_ttl_timeout`,
and only while the engine runs), so the TTL in the DDL is a backstop, not the proof. One
run, for every record table of the policy:

1. count the rows whose time field is older than the policy's limit at `now`;
2. if there are any, delete them with ONE `ALTER TABLE ... DELETE ... SETTINGS
   mutations_sync = 2` per table (a real mutation: parts are rewritten, so the bytes are
   gone, not only masked as with a lightweight DELETE; it waits until done);
3. verify: count again, and read the oldest row; any row still past its limit is a
   violation (logged, returned, and exported as the `retention_violations` gauge).

Idempotent (a second run finds nothing to delete and issues no mutation) and safe while
the sink inserts: a mutation applies to the parts present when it starts, and ClickHouse
merges and inserts keep running meanwhile. Limits come from the policy only; the table's
TTL is read back and a mismatch is reported, because a TTL left from an older policy
would let merges delete rows the policy still keeps (or keep them longer).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import run_statement
from pipeline.clickhouse_ddl import RECORDS_DB, TableModel, table_models
from pipeline.exceptions import ClickHouseError
from pipeline.policy import Policy, default_policy
from retention_jobs.exceptions import RetentionError

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


@dataclass(frozen=True)
class TableRetention:
    """What one run found and did for one record type."""

    record_type: str
    table: str
    limit_days: int
    deleted: int  # rows past the limit before the run (deleted by it, unless check-only)
    remaining_expired: int  # rows past the limit after the run: must be 0
    rows: int  # rows stored after the run
    oldest_age_days: float | None  # age of the oldest row after the run; None: empty table
    table_ttl_days: int | None  # the TTL the table was created with, None when it has none

    @property
    def violated(self) -> bool:
        return self.remaining_expired > 0

    @property
    def ttl_matches_policy(self) -> bool:
        return self.table_ttl_days == self.limit_days

    def describe_violation(self) -> str:
        age = f"{self.oldest_age_days:.1f}" if self.oldest_age_days is not None else "?"
        return (
            f"retention violated for {self.record_type} ({RECORDS_DB}.{self.table}): "
            f"{self.remaining_expired} row(s) older than {self.limit_days} d remain, oldest {age} d"
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


def cutoff_ms(now: datetime, limit_days: int) -> int:
    """Unix milliseconds before which a row of a record type with this limit is expired."""
    return int(now.timestamp() * 1000) - limit_days * _DAY_MS


def enforce_retention(
    client: Client,
    policy: Policy | None = None,
    now: datetime | None = None,
    *,
    delete: bool = True,
) -> RetentionResult:
    """Delete every row past its policy limit (unless `delete` is False) and verify.

    `now` defaults to the current time; it must be timezone-aware.
    """
    policy = policy or default_policy()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ttl_days = _table_ttls(client)
    models = table_models(policy)
    missing = [m.qualified for m in models if m.name not in ttl_days]
    if missing:
        raise RetentionError(
            f"no table {', '.join(missing)} in ClickHouse: create the storage first (the sink does on start)"
        )
    results = []
    for model in models:
        results.append(_enforce_table(client, model, now, delete, ttl_days.get(model.name)))
    result = RetentionResult(now=now, tables=tuple(results), deleted_by_run=delete)
    for table in result.tables:
        if not table.ttl_matches_policy:
            log.warning(
                "table %s.%s has TTL %s d but the policy says %d d: recreate or ALTER its TTL",
                RECORDS_DB,
                table.table,
                table.table_ttl_days,
                table.limit_days,
            )
        if table.violated:
            log.error("%s", table.describe_violation())
        elif table.deleted and delete:
            log.info("retention: deleted %d expired row(s) of %s", table.deleted, table.record_type)
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
    client: Client, model: TableModel, now: datetime, delete: bool, table_ttl_days: int | None
) -> TableRetention:
    limit = model.record.retention_days
    before, _, _ = table_age(client, model, now)
    if before and delete:
        # Integer literal of our own computation, not user input.
        run_statement(
            client,
            f"ALTER TABLE {model.qualified} DELETE WHERE {_expired_predicate(model, now)} SETTINGS mutations_sync = 2",
        )
    remaining, rows, oldest_ms = table_age(client, model, now)
    now_ms = int(now.timestamp() * 1000)
    oldest_age = (now_ms - oldest_ms) / _DAY_MS if rows else None
    return TableRetention(
        record_type=model.record.record_type,
        table=model.name,
        limit_days=limit,
        deleted=before,
        remaining_expired=remaining,
        rows=rows,
        oldest_age_days=oldest_age,
        table_ttl_days=table_ttl_days,
    )


def _expired_predicate(model: TableModel, now: datetime) -> str:
    cutoff = cutoff_ms(now, model.record.retention_days)
    return f"`{model.record.time_field}` < fromUnixTimestamp64Milli(toInt64({cutoff}), 'UTC')"


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


def _table_ttls(client: Client) -> dict[str, int | None]:
    rows = run_statement(client, f"SELECT name, engine_full FROM system.tables WHERE database = '{RECORDS_DB}'")
    out: dict[str, int | None] = {}
    for name, engine in rows.rows if rows else []:
        found = _TTL_DAYS.search(str(engine))
        out[str(name)] = int(found.group(1)) if found else None
    return out
