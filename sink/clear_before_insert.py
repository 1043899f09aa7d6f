"""Consent withdrawals applied without a query per batch (the sink's sole-writer path):
sink/consent_withdrawal.py's contract, kept with an in-memory `DenialState`.

For a batch, before anything of it is inserted (`prepare`, then `apply`):
1. the state is (re)loaded from the stored ledger if it is not loaded (start, or after a
   batch was dropped half-way: one query);
2. the batch's ledger rows (few) are decoded; each denial is noted in the state; a denial
   is NEW unless an earlier one strictly covers it (a later time for each of its keys):
   it may cover stored rows that no applied denial covered;
3. every row of a consent-bound table is looked up by its subject keys and time, read
   straight from the Avro body (no decode): a row with a denied key dated up to that
   denial is COVERED by that need (`WithdrawalPlan.covered`, by event id). The writer
   stores covered rows cleared: their insert is an INSERT ... SELECT whose column
   expressions set the fields the need covers to NULL and list them in `stripped`
   (sink/select_insert.py), the same expressions as the mutation of stored rows. So a row
   that comes after its withdrawal is stored already cleared, a row replayed with its old
   values is cleared again, and Python never re-encodes a row. Rows without a denied key,
   the common case, cost one key lookup;
4. `apply`: only for NEW denials, one read query per consent-bound table
   (`stored_rows_query`) and at most one `ALTER TABLE ... UPDATE` clearing the stored rows
   they cover. A batch without a new denial runs no query and no mutation.
Then the writer inserts the rows and the ledger rows. Since the clearing of stored rows
runs before the ledger rows are stored, a stored denial has always been applied, and a
denial it strictly covers needs nothing more. A replayed denial (same time as the one
held) is NEW again and applied again, which is idempotent: so a crash at any step, even
one left by a version that stored ledger rows before clearing, ends cleared.

Correct only while this sink is the store's only writer (embedded mode: one sink per chDB
directory): with several sinks, another sink's ledger rows never reach this state, and
the writer keeps the per-batch query (`affected_query`) instead.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import fastavro
from clickhouse_connect.driver.client import Client

from pipeline.avro_binary import read_string
from pipeline.clickhouse_ddl import TableModel
from sink.batch import Batch, Group
from sink.consent_withdrawal import ConsentBoundTable, stored_rows_query
from sink.denial_state import (
    DenialState,
    has_key_prefix,
    ledger_denies,
    prefix_subject_keys,
    string_reader,
    time_reader,
    to_ms,
)
from sink.metrics import SinkMetrics

log = logging.getLogger(__name__)


@dataclass
class WithdrawalPlan:
    """What `prepare` found in one batch, for `apply` and the writer."""

    new: dict[str, dict[str, int]] = field(default_factory=dict)  # need -> key -> until ms
    covered: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # table -> need -> event ids


class ClearBeforeInsert:
    """See the module docstring."""

    def __init__(
        self,
        consent_tables: Sequence[ConsentBoundTable],
        ledger: TableModel,
        metrics: SinkMetrics,
    ) -> None:
        self.tables = {t.model.name: t for t in consent_tables}
        self.ledger = ledger
        self.metrics = metrics
        # the longest consent-bound retention, in calendar days at most (RetentionPeriod.max_days)
        days = max((t.model.record.period.max_days for t in consent_tables), default=3650)
        horizon = timedelta(days=days)
        self.state = DenialState(horizon + timedelta(days=1))

    def invalidate(self) -> None:
        self.state.invalidate()

    def prepare(self, client: Client, batch: Batch) -> WithdrawalPlan:
        """Steps 1-3; the bodies are left as they are (the writer clears covered rows)."""
        if not self.state.loaded:
            held = self.state.load(client, self.ledger)
            log.info("consent denials loaded: %d subject key(s)", held)
        plan = WithdrawalPlan()
        for (name, _), group in batch.groups.items():
            if name == self.ledger.name:
                self._note_ledger(group, plan)
        if len(self.state) == 0:
            return plan
        for (name, _), group in batch.groups.items():
            table = self.tables.get(name)
            if table is not None and group.bodies:
                self._cover_group(table, group, plan.covered.setdefault(name, {}))
        for table_name, by_need in plan.covered.items():
            for need, ids in by_need.items():
                self.metrics.consent_cleared.labels(table_name, need).inc(len(ids))
        return plan

    def apply(self, client: Client, plan: WithdrawalPlan) -> dict[str, dict[str, set[str]]]:
        """Step 4: table -> need -> stored row ids to clear (the caller runs the mutation)."""
        out: dict[str, dict[str, set[str]]] = {}
        if not plan.new:
            return out
        for name, table in self.tables.items():
            found = stored_rows_query(table, plan.new)
            if found is None:
                continue
            query, parameters = found
            affected: dict[str, set[str]] = {}
            for event_id, need in client.query(query, parameters=parameters).result_rows:
                affected.setdefault(need, set()).add(event_id)
            if affected:
                out[name] = affected
        return out

    # ---- steps 2 and 3 ----------------------------------------------------------------

    def _note_ledger(self, group: Group, plan: WithdrawalPlan) -> None:
        for body in group.bodies:
            try:
                record = fastavro.schemaless_reader(io.BytesIO(body), group.writer.parsed, None)
            except Exception:  # an invalid body: the insert step dead-letters it
                continue
            if not isinstance(record, dict):
                continue
            needs = ledger_denies(record)
            if not needs:
                continue
            keys = [k.encode("utf-8") for k in record.get("subject_keys") or ()]
            until = to_ms(record["event_time"])
            for need in needs:
                if self.state.note(keys, need, until):
                    news = plan.new.setdefault(need, {})
                    for key in keys:
                        latest = self.state.until([key], need)
                        if latest is not None:
                            news[key.decode("utf-8")] = latest

    def _cover_group(self, table: ConsentBoundTable, group: Group, covered: dict[str, set[str]]) -> None:
        """Step 3 for one group: into `covered`, the event ids of its rows each need covers
        (a denied key, dated up to the denial, and a rule of the need for the row's channel)."""
        state = self.state
        fast = has_key_prefix(group.writer)
        row_time = time_reader(group.writer, table.time_field) if fast else None
        by_channel = any(rule.channels is not None for rules in table.fields.values() for rule in rules)
        row_channel = string_reader(group.writer, "channel") if fast and by_channel else None
        # read straight from the body, or (None) decode each row
        direct = row_time if row_channel is not None or not by_channel else None
        for body in group.bodies:
            channel: str | None = None
            if direct is not None:
                try:
                    keys = prefix_subject_keys(body)
                    if not state.hits(keys):
                        continue
                    row_ms = direct(body)
                    event_id = read_string(body)[0]
                    if row_channel is not None:
                        channel = row_channel(body)
                except ValueError:  # a truncated body: the insert step dead-letters it
                    continue
            else:  # a writer whose fields these readers cannot skip: decode the row
                found = _decoded(group, body, table.time_field)
                if found is None:
                    continue
                keys, row_ms, event_id, channel = found
            if row_ms is None:
                continue
            for need, rules in table.fields.items():
                until = state.until(keys, need)
                if until is None or row_ms > until:
                    continue
                if any(rule.channels is None or channel in rule.channels for rule in rules):
                    covered.setdefault(need, set()).add(event_id)


def _decoded(group: Group, body: bytes, time_field: str) -> tuple[list[bytes], int | None, str, str | None] | None:
    """Subject keys, time (ms), event id and channel of a decoded row; None when the body
    is not a valid record (the insert step dead-letters it)."""
    try:
        record = fastavro.schemaless_reader(io.BytesIO(body), group.writer.parsed, None)
    except Exception:  # fastavro raises several kinds on a bad body
        return None
    if not isinstance(record, dict):
        return None
    moment = record.get(time_field)
    return (
        [k.encode("utf-8") for k in record.get("subject_keys") or ()],
        to_ms(moment) if moment is not None else None,
        str(record.get("event_id")),
        record.get("channel"),
    )
