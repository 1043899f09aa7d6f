"""The storage side of a consent withdrawal: which stored fields a ConsentLedgerRecord
takes back, as SQL. Pure: builds statements, runs nothing.

The contract (streams/enforce_consent.py states it from the producing side): every
ledger row states the consent in force from its `event_time` on. For each consent it
denies, every policy field whose `needs` is that consent (and, if the rule names
`channels`, only in rows of those channels) is cleared, set to NULL and listed in
`stripped` as `field:consent_withdrawn`, in every row carrying any of the ledger row's
`subject_keys` whose policy time field is <= `event_time`. A ledger row denies:
- `contact_consent`: kind CONSENT, purpose CONTACT_DETAILS, status WITHDRAWN;
- `cookie.functional` / `cookie.analytics` / `geolocation`: kind COOKIE with
  `cookie_functional` / `cookie_analytics` / `geolocation_permission` false.

Both arrival orders end the same, and applying twice (a replay) changes nothing more.
Two ways keep it (sink/batch_writer.py picks one):
- the sole writer (embedded mode) keeps the denials in memory
  (sink/clear_before_insert.py): a row a denial covers is stored cleared by its own insert
  (`clearing_columns`, the mutation's expressions as a SELECT list), and only a
  denial that covers more than the known ones (a NEW one) clears stored rows, with
  `stored_rows_query` + `clearing_mutation`, before its ledger row is stored; a batch
  without a new denial runs no query and no mutation;
- otherwise (several sinks share a server) after every batch that inserted ledger rows or
  rows of a table with consent-bound fields:
1. `affected_query` finds the (event_id, need) pairs to clear: rows of the table that
   carry a key of a ledger row of this batch (the withdrawal came now), or that were
   inserted by this batch (the row came after its withdrawal was stored, or was replayed
   after a crash with its old values), joined with every stored denial of their keys;
   only rows where a field to clear is still non-null count, so applying twice finds
   nothing the second time. No FINAL: any stored version of a row that still holds a
   value is enough, and the mutation clears every version of that id;
2. `clearing_mutation` clears them: ONE `ALTER TABLE ... UPDATE` per table per batch,
   selecting the rows by `event_id` (the sorting key, so only their granules are read).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pipeline.clickhouse_ddl import LEDGER_DENIES, TableModel
from pipeline.policy import FieldRule

CONSENT_WITHDRAWN = "consent_withdrawn"
LEDGER_RECORD_TYPE = "consent_ledger"

# need -> SQL condition over a consent_ledger row under which that row denies the need.


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_strings(values: Collection[str]) -> str:
    """A ClickHouse Array(String) literal."""
    return "[" + ", ".join(sql_string(v) for v in sorted(values)) + "]"


@dataclass(frozen=True)
class ConsentBoundTable:
    """A table with fields that a consent withdrawal clears, and those fields by need."""

    model: TableModel
    fields: Mapping[str, tuple[FieldRule, ...]]  # need -> rules, in column order

    @property
    def time_field(self) -> str:
        return self.model.record.time_field

    def applies(self, rule: FieldRule) -> str:
        """SQL: the rule applies to the row (its channel) and the field still holds a value."""
        if rule.channels is None:
            return f"`{rule.name}` IS NOT NULL"
        return f"(channel IN {_tuple(rule.channels)} AND `{rule.name}` IS NOT NULL)"


def consent_bound(model: TableModel) -> ConsentBoundTable | None:
    """The consent-bound fields of a table, or None when it has none (or no subject keys)."""
    if not model.has_subject_keys:
        return None
    columns = {c.name for c in model.columns}
    by_need: dict[str, list[FieldRule]] = {}
    for column in model.columns:
        rule = model.record.fields.get(column.name)
        if rule is None or rule.needs not in LEDGER_DENIES:
            continue
        if rule.channels is not None and "channel" not in columns:
            continue
        by_need.setdefault(rule.needs, []).append(rule)  # type: ignore[arg-type]
    if not by_need:
        return None
    return ConsentBoundTable(model, {need: tuple(rules) for need, rules in by_need.items()})


def _tuple(values: Sequence[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def _denied_needs(needs: Collection[str]) -> str:
    parts = [f"if({LEDGER_DENIES[need]}, [{sql_string(need)}], [])" for need in sorted(needs)]
    return f"arrayConcat({', '.join(parts)})" if len(parts) > 1 else parts[0]


def affected_query(
    table: ConsentBoundTable,
    ledger: TableModel,
    *,
    new_row_ids: Collection[str],
    new_ledger_ids: Collection[str],
) -> tuple[str, dict[str, list[str]]] | None:
    """SELECT event_id, need: the fields to clear after a batch, with its query parameters
    (the batch's ids travel as parameters, not as SQL text); None when there is nothing to
    look at."""
    if not new_row_ids and not new_ledger_ids:
        return None
    selectors = []
    parameters: dict[str, list[str]] = {}
    if new_row_ids:
        selectors.append("event_id IN {new_row_ids:Array(String)}")
        parameters["new_row_ids"] = list(new_row_ids)
    if new_ledger_ids:
        selectors.append(
            f"hasAny(subject_keys, (SELECT groupArrayArray(subject_keys) FROM {ledger.qualified} "
            "WHERE event_id IN {new_ledger_ids:Array(String)}))"
        )
        parameters["new_ledger_ids"] = list(new_ledger_ids)
    needs = sorted(table.fields)
    holds = " OR ".join(
        f"(d.need = {sql_string(need)} AND ({' OR '.join(table.applies(r) for r in table.fields[need])}))"
        for need in needs
    )
    rows = (
        f"SELECT event_id, subject_keys, `{table.time_field}` AS row_time, "
        + ", ".join(f"`{c}`" for c in _row_columns(table))
        + f" FROM {table.model.qualified} WHERE {' OR '.join(selectors)}"
    )
    sql = (
        f"WITH rows AS ({rows})\n"
        "SELECT DISTINCT r.event_id, d.need\n"
        "FROM rows AS r ARRAY JOIN r.subject_keys AS key\n"
        "INNER JOIN (\n"
        "    SELECT key, need, max(event_time) AS until FROM (\n"
        f"        SELECT arrayJoin(subject_keys) AS key, event_time, arrayJoin({_denied_needs(needs)}) AS need\n"
        f"        FROM {ledger.qualified}\n"
        f"        WHERE ({' OR '.join(LEDGER_DENIES[n] for n in needs)})\n"
        "          AND hasAny(subject_keys, (SELECT groupArrayArray(subject_keys) FROM rows))\n"
        "    ) GROUP BY key, need\n"
        ") AS d ON key = d.key\n"
        f"WHERE r.row_time <= d.until AND ({holds})"
    )
    return sql, parameters


def stored_rows_query(
    table: ConsentBoundTable, denials: Mapping[str, Mapping[str, int]]
) -> tuple[str, dict[str, list[str] | list[int]]] | None:
    """SELECT event_id, need: the stored rows of `table` that new denials cover, with its
    query parameters. `denials`: need -> subject key -> denial time in ms (the latest known
    for that key). The same selection as `affected_query`, but the denials travel as
    parameters, so it can run before the batch's ledger rows are stored; None when no
    denial concerns this table."""
    keys: list[str] = []
    needs: list[str] = []
    untils: list[int] = []
    for need in sorted(denials):
        if need not in table.fields:
            continue
        for key, until in sorted(denials[need].items()):
            keys.append(key)
            needs.append(need)
            untils.append(until)
    if not keys:
        return None
    holds = " OR ".join(
        f"(d.need = {sql_string(need)} AND ({' OR '.join(table.applies(r) for r in table.fields[need])}))"
        for need in sorted(set(needs))
    )
    rows = (
        f"SELECT event_id, subject_keys, `{table.time_field}` AS row_time, "
        + ", ".join(f"`{c}`" for c in _row_columns(table))
        + f" FROM {table.model.qualified} WHERE hasAny(subject_keys, {{keys:Array(String)}})"
    )
    sql = (
        "WITH d AS (\n"
        "    SELECT tupleElement(t, 1) AS key, tupleElement(t, 2) AS need,\n"
        "           fromUnixTimestamp64Milli(tupleElement(t, 3)) AS until\n"
        "    FROM (SELECT arrayJoin(arrayZip(\n"
        "        {keys:Array(String)}, {needs:Array(String)}, {untils:Array(Int64)})) AS t)\n"
        ")\n"
        "SELECT DISTINCT r.event_id, d.need\n"
        f"FROM ({rows}) AS r ARRAY JOIN r.subject_keys AS key\n"
        "INNER JOIN d ON key = d.key\n"
        f"WHERE r.row_time <= d.until AND ({holds})"
    )
    return sql, {"keys": keys, "needs": needs, "untils": untils}


def _row_columns(table: ConsentBoundTable) -> list[str]:
    names = {rule.name for rules in table.fields.values() for rule in rules}
    if any(rule.channels is not None for rules in table.fields.values() for rule in rules):
        names.add("channel")
    return [c.name for c in table.model.columns if c.name in names]


def clearing_mutation(table: ConsentBoundTable, affected: Mapping[str, Collection[str]]) -> str | None:
    """ONE ALTER TABLE ... UPDATE clearing, per need, its fields in the rows `affected[need]`."""
    affected = {need: ids for need, ids in affected.items() if ids and need in table.fields}
    if not affected:
        return None
    values, stripped = _cleared(table, {need: f"event_id IN {sql_strings(ids)}" for need, ids in affected.items()})
    # All expressions of one UPDATE read the row as it was, so `stripped` sees the old values.
    assignments = [*(f"`{name}` = {value}" for name, value in values.items()), f"stripped = {stripped}"]
    every_id = sql_strings({i for ids in affected.values() for i in ids})
    return f"ALTER TABLE {table.model.qualified}\nUPDATE {', '.join(assignments)}\nWHERE event_id IN {every_id}"


def clearing_columns(table: ConsentBoundTable, hits: Mapping[str, str]) -> list[str]:
    """The SELECT list of an INSERT ... SELECT storing `table` rows with the fields of each
    need cleared where `hits[need]` (SQL over the row) holds: one expression per column, in
    column order, without aliases (an alias would shadow the column it replaces, and
    `stripped` must see the values as they were)."""
    values, stripped = _cleared(table, {need: hit for need, hit in hits.items() if need in table.fields})
    return [values.get(c.name) or (stripped if c.name == "stripped" else f"`{c.name}`") for c in table.model.columns]


def _cleared(table: ConsentBoundTable, hits: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Per field a need of `hits` covers, the expression of its value after clearing; and
    the expression of `stripped` with a `field:consent_withdrawn` mark per field cleared
    that held a value. `hits[need]`: SQL, the row is covered by that need."""
    values: dict[str, str] = {}
    marks: list[str] = []
    for need in sorted(hits):
        for rule in table.fields[need]:
            hit = hits[need]
            if rule.channels is not None:
                hit += f" AND channel IN {_tuple(rule.channels)}"
            values[rule.name] = f"if({hit}, NULL, `{rule.name}`)"
            marks.append(
                f"if({hit} AND `{rule.name}` IS NOT NULL, {sql_string(f'{rule.name}:{CONSENT_WITHDRAWN}')}, '')"
            )
    return values, f"arrayConcat(stripped, arrayFilter(x -> x != '', [{', '.join(marks)}]))"


def ledger_model(models: Sequence[TableModel]) -> TableModel:
    return next(m for m in models if m.record.record_type == LEDGER_RECORD_TYPE)
