"""The ClickHouse storage model, generated from the policy and the Avro row schemas.

Each policy record type becomes one table in the `records` database whose columns are
exactly its row schema's fields (so the sink can hand ClickHouse Avro batches as they
are), with:
- ReplacingMergeTree versioned by `ingested_at` and ordered by the row's `event_id`, so a
  batch inserted twice (crash between insert and offset commit) collapses to one row;
  analyst views read FINAL, so no duplicate is ever visible;
- monthly partitions on the policy's time field, so old months leave as whole parts,
  and a row TTL of the retention period (enforced explicitly by `records retention run`:
  TTL merges alone may wait hours and only run while the engine is open). The TTL is
  computed on the DateTime64 column itself, correct over the type's whole range:
  `toDateTime()` wraps after 2106, so a row dated 2100 expired at a wrapped time and one
  dated 2400 was dropped on insert, silently;
- a bloom-filter index on `subject_keys` so a data-subject request given any identifier
  finds every row fast.
Analyst views (database `analyst`) leave out every direct identifier of the policy and
the subject keys, and hide restricted or objecting subjects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.policy import Policy, RecordPolicy, default_policy
from pipeline.schemas import AvroSchema, SchemaCatalog, default_catalog, released_versions
from pipeline.topics import erased_keys_retention

RECORDS_DB = "records"
ANALYST_DB = "analyst"
RESTRICTIONS_TABLE = "subject_restrictions"
ERASED_KEYS_TABLE = "erased_keys"
FORMER_ERASED_KEYS_TABLE = "erasure_ledger"  # its name before; `support_tables` renames it
INGESTED_AT = "ingested_at"
# The sink's own record of each request it executed (its receipt, and which command it
# executed): what a redelivered command is checked against. Written only by the sink,
# never from a topic, so a receipt forged on cs.dsr.receipts.v1 cannot stop an execution.
DSR_EXECUTED_TABLE = "dsr_executed"
# An erasure's rows per table counted before its mutations (sink/erasure_progress.py), so a
# sink killed between two tables' mutations resumes with the original counts in its receipt.
# Request ids, table names and counts only; kept ERASURE_PROGRESS_DAYS.
ERASURE_PROGRESS_TABLE = "dsr_erasure_progress"
ERASURE_PROGRESS_DAYS = 30
# The sink's verdict on each stored call recording against its call (notice §5; see
# pipeline/recording_bounds.py): no personal data, a recording id and why.
RECORDING_CHECKS_TABLE = "recording_checks"
RECORDINGS_TABLE = "call_recordings"
# How long a record table keeps a part its merges, mutations (an erasure, a consent
# withdrawal) or TTL merges have replaced. ClickHouse's default is 480 s: the replaced parts
# stay on disk so that a merged part an OS crash left unwritten can be rebuilt from them.
# Here that costs twice: an erased or expired row stays on disk that long after its
# receipt or its retention, and after an OS crash a damaged erased part could be swapped
# back for the parts that still hold the row; and each replaced part stays in the
# engine's memory too, so a sink draining a backlog grew with every part of the last eight
# minutes (`records bench --only sink`: README, Measured here). 30 s is the age at which
# the kernel writes dirty pages back by default. Inserts are not fsynced either (neither
# is a single local broker), so an OS crash was never covered in full.
OLD_PARTS_LIFETIME_S = 30

# Columns that are not direct identifiers but still must not reach analysts: the
# pseudonymous keys link a person across records.
_HIDDEN_FROM_ANALYSTS = frozenset({"subject_keys", "source_event_id"})
# Free text may contain anything a person typed, identifiers included: analysts get its
# length, not its content.
_FREE_TEXT = frozenset({"text", "message"})  # chat messages, contact forms


# The consent contract in storage terms (streams/enforce_consent.py states it for rows):
# the column that records, with each row, whether a policy `needs` was met at collection;
# and the consent-ledger rows that deny a `needs` from their event_time on. Read by the
# sink (to clear withdrawn fields) and the compliance report (to prove none remain).
CONSENT_FLAG_COLUMN: Mapping[str, str] = {
    "contact_consent": "contact_consent",
    "cookie.functional": "cookie_functional",
    "cookie.analytics": "cookie_analytics",
    "geolocation": "geolocation_permission",
}
LEDGER_DENIES: Mapping[str, str] = {
    "contact_consent": "kind = 'CONSENT' AND purpose = 'CONTACT_DETAILS' AND status = 'WITHDRAWN'",
    "cookie.functional": "kind = 'COOKIE' AND NOT cookie_functional",
    "cookie.analytics": "kind = 'COOKIE' AND NOT cookie_analytics",
    "geolocation": "kind = 'COOKIE' AND NOT geolocation_permission",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def _clickhouse_type(node: Any, named: dict[str, Any]) -> str:
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        if len(branches) != 1:
            raise ValueError("only optional (null + one type) unions map to ClickHouse columns")
        inner = _clickhouse_type(branches[0], named)
        return inner if inner.startswith(("Array(", "Map(")) else f"Nullable({inner})"
    if isinstance(node, str):
        if node in named:
            return _clickhouse_type(named[node], named)
        return {
            "string": "String",
            "bytes": "String",
            "int": "Int32",
            "long": "Int64",
            "float": "Float32",
            "double": "Float64",
            "boolean": "Bool",
        }[node]
    kind = node["type"]
    logical = node.get("logicalType")
    if logical == "timestamp-millis":
        return "DateTime64(3, 'UTC')"
    if logical == "uuid":
        return "String"
    if kind == "array":
        return f"Array({_clickhouse_type(node['items'], named)})"
    if kind == "map":
        return f"Map(String, {_clickhouse_type(node['values'], named)})"
    if kind == "enum":
        named[node["name"]] = node
        symbols = ", ".join(f"'{s}' = {i + 1}" for i, s in enumerate(node["symbols"]))
        return f"Enum8({symbols})"
    if isinstance(kind, (str, list, dict)):
        return _clickhouse_type(kind, named)
    raise ValueError(f"unsupported Avro type {kind!r}")


def columns_of(schema: AvroSchema) -> list[Column]:
    named: dict[str, Any] = {}
    return [Column(f["name"], _clickhouse_type(f["type"], named)) for f in schema.definition["fields"]]


@dataclass(frozen=True)
class TableModel:
    record: RecordPolicy
    schema: AvroSchema
    columns: tuple[Column, ...]

    @property
    def name(self) -> str:
        return self.record.table

    @property
    def qualified(self) -> str:
        return f"{RECORDS_DB}.{self.record.table}"

    @property
    def has_subject_keys(self) -> bool:
        return any(c.name == "subject_keys" for c in self.columns)

    @property
    def version_column(self) -> str | None:
        for candidate in (INGESTED_AT, "completed_at"):
            if any(c.name == candidate for c in self.columns):
                return candidate
        return None

    @property
    def ingest_column(self) -> str:
        """The column saying when the pipeline took the row in (the streams stage sets it;
        it versions the row). Erasure selects by it, never by the row's own event time,
        which the source chose and may lie in the future."""
        if not any(c.name == INGESTED_AT for c in self.columns):
            raise ValueError(f"{self.qualified} has no {INGESTED_AT} column")
        return INGESTED_AT

    @property
    def id_column(self) -> str:
        return "event_id" if any(c.name == "event_id" for c in self.columns) else "request_id"

    def create_table(self) -> str:
        time = self.record.time_field
        body = ",\n".join(f"    `{c.name}` {c.type}" for c in self.columns)
        index = (
            ",\n    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1"
            if self.has_subject_keys
            else ""
        )
        version = f"({self.version_column})" if self.version_column else "()"
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified}\n(\n{body}{index}\n)\n"
            f"ENGINE = ReplacingMergeTree{version}\n"
            f"PARTITION BY toYYYYMM({time})\n"
            f"ORDER BY ({self.id_column})\n"
            f"{self.ttl_clause()}\n"
            f"SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600, {self.parts_lifetime_setting()}"
        )

    @staticmethod
    def parts_lifetime_setting() -> str:
        return f"old_parts_lifetime = {OLD_PARTS_LIFETIME_S}"

    def modify_parts_lifetime(self) -> str:
        """Bring a table created before `OLD_PARTS_LIFETIME_S` to it (a no-op on a current one)."""
        return f"ALTER TABLE {self.qualified} MODIFY SETTING {self.parts_lifetime_setting()}"

    def ttl_clause(self) -> str:
        """`TTL <time field> + INTERVAL <policy period> DELETE`: the calendar interval of
        the policy (pipeline/retention_period.py), not an approximation in days."""
        return f"TTL `{self.record.time_field}` + {self.record.period.sql} DELETE"

    def modify_ttl(self) -> str:
        """Bring a table created under an older policy to the policy's TTL. ClickHouse
        materializes a changed TTL once (one mutation); an unchanged one is a no-op."""
        return f"ALTER TABLE {self.qualified} MODIFY {self.ttl_clause()}"

    def add_columns(self) -> list[str]:
        """ADD COLUMN IF NOT EXISTS for each column its schema gained after its first
        released version (a field added with a default): a table created before lacks it,
        and the sink's inserts name every column. No-ops on a current table."""
        first = min(released_versions().get(self.schema.name, []), key=lambda v: v[0], default=None)
        if first is None:
            return []
        known = set(first[1].field_names)
        return [
            f"ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS `{c.name}` {c.type}"
            for c in self.columns
            if c.name not in known
        ]

    def analyst_columns(self) -> list[str]:
        identifiers = set(self.record.identifier_fields)
        out: list[str] = []
        for column in self.columns:
            if column.name in identifiers or column.name in _HIDDEN_FROM_ANALYSTS:
                continue
            if column.name in _FREE_TEXT:
                out.append(f"length(`{column.name}`) AS `{column.name}_length`")
            else:
                out.append(f"`{column.name}`")
        return out

    def create_analyst_view(self) -> str:
        select = ",\n    ".join(self.analyst_columns())
        where = (
            f"\nWHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM "
            f"{RECORDS_DB}.{RESTRICTIONS_TABLE} FINAL WHERE active))"
            if self.has_subject_keys
            else ""
        )
        if self.name == RECORDINGS_TABLE:  # only recordings checked to lie within their call
            checked = (
                f"recording_id IN (SELECT recording_id FROM {RECORDS_DB}.{RECORDING_CHECKS_TABLE} FINAL "
                "WHERE verdict = 'within')"
            )
            where = f"{where}\n  AND {checked}" if where else f"\nWHERE {checked}"
        return (
            f"CREATE OR REPLACE VIEW {ANALYST_DB}.{self.name} AS\nSELECT\n    {select}\n"
            f"FROM {self.qualified} FINAL{where}"
        )


def table_models(policy: Policy | None = None, catalog: SchemaCatalog | None = None) -> list[TableModel]:
    policy = policy or default_policy()
    catalog = catalog or default_catalog()
    models = []
    for record in policy.records.values():
        schema = catalog.get(record.schema)
        models.append(TableModel(record, schema, tuple(columns_of(schema))))
    return models


def erased_keys_days(policy: Policy | None = None) -> int:
    """The erased-keys table's TTL in days (pipeline/topics.py: erased_keys_retention)."""
    return erased_keys_retention(policy or default_policy()).days


def _checks_ttl(policy: Policy | None) -> str:
    """Recording verdicts live as long as the recordings they judge."""
    record = (policy or default_policy()).records.get("call_recording")
    return record.period.sql if record else "INTERVAL 3 MONTH"


def support_tables(policy: Policy | None = None) -> list[str]:
    """Tables that hold DSR state rather than records; no personal data beyond subject keys.

    The erased-keys table holds one row per erased subject key (the latest erasure wins) and
    nothing that links one person's keys (no request id); it expires after
    `erased_keys_days`. The RENAME and the two ALTERs bring the table an older version
    created (as `erasure_ledger`, with a request id) to this name and shape; on a current
    table they are no-ops (no mutation). What the sink executed
    (`dsr_executed`) expires with the receipts (the policy's `dsr_receipt` retention): a
    command older than that is refused by age before the table is asked. The
    last ALTER gives an older records.dsr_executed the receipt's per-shard counts."""
    erased = f"{RECORDS_DB}.{ERASED_KEYS_TABLE}"
    ttl = f"erased_at + INTERVAL {erased_keys_days(policy)} DAY"
    # what the sink executed is kept as long as the receipts it proves (accountability)
    receipts = (policy or default_policy()).records["dsr_receipt"]
    executed_ttl = f"completed_at + {receipts.period.sql}"
    return [
        f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{RESTRICTIONS_TABLE}\n(\n"
        "    `subject_key` String,\n"
        "    `kind` Enum8('RESTRICTION' = 1, 'OBJECTION' = 2),\n"
        "    `active` Bool,\n"
        "    `request_id` String,\n"
        "    `updated_at` DateTime64(3, 'UTC')\n"
        ")\nENGINE = ReplacingMergeTree(updated_at)\nORDER BY (subject_key, kind)",
        f"RENAME TABLE IF EXISTS {RECORDS_DB}.{FORMER_ERASED_KEYS_TABLE} TO {erased}",
        f"CREATE TABLE IF NOT EXISTS {erased}\n(\n"
        "    `subject_key` String,\n"
        "    `erased_at` DateTime64(3, 'UTC')\n"
        f")\nENGINE = ReplacingMergeTree(erased_at)\nORDER BY subject_key\nTTL {ttl} DELETE",
        f"ALTER TABLE {erased} DROP COLUMN IF EXISTS request_id",
        f"ALTER TABLE {erased} MODIFY TTL {ttl} DELETE",
        f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{DSR_EXECUTED_TABLE}\n(\n"
        "    `request_id` String,\n"
        "    `request_type` String,\n"
        "    `status` String,\n"
        "    `requested_at` DateTime64(3, 'UTC'),\n"
        "    `completed_at` DateTime64(3, 'UTC'),\n"
        "    `store_counts` Map(String, Int64),\n"
        "    `detail` Nullable(String),\n"
        "    `request_sha256` String,\n"
        "    `verified_at` DateTime64(3, 'UTC'),\n"
        "    `identity_verified_by` Nullable(String)\n"
        f")\nENGINE = ReplacingMergeTree(completed_at)\nORDER BY request_id\nTTL {executed_ttl} DELETE",
        f"ALTER TABLE {RECORDS_DB}.{DSR_EXECUTED_TABLE} MODIFY TTL {executed_ttl} DELETE",
        # The receipt's per-shard counts (cluster mode), on a table created before them too.
        f"ALTER TABLE {RECORDS_DB}.{DSR_EXECUTED_TABLE} ADD COLUMN IF NOT EXISTS "
        "`shard_counts` Map(String, Map(String, Int64))",
        f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{ERASURE_PROGRESS_TABLE}\n(\n"
        "    `request_id` String,\n"
        "    `store` String,\n"
        "    `rows` Int64,\n"
        "    `counted_at` DateTime64(3, 'UTC')\n"
        ")\nENGINE = ReplacingMergeTree(counted_at)\nORDER BY (request_id, store)\n"
        f"TTL counted_at + INTERVAL {ERASURE_PROGRESS_DAYS} DAY DELETE",
        f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{RECORDING_CHECKS_TABLE}\n(\n"
        "    `recording_id` String,\n"
        "    `verdict` String,\n"
        "    `checked_at` DateTime64(3, 'UTC')\n"
        ")\nENGINE = ReplacingMergeTree(checked_at)\nORDER BY recording_id\n"
        f"TTL checked_at + {_checks_ttl(policy)} DELETE",
        f"ALTER TABLE {RECORDS_DB}.{DSR_EXECUTED_TABLE} "
        "ADD COLUMN IF NOT EXISTS `identity_verified_by` Nullable(String)",
    ]


def statements(policy: Policy | None = None, catalog: SchemaCatalog | None = None) -> Iterator[str]:
    """Every DDL statement of the storage model, in order; each is idempotent."""
    models = table_models(policy, catalog)
    yield f"CREATE DATABASE IF NOT EXISTS {RECORDS_DB}"
    yield f"CREATE DATABASE IF NOT EXISTS {ANALYST_DB}"
    for model in models:
        yield model.create_table()
    for model in models:
        yield model.modify_ttl()
        yield model.modify_parts_lifetime()
    for model in models:
        yield from model.add_columns()
    yield from support_tables(policy)
    for model in models:
        yield model.create_analyst_view()


# ---- server mode: roles, grants, row policies (added for `records clickhouse init`) ----

ANALYST_ROLE = "analyst"
DPO_ROLE = "dpo"
PIPELINE_ROLE = "pipeline"
ROLES = (ANALYST_ROLE, DPO_ROLE, PIPELINE_ROLE)


def access_statements(policy: Policy | None = None, catalog: SchemaCatalog | None = None) -> Iterator[str]:
    """Roles, grants and row policies of a ClickHouse server, after `statements()`; each
    is idempotent. chDB has no access control: in embedded mode these are only parsed.

    - analyst: SELECT on the analyst views only; the views read as their definer (the user
      running init), so analysts need no grant on `records`;
    - dpo: reads everything, corrects and erases (ALTER UPDATE / DELETE on records.*);
    - pipeline (the sink and the retention job): inserts, clears withdrawn consent,
      executes DSRs and retention (ALTER UPDATE / DELETE, MATERIALIZE TTL, OPTIMIZE).
    Row policies on every table with subject keys: dpo and pipeline see every row; an
    analyst granted direct access by mistake still never sees restricted or objecting
    subjects. Users are personal and get a role: `GRANT analyst TO alice`.
    """
    models = table_models(policy, catalog)
    for role in ROLES:
        yield f"CREATE ROLE IF NOT EXISTS {role}"
    yield f"GRANT SELECT ON {ANALYST_DB}.* TO {ANALYST_ROLE}"
    yield f"GRANT SELECT ON {ANALYST_DB}.* TO {DPO_ROLE}"
    yield f"GRANT SELECT, ALTER UPDATE, ALTER DELETE ON {RECORDS_DB}.* TO {DPO_ROLE}"
    yield (
        f"GRANT SELECT, INSERT, ALTER UPDATE, ALTER DELETE, ALTER MATERIALIZE TTL, OPTIMIZE "
        f"ON {RECORDS_DB}.* TO {PIPELINE_ROLE}"
    )
    for model in models:
        yield f"ALTER TABLE {ANALYST_DB}.{model.name} MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER"
    for model in models:
        if not model.has_subject_keys:
            continue
        yield (
            f"CREATE ROW POLICY OR REPLACE all_rows ON {model.qualified} AS PERMISSIVE FOR SELECT USING 1 "
            f"TO {DPO_ROLE}, {PIPELINE_ROLE}"
        )
        yield (
            f"CREATE ROW POLICY OR REPLACE unrestricted_only ON {model.qualified} AS PERMISSIVE FOR SELECT "
            f"USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM {RECORDS_DB}.{RESTRICTIONS_TABLE} "
            f"FINAL WHERE active)) TO {ANALYST_ROLE}"
        )
