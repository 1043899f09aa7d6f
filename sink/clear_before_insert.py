"""Consent withdrawals applied without a query per batch (the sink's sole-writer path):
sink/consent_withdrawal.py's contract, kept with an in-memory `DenialState`.

For a batch, before anything of it is inserted (`prepare`, then `apply`):
1. the state is (re)loaded from the stored ledger if it is not loaded (start, or after a
   batch was dropped half-way: one query);
2. the batch's ledger rows (few) are decoded; each denial is noted in the state; a denial
   is NEW unless an earlier one strictly covers it (a later time for each of its keys):
   it may cover stored rows that no applied denial covered;
3. every row of a consent-bound table whose subject keys (read from the Avro body, no
   decode) hit the state is decoded, the fields its denials cover are set to None and
   listed in `stripped`, and the body is re-encoded: a row that comes after its
   withdrawal is stored already cleared, and a row replayed with its old values is
   cleared again. Rows without a denied key, the common case, cost one key lookup;
4. `apply`: only for NEW denials, one read query per consent-bound table
   (`stored_rows_query`) and at most one `ALTER TABLE ... UPDATE` clearing the stored rows
   they cover. A batch without a new denial runs no query and no mutation.
Then the writer inserts the rows and the ledger rows. Since the clearing of stored rows
runs before the ledger rows are stored, a stored denial has always been applied, and a
denial it strictly covers needs nothing more. A replayed denial (same time as the one
held) is NEW again and applied again, which is idempotent: so a crash at any step, even
one left by a version that stored ledger rows before clearing, ends cleared. Rows the Python
clearing cannot rewrite (a writer schema without `stripped` or with a non-nullable
field) are left to `affected_query` after the insert (`leftover`).

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
from typing import Any

import fastavro
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import TableModel
from sink.batch import Batch, Group
from sink.consent_withdrawal import CONSENT_WITHDRAWN, ConsentBoundTable, stored_rows_query
from sink.denial_state import DenialState, has_key_prefix, ledger_denies, prefix_subject_keys, time_reader, to_ms
from sink.metrics import SinkMetrics

log = logging.getLogger(__name__)


@dataclass
class WithdrawalPlan:
    """What `prepare` found in one batch, for `apply` and the writer."""

    new: dict[str, dict[str, int]] = field(default_factory=dict)  # need -> key -> until ms
    cleared: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, need) -> rows
    leftover: dict[str, list[str]] = field(default_factory=dict)  # table -> row ids for affected_query


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
        """Steps 1-3; rewrites the batch's bodies in place."""
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
                self._clear_group(table, group, plan)
        for (table_name, need), count in plan.cleared.items():
            self.metrics.consent_cleared.labels(table_name, need).inc(count)
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

    def _clear_group(self, table: ConsentBoundTable, group: Group, plan: WithdrawalPlan) -> None:
        state = self.state
        fast = has_key_prefix(group.writer)
        row_time = time_reader(group.writer, table.time_field) if fast else None
        for index, body in enumerate(group.bodies):
            if fast:
                try:
                    keys = prefix_subject_keys(body)
                    if not state.hits(keys):
                        continue
                    if row_time is not None:  # dated after every denial of its keys: kept
                        row_ms, latest = row_time(body), state.latest(keys)
                        if row_ms is not None and latest is not None and row_ms > latest:
                            continue
                except ValueError:
                    continue  # invalid: the insert step dead-letters it
            rewritten = self._clear_row(table, group, body, plan)
            if rewritten is not None:
                group.bodies[index] = rewritten

    def _clear_row(
        self, table: ConsentBoundTable, group: Group, body: bytes, plan: WithdrawalPlan
    ) -> bytes | None:
        """The body with the covered fields cleared, or None when nothing changes."""
        try:
            record: Any = fastavro.schemaless_reader(io.BytesIO(body), group.writer.parsed, None)
        except Exception:
            return None
        if not isinstance(record, dict):
            return None
        keys = [k.encode("utf-8") for k in record.get("subject_keys") or ()]
        if not self.state.hits(keys):
            return None
        row_ms = to_ms(record[table.time_field]) if record.get(table.time_field) is not None else None
        if row_ms is None:
            return None
        marks: list[str] = []
        needs: list[str] = []
        for need in sorted(table.fields):
            until = self.state.until(keys, need)
            if until is None or row_ms > until:
                continue
            hit = False
            for rule in table.fields[need]:
                if rule.name not in record or record[rule.name] is None:
                    continue
                if rule.channels is not None and record.get("channel") not in rule.channels:
                    continue
                record[rule.name] = None
                marks.append(f"{rule.name}:{CONSENT_WITHDRAWN}")
                hit = True
            if hit:
                needs.append(need)
        if not marks:
            return None
        if "stripped" not in record:
            plan.leftover.setdefault(table.model.name, []).append(str(record.get("event_id")))
            return None
        record["stripped"] = [*(record["stripped"] or []), *marks]
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, group.writer.parsed, record)
        except Exception:  # e.g. a non-nullable field in an older writer schema
            plan.leftover.setdefault(table.model.name, []).append(str(record.get("event_id")))
            return None
        for need in needs:
            key = (table.model.name, need)
            plan.cleared[key] = plan.cleared.get(key, 0) + 1
        return out.getvalue()
