"""The storage side of a data-subject request (issue 6): what each request type does to
ClickHouse, as data and SQL. Pure: builds statements and rows, runs nothing
(sink/dsr_commands.py runs them inside the sink).

The contract with the streams stage (pipeline/dsr_contract.py): a message on
cs.dsr.commands.v1 is a request the streams stage verified. Its value is the ORIGINAL
DataSubjectRequest (single-object Avro, still signed); its envelope, signed with the
stage's command key, carries what only the holder of the pepper can compute, the subject
keys, plus the verification time and the Kafka-side counts. Rows are found by subject key
only (`hasAny(subject_keys, [...])`, bloom-filter indexed), never by searching plaintext.

What each request does to the tables that carry `subject_keys` (records.*):
- ERASURE: the subject's rows are deleted by a real mutation (`ALTER TABLE ... DELETE`,
  which rewrites the parts: a lightweight DELETE would only mask them), ONE per table for
  all erasures executed together, and only on tables that hold a row of them; rows are
  counted (distinct row ids) first for the receipt. Every key goes to
  records.erased_keys (subject_key, erased_at: no request id links a person's keys;
  the rows expire with the policy's erasure.erased_keys_retention_days), which the insert path
  reads so that replayed rows of the subject never come back (sink/erasure_guard.py);
  the subject's rows of records.subject_restrictions go too. The erasure time is the
  envelope's `verified_at`, when the streams stage executed its part and from which
  its own erased-keys table (streams/erased_keys.py) lets the subject's events through
  again. Rows are selected by when they were ingested (`ingested_at`, stamped by the
  streams stage), never by their event time: every row of the subject ingested up to the
  erasure goes, however far in the future its event time lies; a row ingested after it
  is new contact, kept in both stores, whenever the sink gets to the command;
- ACCESS: every row of the subject, every table (sink/dsr_export.py);
- RECTIFICATION: on every table having a column that holds the field (a phone number is
  `phone` in chats and `caller_number` in calls and recordings: pipeline.dsr
  RECTIFIED_COLUMNS), the corrected version of each of the subject's rows is inserted
  (the value a query parameter, never mutation text: the
  engine keeps mutation commands in system.mutations and mutation_N.txt), then the
  partitions holding them are merged (OPTIMIZE ... FINAL) so the uncorrected versions are
  gone; the corrected email or phone is normalised like the identifiers the streams
  stage keys (pipeline.subject_keys.normalise), and its key (the envelope's new_subject_key)
  joins `subject_keys`, so a later request by the corrected identifier finds the rows;
- RESTRICTION / OBJECTION: an active records.subject_restrictions row per key and kind
  (the analyst views and row policies hide the subject); RESTRICTION_LIFTED: inactive
  rows for both kinds. The row version (`updated_at`) is the request's `issued_at`, so
  the DPO's order decides and a redelivered request writes the same row again;
- CONSENT_WITHDRAWAL: nothing here; the streams stage emits the WITHDRAWN consent-ledger
  rows and the sink clears the fields they deny (sink/consent_withdrawal.py). The
  receipt counts the rows of the subject already cleared.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.clickhouse_ddl import (
    DSR_EXECUTED_TABLE,
    ERASED_KEYS_TABLE,
    RECORDS_DB,
    RESTRICTIONS_TABLE,
    TableModel,
)
from pipeline.dsr import RECTIFIABLE_FIELDS, RequestType, rectified_columns
from pipeline.dsr_contract import CommandEnvelope, Receipt
from pipeline.subject_keys import normalise
from sink.consent_withdrawal import CONSENT_WITHDRAWN, sql_string, sql_strings
from sink.exceptions import SinkError

ERASED_KEYS = f"{RECORDS_DB}.{ERASED_KEYS_TABLE}"
RESTRICTIONS = f"{RECORDS_DB}.{RESTRICTIONS_TABLE}"
EXECUTED = f"{RECORDS_DB}.{DSR_EXECUTED_TABLE}"
ERASED_KEYS_COLUMNS = ("subject_key", "erased_at")
RESTRICTION_COLUMNS = ("subject_key", "kind", "active", "request_id", "updated_at")
RESTRICTION_KINDS = ("RESTRICTION", "OBJECTION")
_RECEIPT_COLUMNS = (
    "request_id",
    "request_type",
    "status",
    "requested_at",
    "completed_at",
    "store_counts",
    "detail",
    "shard_counts",
)
EXECUTED_COLUMNS = (*_RECEIPT_COLUMNS, "request_sha256", "verified_at", "identity_verified_by")


class DsrCommandError(SinkError):
    """A command cannot be executed as it is (its receipt says FAILED); never personal data."""


@dataclass(frozen=True)
class DsrCommand:
    """One verified request as the sink executes it: the DPO's request and the streams
    stage's verified envelope (the only source of subject keys and verification time)."""

    request: Mapping[str, Any]  # the decoded DataSubjectRequest (identifiers included: never log it)
    envelope: CommandEnvelope

    @property
    def request_id(self) -> str:
        return str(self.request["request_id"])

    @property
    def request_type(self) -> RequestType | None:
        try:
            return RequestType(str(self.request.get("request_type")))
        except ValueError:
            return None

    @property
    def issued_at(self) -> datetime:
        issued = self.request["issued_at"]
        return issued if issued.tzinfo else issued.replace(tzinfo=UTC)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.envelope.subject_keys


def subject_tables(models: Iterable[TableModel]) -> list[TableModel]:
    """The tables whose rows belong to subjects (they carry `subject_keys`)."""
    return [m for m in models if m.has_subject_keys]


def store_name(model: TableModel) -> str:
    """A table's name in a receipt's store_counts (Kafka stores are topic names)."""
    return model.qualified


def _has_any(keys: Collection[str]) -> str:
    return f"hasAny(subject_keys, {sql_strings(keys)})"


# ---- erasure -------------------------------------------------------------------------


Erasure = tuple[Collection[str], datetime]  # a subject's keys, its erasure time


def _erased(model: TableModel, erasures: Sequence[Erasure]) -> str:
    """SQL: the row holds a key of an erasure and was ingested up to that erasure (its
    `ingested_at`, set by the streams stage, not its event time: a row dated in the future
    is erased like any other). The leading hasAny of every key lets the bloom-filter index
    skip granules."""
    every = set().union(*(keys for keys, _ in erasures))
    terms = " OR ".join(_erased_one(model, keys, at) for keys, at in erasures)
    return f"{_has_any(every)} AND ({terms})"


def _erased_one(model: TableModel, keys: Collection[str], at: datetime) -> str:
    return f"({_has_any(keys)} AND `{model.ingest_column}` <= {sql_time(at)})"


def sql_time(moment: datetime) -> str:
    """A DateTime64(3, 'UTC') literal."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"toDateTime64('{utc.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"


def count_query(model: TableModel, erasures: Sequence[Erasure]) -> str:
    """SELECT the stored row versions the erasures delete (whether a mutation is needed: no
    FINAL, every version counts), then per erasure its distinct rows (for receipts)."""
    per_subject = ", ".join(f"uniqExactIf({model.id_column}, {_erased_one(model, keys, at)})" for keys, at in erasures)
    return f"SELECT count(), {per_subject} FROM {model.qualified} WHERE {_erased(model, erasures)}"


def counts_query(models: Sequence[TableModel], erasures: Sequence[Erasure]) -> str:
    """`count_query` of every table in one query (one round trip, the tables read in
    parallel): a row per table, `(its position in models, count, per erasure ...)`."""
    return " UNION ALL ".join(
        f"SELECT {position} AS position, * FROM ({count_query(model, erasures)})"
        for position, model in enumerate(models)
    )


def erase_mutation(model: TableModel, erasures: Sequence[Erasure]) -> str:
    """ONE real mutation deleting the rows of every erasure executed together."""
    return f"ALTER TABLE {model.qualified} DELETE WHERE {_erased(model, erasures)}"


def restrictions_by_key(keys: Collection[str]) -> str:
    """SELECT subject_key, count(): the subjects' rows of records.subject_restrictions."""
    return f"SELECT subject_key, count() FROM {RESTRICTIONS} WHERE subject_key IN {_in(keys)} GROUP BY subject_key"


def restrictions_erase(keys: Collection[str]) -> str:
    return f"ALTER TABLE {RESTRICTIONS} DELETE WHERE subject_key IN {_in(keys)}"


def erasure_time(command: DsrCommand) -> datetime:
    """When the subject counts as erased: the streams stage's verification time (signed),
    in milliseconds, as the erased-keys table stores it."""
    moment = command.envelope.verified_at
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def erased_key_rows(command: DsrCommand, erased_at: datetime) -> list[tuple[str, datetime]]:
    """One ledger row per subject key; no request id, so the rows do not link a person's keys."""
    return [(key, erased_at) for key in command.keys]


def _in(values: Collection[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in sorted(values)) + ")"


# ---- rectification -------------------------------------------------------------------


def rectified_value(field_name: str | None, value: str | None) -> tuple[str, str]:
    """(field, stored value) of a rectification: identifiers in their normalised form."""
    if field_name is None or field_name not in RECTIFIABLE_FIELDS or value is None or not value.strip():
        raise DsrCommandError("rectification needs a known field and a value")
    kind = RECTIFIABLE_FIELDS[field_name]
    if kind is None:
        return field_name, value.strip()
    canonical = normalise(kind, value)
    if canonical is None:
        raise DsrCommandError(f"the corrected {field_name} is not a valid {kind.value}")
    return field_name, canonical


def rectification_targets(models: Iterable[TableModel], field_name: str) -> list[tuple[TableModel, str]]:
    """(table, column) pairs a rectification of `field_name` rewrites: every table with
    subject keys holding one of its columns (a phone: `phone` and `caller_number`)."""
    targets = []
    for model in subject_tables(models):
        names = {c.name for c in model.columns}
        column = next((c for c in rectified_columns(field_name) if c in names), None)
        if column is not None:
            targets.append((model, column))
    return targets


def _rectifiable(field_name: str, keys: Collection[str]) -> str:
    # Only rows that hold the field: a value stripped for want of consent is not stored,
    # and a correction must not store it.
    return f"{_has_any(keys)} AND `{field_name}` IS NOT NULL"


def rectified_count(model: TableModel, field_name: str, keys: Collection[str]) -> str:
    """Distinct rows of the subject whose `field_name` the rectification corrects."""
    return f"SELECT uniqExact({model.id_column}) FROM {model.qualified} WHERE {_rectifiable(field_name, keys)}"


def rectified_partitions(model: TableModel, field_name: str, keys: Collection[str]) -> str:
    """SELECT the partitions holding a row the rectification corrects (before it runs)."""
    return f"SELECT DISTINCT _partition_id FROM {model.qualified} WHERE {_rectifiable(field_name, keys)}"


def rectified_versions(
    model: TableModel, field_name: str, value: str, keys: Collection[str], new_key: str | None
) -> tuple[str, dict[str, str]]:
    """INSERT ... SELECT the corrected version of each row (and the corrected identifier's
    key), with its query parameters. The value travels as a parameter and the statement is
    an insert, not a mutation: nothing personal is written into the engine's mutation log
    (system.mutations, mutation_N.txt), where an `ALTER ... UPDATE col = 'value'` stayed next
    to the subject keys. The new version's `ingested_at` is the old one plus 1 ms, so the
    ReplacingMergeTree keeps it, and the row still counts as ingested when it first was
    (an erasure after the rectification erases it). `optimize_partition` then merges the
    old versions away."""
    replaced = {
        field_name: "{rectified_value:String}",
        model.ingest_column: f"`{model.ingest_column}` + toIntervalMillisecond(1)",
    }
    parameters = {"rectified_value": value}
    if new_key is not None:
        replaced["subject_keys"] = "arrayDistinct(arrayConcat(subject_keys, [{rectified_key:String}]))"
        parameters["rectified_key"] = new_key
    names = [c.name for c in model.columns]
    # By position, without aliases: an alias named like a column would replace that column
    # in the WHERE clause (the row without the field would be "corrected" too).
    select = ", ".join(replaced.get(n, f"`{n}`") for n in names)
    columns = ", ".join(f"`{n}`" for n in names)
    return (
        f"INSERT INTO {model.qualified} ({columns}) SELECT {select} FROM {model.qualified} FINAL "
        f"WHERE {_rectifiable(field_name, keys)}",
        parameters,
    )


def optimize_partition(model: TableModel, partition_id: str) -> str:
    """Merge a partition so only the newest version of each row remains (the parts holding
    the uncorrected values are rewritten); not a mutation."""
    return f"OPTIMIZE TABLE {model.qualified} PARTITION ID {sql_string(partition_id)} FINAL"


# ---- restriction and objection -------------------------------------------------------


def restriction_rows(command: DsrCommand) -> list[tuple[str, str, bool, str, datetime]]:
    """records.subject_restrictions rows of a RESTRICTION, OBJECTION or RESTRICTION_LIFTED."""
    kind = command.request_type
    if kind is RequestType.RESTRICTION_LIFTED:
        changes = [(k, False) for k in RESTRICTION_KINDS]
    elif kind in (RequestType.RESTRICTION, RequestType.OBJECTION):
        changes = [(kind.value, True)]
    else:
        raise ValueError(f"{kind} does not change restrictions")
    return [
        (key, name, active, command.request_id, command.issued_at) for key in command.keys for name, active in changes
    ]


def subject_rows_count(model: TableModel, keys: Collection[str]) -> str:
    """Rows of the subject a restriction hides (or a lifting shows again)."""
    return f"SELECT count() FROM {model.qualified} FINAL WHERE {_has_any(keys)}"


# ---- consent withdrawal -----------------------------------------------------------------


def withdrawn_count(model: TableModel, keys: Collection[str]) -> str | None:
    """Rows of the subject whose fields a consent withdrawal cleared so far (None: the
    table has no consent-bound fields)."""
    if not any(rule.needs for rule in model.record.fields.values()) or not any(
        c.name == "stripped" for c in model.columns
    ):
        return None
    mark = sql_string(f":{CONSENT_WITHDRAWN}")
    return (
        f"SELECT countIf(arrayExists(x -> endsWith(x, {mark}), stripped)) "
        f"FROM {model.qualified} FINAL WHERE {_has_any(keys)}"
    )


# ---- access ---------------------------------------------------------------------------


def export_query(model: TableModel, keys: Collection[str]) -> str:
    """Every row of the subject, as analysts never see it: all columns, deduplicated."""
    return (
        f"SELECT * FROM {model.qualified} FINAL WHERE {_has_any(keys)} "
        f"ORDER BY `{model.record.time_field}`, {model.id_column}"
    )


# ---- what the sink executed -----------------------------------------------------------


def executed_row(receipt: Receipt, envelope: CommandEnvelope) -> tuple[Any, ...]:
    """The records.dsr_executed row of an executed command (EXECUTED_COLUMNS)."""
    value = receipt.to_value()
    return (
        *(value[c] for c in _RECEIPT_COLUMNS),
        envelope.request_sha256,
        envelope.verified_at,
        value["identity_verified_by"],
    )


def executed_query(request_ids: Collection[str]) -> str:
    """What the sink itself recorded as COMPLETED for these requests (a redelivered command
    is not executed again; its stored receipt is produced again instead). Never the
    receipts table: that one is fed from a topic anyone may write to."""
    columns = ", ".join(f"`{c}`" for c in EXECUTED_COLUMNS)
    return f"SELECT {columns} FROM {EXECUTED} FINAL WHERE request_id IN {_in(request_ids)} AND status = 'COMPLETED'"
