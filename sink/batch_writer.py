"""Steps 2-5 of the sink's commit path (see sink/clickhouse_sink.py): `BatchWriter.write(batch)`
stores one batch and owns everything that touches the store or the dead-letter topic:

2. insert: one `INSERT ... FORMAT Avro` per table and writer schema. If ClickHouse refuses
   a container, its bodies are checked one by one with fastavro: invalid ones become dead
   letters and the rest is inserted; if all are valid, the failure is ClickHouse's and
   `write` raises (the loop retries);
3. withdraw: consent withdrawals are applied (sink/consent_withdrawal.py). As the store's
   only writer (`sole_writer`, embedded mode) this runs BEFORE step 2 and costs no query
   unless the batch brings a new denial (sink/clear_before_insert.py: the rows a denial
   covers are stored cleared by step 2's insert, stored rows by one mutation per table for
   new denials only); otherwise, after step 2, one read query and at most one
   `ALTER TABLE ... UPDATE ... SETTINGS mutations_sync = 2` per table per batch;
4. commands: messages of command topics (DSR work) go to the handler registered for that
   topic; handlers are idempotent (an `insert_guard`, when given, adds a row filter to
   step 2's INSERT of the tables it guards: the DSR wiring's refuses rows of erased
   subjects, sink/erasure_guard.py);
5. dead letters: undecodable or misplaced messages go to the dead-letter topic with the
   original key, bytes and headers plus `pipeline.dead_letter` headers, and the producer is
   flushed: a dead letter is durable before its offset is committed.

Steps 2-4 hold the engine lock, which the embedded HTTP endpoint shares. A `write` that
raised is resumed by the next `write` of the same batch from the first step not yet done,
so a retry never inserts a group twice nor replays the commands; a new batch starts over.
The writer knows nothing of consumers, offsets or rebalances: that is the loop's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from clickhouse_connect.driver.httpclient import HttpClient

from pipeline.clickhouse_cluster import mutation_for
from pipeline.clickhouse_ddl import TableModel
from pipeline.config import KafkaConnection
from pipeline.exceptions import RecordsError
from pipeline.kafka.producer import KafkaProducer
from sink.avro_container import container_parts
from sink.batch import Batch, Group, KafkaMessage, header_pairs, invalid_bodies, split_group
from sink.clear_before_insert import ClearBeforeInsert, WithdrawalPlan
from sink.consent_withdrawal import ConsentBoundTable, affected_query, clearing_mutation
from sink.exceptions import KafkaSinkError, WriteFailed
from sink.metrics import SinkMetrics
from sink.select_insert import Clearing, RowFilter, insert_container

log = logging.getLogger(__name__)

# Long IN lists of a batch's row ids exceed ClickHouse's default 256 KiB query size.
_BIG_QUERY = {"max_query_size": str(256 * 1024 * 1024)}
# Rows of an older writer schema lack the columns added since: they take their defaults.
_INSERT_SETTINGS = {"input_format_avro_allow_missing_fields": "1"}
# Embedded, per-call settings cost three extra engine calls each (clickhouse-connect's chDB
# backend reads, sets and restores them: ~20 ms per insert, measured): the insert settings
# are set once on the writer's session instead. They only concern Avro input, which only
# the sink's inserts read.
_NO_SETTINGS: Mapping[str, str] = {}


@dataclass(frozen=True)
class CommandHandler:
    """Messages of `topic` are not rows: each batch hands them, in offset order per
    partition, to `handle` after the batch's rows are stored and before its offsets are
    committed. `handle` must be idempotent (a failed batch is retried, a crash replays it)."""

    topic: str
    handle: Callable[[Client, Sequence[KafkaMessage]], None]
    # Called once by the sink it is plugged into, with the sink's metrics bundle, so the
    # handler counts into the same registry.
    bind: Callable[[SinkMetrics], None] | None = None


class InsertGuard(Protocol):
    """Filters the rows of a batch's Avro container as they are inserted into a table
    (sink/erasure_guard.py); None leaves the table's rows unfiltered."""

    def row_filter(self, table: TableModel) -> RowFilter | None: ...


@dataclass
class _Progress:
    """Steps of one batch already done, so a retry resumes after them."""

    batch: Batch | None = None
    inserted: set[tuple[str, bytes]] = field(default_factory=set)
    withdrawn: bool = False
    plan: WithdrawalPlan | None = None  # sole-writer path: what prepare found
    stored: bool = False  # steps 2-4 done
    commands_done: bool = False
    dead_lettered: int = 0


class BatchWriter:
    """Writes batches to ClickHouse and their dead letters to Kafka; see the module docstring."""

    def __init__(
        self,
        client: Client,
        *,
        kafka: KafkaConnection,
        dlq_topic: str,
        metrics: SinkMetrics,
        consent_tables: Sequence[ConsentBoundTable],
        ledger: TableModel,
        commands: Sequence[CommandHandler] = (),
        engine_lock: threading.Lock | threading.RLock,
        insert_guard: InsertGuard | None = None,
        cluster: str | None = None,
        sole_writer: bool = False,
    ) -> None:
        """`cluster`: CLICKHOUSE_CLUSTER; mutations then go to the local tables ON CLUSTER.
        `sole_writer`: no other process writes the store (embedded mode), so consent
        withdrawals are kept in memory (step 3 before step 2, no query per batch)."""
        self.client = client
        self.cluster = cluster
        self.kafka = kafka
        self.dlq_topic = dlq_topic
        self.metrics = metrics
        self.commands = tuple(commands)
        self.lock = engine_lock
        self.insert_guard = insert_guard
        self._consent_tables = tuple(consent_tables)
        self._consent_by_name = {t.model.name: t for t in self._consent_tables}
        self._ledger = ledger
        self._progress = _Progress()
        self._producer: KafkaProducer | None = None
        if sole_writer and isinstance(client, HttpClient):
            raise ValueError("sole_writer is the embedded engine's path; a server's sinks share the store")
        self._memory = ClearBeforeInsert(consent_tables, ledger, metrics) if sole_writer else None
        self._session_settings = False  # embedded: _INSERT_SETTINGS set on the session
        for handler in self.commands:
            if handler.bind is not None:
                handler.bind(metrics)

    def write(self, batch: Batch) -> None:
        """Steps 2-5 for `batch`, resuming a failed earlier `write` of the same batch.
        Raises RecordsError / DriverError / KafkaException when a step fails."""
        if self._progress.batch is not batch:
            self._progress = _Progress(batch=batch)
        progress = self._progress
        with self.lock:
            if self._memory is not None and not progress.withdrawn:
                if progress.plan is None:
                    progress.plan = self._memory.prepare(self.client, batch)
                for name, affected in self._memory.apply(self.client, progress.plan).items():
                    self._run_clearing(self._consent_by_name[name], affected)
                progress.withdrawn = True
            for key, group in list(batch.groups.items()):
                if key not in progress.inserted:
                    self._insert(batch, group)
                    progress.inserted.add(key)
            if self._memory is None and not progress.withdrawn:
                self._clear_withdrawn(batch, ledger_ids=batch.ids_of(self._ledger.name))
                progress.withdrawn = True
            progress.stored = True
            if not progress.commands_done:
                for handler in self.commands:
                    messages = batch.commands.get(handler.topic)
                    if messages:
                        handler.handle(self.client, messages)
                progress.commands_done = True
        self._dead_letter(batch)

    def reset(self) -> None:
        """Forget the progress of the batch in hand (it was committed or dropped). A batch
        dropped after its denials were noted but before its ledger rows were stored leaves
        the in-memory denials ahead of the store: they are reloaded."""
        progress = self._progress
        if self._memory is not None and progress.batch is not None and not progress.stored:
            self._memory.invalidate()
        self._progress = _Progress()

    def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(RecordsError):
                self._producer.flush(10)
            self._producer = None

    # ---- 2. insert ----------------------------------------------------------------------

    def _insert(self, batch: Batch, group: Group) -> None:
        if not group.bodies:
            return
        try:
            self._raw_insert(group)
        except DriverError as exc:
            bad = invalid_bodies(group.writer, group.bodies)
            if not bad:
                raise WriteFailed(f"insert into {group.table.qualified} failed: {_one_line(exc)}") from exc
            messages = [group.messages[i] for i in bad]
            split_group(group, bad)
            for message in messages:
                batch.reject(message, WriteFailed(f"not a valid {group.writer.full_name} record"))
            log.warning("%d invalid %s record(s) of a batch go to the DLQ", len(bad), group.writer.full_name)
            if group.bodies:
                self._raw_insert(group)
        self.metrics.rows_inserted.labels(group.table.name).inc(len(group.bodies))

    def _raw_insert(self, group: Group) -> None:
        table = group.table
        plan = self._progress.plan
        covered = plan.covered.get(table.name) if plan is not None else None
        insert_container(
            self.client,
            table,
            container_parts(group.writer, group.bodies),
            self._insert_settings(),
            row_filter=self.insert_guard.row_filter(table) if self.insert_guard is not None else None,
            clearing=Clearing(self._consent_by_name[table.name], covered) if covered else None,
        )

    def _insert_settings(self) -> Mapping[str, str]:
        """The settings to pass with each insert: `_INSERT_SETTINGS` to a server (HTTP
        has no session); embedded, none, once they are set on the engine's session."""
        if isinstance(self.client, HttpClient):
            return _INSERT_SETTINGS
        if not self._session_settings:
            for name, value in _INSERT_SETTINGS.items():
                self.client.command(f"SET {name} = {value}")
            self._session_settings = True
        return _NO_SETTINGS

    def _clear_withdrawn(self, batch: Batch, *, ledger_ids: Sequence[str]) -> None:
        """The per-batch query path: every row of the batch and rows of the keys of the
        ledger rows `ledger_ids`, against every stored denial."""
        for table in self._consent_tables:
            found = affected_query(
                table, self._ledger, new_row_ids=batch.ids_of(table.model.name), new_ledger_ids=ledger_ids
            )
            if found is None:
                continue
            query, parameters = found
            affected: dict[str, set[str]] = {}
            for event_id, need in self.client.query(query, parameters=parameters).result_rows:
                affected.setdefault(need, set()).add(event_id)
            self._run_clearing(table, affected)

    def _run_clearing(self, table: ConsentBoundTable, affected: Mapping[str, set[str]]) -> None:
        """One mutation clearing `affected` (need -> row ids) in `table`, counted and logged."""
        mutation = clearing_mutation(table, affected)
        if mutation is not None:
            self.client.command(mutation_for(mutation, self.cluster), settings={**_BIG_QUERY, "mutations_sync": "2"})
            for need, ids in affected.items():
                self.metrics.consent_cleared.labels(table.model.name, need).inc(len(ids))
            log.info(
                "consent withdrawal cleared %s in %s",
                ", ".join(f"{len(ids)} row(s) for {need}" for need, ids in sorted(affected.items())),
                table.model.qualified,
            )


    def _dead_letter(self, batch: Batch) -> None:
        pending = batch.rejected[self._progress.dead_lettered :]
        if not pending:
            return
        producer = self._require_producer()
        failed_before = producer.stats.failed
        for rejected in pending:
            message = rejected.message
            producer.produce(
                self.dlq_topic,
                value=message.value(),
                key=message.key(),
                headers=rejected.letter.headers(header_pairs(message)),
            )
        producer.flush(30)
        if producer.stats.failed > failed_before:
            raise KafkaSinkError(
                f"dead letters not acknowledged by {self.dlq_topic}: {producer.stats.describe_errors()}"
            )
        for rejected in pending:
            self.metrics.dead_lettered.labels(rejected.letter.source_topic, rejected.letter.error_class).inc()
        self._progress.dead_lettered = len(batch.rejected)


    def _require_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(self.kafka, extra={"client.id": "cs-clickhouse-sink-dlq"})
        return self._producer


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]
