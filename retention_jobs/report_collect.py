"""Collect the compliance report's evidence from ClickHouse (read-only queries) and take
the Kafka evidence from the topics audit. The verdicts are made in `report.py`.

Counts that describe the logical data (strips, consent breaches, recordings) read FINAL,
so a batch the sink inserted twice is counted once; counts that prove something is gone
(ages, erasure survivors) read every part, because an unmerged duplicate is still stored.
"""

from __future__ import annotations

from datetime import datetime

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import Rows, run_statement
from pipeline.clickhouse_ddl import (
    ANALYST_DB,
    CONSENT_FLAG_COLUMN,
    DSR_EXECUTED_TABLE,
    ERASED_KEYS_TABLE,
    LEDGER_DENIES,
    RECORDING_CHECKS_TABLE,
    RECORDINGS_TABLE,
    RECORDS_DB,
    RESTRICTIONS_TABLE,
    TableModel,
    table_models,
)
from pipeline.config import Settings
from pipeline.dsr import RECEIPT_SCHEMA
from pipeline.exports import exports_dir, exports_state
from pipeline.policy import FieldRule, Policy, RecordPolicy
from pipeline.topics import CONSENT_LEDGER_RECORD
from retention_jobs.enforce import table_age
from retention_jobs.report_evidence import (
    ConsentBreach,
    DsrStats,
    Evidence,
    ExportsEvidence,
    KafkaEvidence,
    RecordAges,
    RecordingBoundsEvidence,
    age_bin_days,
    latency_edges,
)

_DAY_MS = 86_400_000
_NOTICE_COLUMN = "notice_played_at"


def collect_evidence(client: Client, policy: Policy, now: datetime, *, storage: str, kafka: KafkaEvidence) -> Evidence:
    models = table_models(policy)
    columns = _columns(client)
    views = _analyst_view_queries(client)
    record_columns = {t: tuple(c) for (db, t), c in columns.items() if db == RECORDS_DB}
    analyst_columns = {t: tuple(c) for (db, t), c in columns.items() if db == ANALYST_DB}
    model_tables = {m.name for m in models}
    dsr = _dsr(client, policy)
    return Evidence(
        collected_at=now,
        storage=storage,
        ages={m.record.record_type: _ages(client, m, now) for m in models},
        record_columns={t: c for t, c in record_columns.items() if t in model_tables},
        analyst_columns=analyst_columns,
        analyst_restriction_filter={v: RESTRICTIONS_TABLE in query for v, query in views.items()},
        stripped=_stripped(client, models),
        consent_breaches=_consent_breaches(client, policy, models),
        recordings_without_prior_notice=_recordings_without_notice(client, models),
        dsr=dsr[0],
        erasure_latency_edges_s=dsr[1],
        erasure_latency_histogram=dsr[2],
        erased_subjects=_scalar(client, f"SELECT uniqExact(subject_key) FROM {RECORDS_DB}.{ERASED_KEYS_TABLE}"),
        rows_surviving_erasure={
            m.record.record_type: _surviving_erasure(client, m) for m in models if m.has_subject_keys
        },
        active_restrictions=_scalar(
            client, f"SELECT count() FROM {RECORDS_DB}.{RESTRICTIONS_TABLE} FINAL WHERE active"
        ),
        kafka=kafka,
        other_tables=tuple(sorted(t for t in record_columns if t not in model_tables)),
        identity_verification=_identity_verification(client),
        recording_bounds=_recording_bounds(client, policy, now, model_tables),
    )


def _recording_bounds(
    client: Client, policy: Policy, now: datetime, tables: set[str]
) -> RecordingBoundsEvidence | None:
    """Verdicts by reason, recordings the sink has not checked in time, and recordings
    shown to analysts as within although outside their stored call (re-checked here)."""
    if RECORDINGS_TABLE not in tables:
        return None
    checks = f"{RECORDS_DB}.{RECORDING_CHECKS_TABLE}"
    recordings = f"{RECORDS_DB}.{RECORDINGS_TABLE}"
    verdicts = {
        str(v): int(n) for v, n in _query(client, f"SELECT verdict, count() FROM {checks} FINAL GROUP BY 1").rows
    }
    due_ms = int((now - policy.recording_call_grace).timestamp() * 1000) - 3_600_000
    overdue = _scalar(
        client,
        f"SELECT count() FROM {recordings} FINAL WHERE recording_id NOT IN (SELECT recording_id FROM {checks}) "
        f"AND toUnixTimestamp64Milli(ingested_at) < {due_ms}",
    )
    misjudged = _scalar(
        client,
        f"SELECT count() FROM {recordings} AS r FINAL INNER JOIN (SELECT call_id, answered_at, ended_at FROM "
        f"{RECORDS_DB}.calls FINAL) AS c ON r.call_id = c.call_id WHERE r.recording_id IN (SELECT recording_id "
        f"FROM {checks} FINAL WHERE verdict = 'within') AND (c.answered_at IS NULL OR "
        "r.recording_started_at < c.answered_at OR r.recording_ended_at > c.ended_at)",
    )
    return RecordingBoundsEvidence(verdicts, overdue, misjudged)


def _identity_verification(client: Client) -> dict[str, int]:
    """Requests the sink executed (its own records.dsr_executed, never the receipts topic's
    copy), by how the requester's identity was verified; "" for none recorded."""
    rows = _query(
        client,
        f"SELECT ifNull(identity_verified_by, ''), count() FROM {RECORDS_DB}.{DSR_EXECUTED_TABLE} FINAL "
        "WHERE status = 'COMPLETED' GROUP BY 1",
    ).rows
    return {str(method): int(n) for method, n in rows}


def _query(client: Client, sql: str) -> Rows:
    rows = run_statement(client, sql)
    return rows if rows is not None else Rows((), [])


def _scalar(client: Client, sql: str) -> int:
    rows = _query(client, sql).rows
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _columns(client: Client) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    rows = _query(
        client,
        f"SELECT database, table, name FROM system.columns WHERE database IN ('{RECORDS_DB}', '{ANALYST_DB}') "
        "ORDER BY database, table, position",
    )
    for db, table, name in rows.rows:
        out.setdefault((str(db), str(table)), []).append(str(name))
    return out


def _analyst_view_queries(client: Client) -> dict[str, str]:
    rows = _query(client, f"SELECT name, create_table_query FROM system.tables WHERE database = '{ANALYST_DB}'")
    return {str(name): str(query) for name, query in rows.rows}


def _ages(client: Client, model: TableModel, now: datetime) -> RecordAges:
    expired, total, oldest_ms = table_age(client, model, now)
    now_ms = int(now.timestamp() * 1000)
    bin_days = age_bin_days(model.record.retention_days)
    rows = _query(
        client,
        f"SELECT intDiv(greatest(toInt64({now_ms}) - toUnixTimestamp64Milli(`{model.record.time_field}`), 0), "
        f"{bin_days * _DAY_MS}) AS bin, count() FROM {model.qualified} GROUP BY bin ORDER BY bin",
    ).rows
    limit_bins = -(-model.record.retention_days // bin_days)
    size = max([limit_bins + 1] + [int(b) + 1 for b, _ in rows])
    histogram = [0] * size
    for b, n in rows:
        histogram[int(b)] = int(n)
    return RecordAges(
        record_type=model.record.record_type,
        rows=total,
        expired_rows=expired,
        oldest_age_days=(now_ms - oldest_ms) / _DAY_MS if total else None,
        bin_days=bin_days,
        histogram=tuple(histogram),
    )


def _stripped(client: Client, models: list[TableModel]) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for model in models:
        if not any(c.name == "stripped" for c in model.columns):
            continue
        rows = _query(
            client,
            "SELECT splitByChar(':', s)[1] AS field, arrayStringConcat(arraySlice(splitByChar(':', s), 2), ':') "
            f"AS reason, count() FROM (SELECT arrayJoin(stripped) AS s FROM {model.qualified} FINAL) "
            "GROUP BY field, reason",
        ).rows
        for field, reason, n in rows:
            out[(model.record.record_type, str(field), str(reason))] = int(n)
    return out


def _needs_condition(rule: FieldRule, columns: set[str]) -> str:
    """SQL true for a row where the rule's field is stored although its `needs` applies."""
    condition = f"`{rule.name}` IS NOT NULL"
    if rule.channels is not None and "channel" in columns:
        channels = ", ".join(f"'{c}'" for c in rule.channels)
        condition += f" AND channel IN ({channels})"
    return condition


def _consent_breaches(client: Client, policy: Policy, models: list[TableModel]) -> tuple[ConsentBreach, ...]:
    ledger = policy.for_schema(CONSENT_LEDGER_RECORD)
    out: list[ConsentBreach] = []
    for model in models:
        columns = {c.name for c in model.columns}
        rules = [(r, r.needs) for r in model.record.fields.values() if r.needs is not None and r.name in columns]
        if not rules:
            continue
        # Not given with the record: its flag column is false (no flag column: never given).
        checks = []
        for rule, need in rules:
            flag = CONSENT_FLAG_COLUMN.get(need)
            given = f" AND NOT `{flag}`" if flag in columns else ""
            checks.append(f"countIf({_needs_condition(rule, columns)}{given})")
        counts = _query(client, f"SELECT {', '.join(checks)} FROM {model.qualified} FINAL").rows[0]
        out.extend(
            ConsentBreach(model.record.record_type, rule.name, need, int(n))
            for (rule, need), n in zip(rules, counts, strict=True)
        )
        if ledger is not None and model.has_subject_keys:
            for need in sorted({need for _, need in rules if need in LEDGER_DENIES}):
                group = [rule for rule, n in rules if n == need]
                out.extend(_withdrawn(client, model, ledger, need, group, columns))
    return tuple(out)


def _withdrawn(
    client: Client, model: TableModel, ledger: RecordPolicy, need: str, rules: list[FieldRule], columns: set[str]
) -> list[ConsentBreach]:
    """Rows still holding fields that need `need` although a consent ledger row of one of
    their subjects denied it at or after the row's time (withdrawn later)."""
    time = f"`{model.record.time_field}`"
    withdrawn_ids = (
        f"SELECT r.id FROM (SELECT `{model.id_column}` AS id, {time} AS t, arrayJoin(subject_keys) AS k "
        f"FROM {model.qualified} FINAL) AS r INNER JOIN (SELECT arrayJoin(subject_keys) AS k, "
        f"max(`{ledger.time_field}`) AS w FROM {RECORDS_DB}.{ledger.table} FINAL "
        f"WHERE {LEDGER_DENIES[need]} GROUP BY k) AS l ON r.k = l.k WHERE r.t <= l.w"
    )
    checks = [f"countIf({_needs_condition(rule, columns)})" for rule in rules]
    counts = _query(
        client,
        f"SELECT {', '.join(checks)} FROM {model.qualified} FINAL WHERE `{model.id_column}` IN ({withdrawn_ids})",
    ).rows[0]
    return [
        ConsentBreach(model.record.record_type, rule.name, need, int(n), withdrawn=True)
        for rule, n in zip(rules, counts, strict=True)
    ]


def _recordings_without_notice(client: Client, models: list[TableModel]) -> int:
    total = 0
    for model in models:
        if "recording_notice_before_start" not in model.record.requires:
            continue
        total += _scalar(
            client,
            f"SELECT countIf(`{_NOTICE_COLUMN}` > `{model.record.time_field}`) FROM {model.qualified} FINAL",
        )
    return total


def _dsr(client: Client, policy: Policy) -> tuple[tuple[DsrStats, ...], tuple[int, ...], tuple[int, ...]]:
    """Receipts per request type, and the erasure latency histogram with its edges."""
    receipts = policy.for_schema(RECEIPT_SCHEMA)
    edges_s = latency_edges(policy.erasure_max_linger)
    histogram = [0] * (len(edges_s) + 1)
    if receipts is None:
        return (), edges_s, tuple(histogram)
    table = f"{RECORDS_DB}.{receipts.table}"
    latency = "(toUnixTimestamp64Milli(completed_at) - toUnixTimestamp64Milli(requested_at)) / 1000"
    by_status: dict[str, dict[str, int]] = {}
    for request_type, status, n in _query(
        client, f"SELECT toString(request_type), toString(status), count() FROM {table} FINAL GROUP BY 1, 2"
    ).rows:
        by_status.setdefault(str(request_type), {})[str(status)] = int(n)
    latencies: dict[str, tuple[float, float, float]] = {}
    for request_type, q, longest in _query(
        client,
        f"SELECT toString(request_type), quantilesExact(0.5, 0.95)({latency}), max({latency}) "
        f"FROM {table} FINAL WHERE status = 'COMPLETED' GROUP BY 1",
    ).rows:
        latencies[str(request_type)] = (float(q[0]), float(q[1]), float(longest))
    stats = tuple(DsrStats(t, counts, *latencies.get(t, (None, None, None))) for t, counts in sorted(by_status.items()))
    edges = ", ".join(str(e) for e in edges_s)
    for bucket, n in _query(
        client,
        f"SELECT arrayCount(e -> {latency} > e, [{edges}]) AS bucket, count() FROM {table} FINAL "
        "WHERE request_type = 'ERASURE' AND status = 'COMPLETED' GROUP BY bucket",
    ).rows:
        histogram[int(bucket)] = int(n)
    return stats, edges_s, tuple(histogram)


def _surviving_erasure(client: Client, model: TableModel) -> int:
    """Rows of erased subjects ingested up to the erasure: must be none. Ingestion time, not
    event time: a row dated in the future but taken in before the erasure is erased data.
    A row ingested after the erasure is a new contact (the person came back) and is lawful."""
    return _scalar(
        client,
        f"SELECT uniqExact(r.id) FROM (SELECT `{model.id_column}` AS id, `{model.ingest_column}` AS t, "
        f"arrayJoin(subject_keys) AS k FROM {model.qualified}) AS r INNER JOIN (SELECT subject_key, "
        f"max(erased_at) AS e FROM {RECORDS_DB}.{ERASED_KEYS_TABLE} GROUP BY subject_key) AS l "
        "ON r.k = l.subject_key WHERE r.t <= l.e",
    )


def exports_evidence(settings: Settings, policy: Policy, now: datetime) -> ExportsEvidence | None:
    """The access exports in this machine's data directory, where the embedded sink writes
    them; None with CLICKHOUSE_URL (the sinks' own hosts hold them, checked there)."""
    if not settings.embedded_clickhouse:
        return None
    state = exports_state(exports_dir(settings.data_dir), policy.export_retention, now)
    return ExportsEvidence(
        policy.export_retention.days, state.held, state.past_expiry, state.not_private, state.directory_private
    )
