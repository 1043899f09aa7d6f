"""The ClickHouse sink: a confluent-kafka consumer group over the enriched topics that
writes batches into the tables of pipeline/clickhouse_ddl.py (`records worker sink`).

Why Avro containers rather than Arrow or a DataFrame: the enriched topics' record
schemas are exactly the table rows (the DDL is derived from them), so a batch of
single-object messages becomes an Avro object container by cutting each message's
10-byte prefix and writing one header (consumers/avro_container.py), and ClickHouse
decodes it itself, in C++, column by column (`INSERT ... FORMAT Avro`). The insert is
as columnar as an Arrow insert, but no record is ever decoded in Python: ~110-150k
rows/s against ~33k/s for decoding alone with fastavro (../shared/docs/performance-
notes.md; bench/bench_sink.py measures the whole path). Each (table, writer schema)
pair is one container, so messages written with an older released schema version are
inserted with that writer schema (ClickHouse resolves fields by name and fills columns
the writer lacks with defaults, `input_format_avro_allow_missing_fields`).

The commit path. Offsets are committed only after everything they cover is stored: the
consumer (pipeline/kafka/consumer.py) commits only offsets the sink has *stored*
(`enable.auto.offset.store=False`), and the sink stores a batch's offsets in step 6 only.
One batch:
1. consume: messages accumulate in a `Batch` (consumers/batch.py) until it holds
   `batch_size` messages or `batch_max_bytes`, or its first message is `batch_max_s` old;
   each message's offset + 1 is remembered per partition;
2. insert: one `INSERT ... FORMAT Avro` per table and writer schema. If ClickHouse refuses
   a container, its bodies are checked one by one with fastavro: invalid ones become dead
   letters and the rest is inserted; if all are valid, the failure is ClickHouse's and the
   batch is retried (step 7);
3. withdraw: consent withdrawals are applied to the stored rows
   (consumers/consent_withdrawal.py): one read query and at most one
   `ALTER TABLE ... UPDATE ... SETTINGS mutations_sync = 2` per table per batch;
4. commands: messages of command topics (DSR work, issue 6) go to the handler the CLI
   registered for that topic; handlers are idempotent;
   (an `insert_guard`, when given, takes over step 2's INSERT of the tables it guards:
   the DSR wiring's refuses rows of erased subjects, consumers/erasure_guard.py);
5. dead letters: undecodable or misplaced messages go to cs.dlq.v1 with the original key,
   bytes and headers plus `pipeline.dead_letter` headers, and the producer is flushed:
   a dead letter is durable before its offset is committed;
6. commit: store the batch's offsets, then commit them synchronously. Only now is the
   batch done;
7. on failure in 2-6: nothing is committed; the partitions are paused (the consumer keeps
   polling, so it stays in the group and rebalances are served), the write is retried
   with exponential backoff from the first step not yet done, then the partitions resume.
   A rebalance or shutdown during the wait drops the batch: partitions still assigned are
   rewound to the batch's first offsets, the others resume from the last commit at their
   next owner. A rebalance between batches first writes and commits the batch in hand.
Steps 2-4 hold the engine lock, which the embedded HTTP endpoint shares.

Idempotent by event id: every table is a ReplacingMergeTree ordered by the row id and
versioned by `ingested_at`, and analysts read views with FINAL. A crash between steps 2
and 6 replays the batch: its rows are inserted again with the same id and version and
collapse into one; step 3 finds nothing left to clear for rows it already cleared, and
clears replayed rows again. Between batches, on the sink's thread, periodic jobs run
(retention enforcement, issue 7), also under the engine lock.

Shutdown (SIGTERM/SIGINT): the loop stops polling, writes and commits the batch in hand
(one attempt), leaves the group and closes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.avro_container import container
from consumers.batch import Batch, Group, KafkaMessage, Routes, describe, invalid_bodies, split_group
from consumers.consent_withdrawal import (
    ConsentBoundTable,
    affected_query,
    clearing_mutation,
    consent_bound,
    ledger_model,
)
from consumers.exceptions import KafkaSinkError, WriteFailed
from consumers.metrics import SinkMetrics
from pipeline import topics
from pipeline.clickhouse_ddl import TableModel, table_models
from pipeline.config import Settings
from pipeline.exceptions import KafkaAdminError, RecordsError
from pipeline.kafka.consumer import KafkaConsumer
from pipeline.kafka.producer import KafkaProducer
from pipeline.policy import Policy, default_policy
from pipeline.schemas import SchemaCatalog, default_catalog
from pipeline.serde import AvroDeserializer, registry_client
from pipeline.topics import TopicSpec

log = logging.getLogger(__name__)

DEFAULT_GROUP_ID = "cs-clickhouse-sink"
RECORD_TOPICS: tuple[TopicSpec, ...] = (
    topics.CHAT_ENRICHED,
    topics.CALL_ENRICHED,
    topics.CONSENT_LEDGER,
    topics.DSR_RECEIPTS,
)
# Long IN lists of a batch's row ids exceed ClickHouse's default 256 KiB query size.
_BIG_QUERY = {"max_query_size": str(256 * 1024 * 1024)}
_INSERT_SETTINGS = {"input_format_avro_allow_missing_fields": "1"}
# A write step failing with one of these is retried; anything else is a bug and stops the
# sink (its batch is replayed after the restart).
_RETRYABLE = (RecordsError, DriverError, KafkaException)


@dataclass(frozen=True)
class SinkOptions:
    """Tuning and wiring of one sink process.

    batch_size: messages per batch. 50,000 by default: ClickHouse inserts get cheaper
    per row up to ~100k rows per insert (fewer, larger parts and merges), while a batch
    must stay small enough to replay quickly after a crash and to keep memory bounded
    (~20 MB of chat records); bench/bench_sink.py measures the curve.
    batch_max_s: the longest a message waits before it is written (freshness for analysts).
    """

    group_id: str = DEFAULT_GROUP_ID
    # Static group membership: a sink restarted with the same instance id gets its
    # partitions back at once instead of waiting for the dead member's session to expire.
    # Embedded mode has a natural one (one sink per chDB directory); None: dynamic.
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    batch_size: int = 50_000
    batch_max_s: float = 1.0
    batch_max_bytes: int = 64 * 1024 * 1024
    poll_max: int = 10_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    lag_every_s: float = 1.0
    record_topics: tuple[TopicSpec, ...] = RECORD_TOPICS
    dlq_topic: str = topics.DLQ.name

    def with_topic_suffix(self, suffix: str) -> SinkOptions:
        """The same sink on renamed topics (isolated runs: tests, benchmarks)."""
        if not suffix:
            return self
        return replace(
            self,
            record_topics=tuple(replace(spec, name=spec.name + suffix) for spec in self.record_topics),
            dlq_topic=self.dlq_topic + suffix,
        )


@dataclass(frozen=True)
class PeriodicJob:
    """Work that needs the store's owner, run between batches on the sink's thread under
    the engine lock, first at start (if `run_at_start`) and then every `every_s` seconds.
    A failing job is logged and counted; it never stops the sink. Keep it shorter than
    max.poll.interval.ms (10 min)."""

    name: str
    every_s: float
    run: Callable[[Client], object]
    run_at_start: bool = True


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
    """Takes over the INSERT of a batch's Avro container into a table (consumers/erasure_guard.py).
    Returns False to leave it to the sink's plain INSERT ... FORMAT Avro."""

    def insert(self, client: Client, table: TableModel, block: bytes, settings: Mapping[str, str]) -> bool: ...


@dataclass
class _Progress:
    """Steps of the current batch already done, so a retry resumes after them."""

    inserted: set[tuple[str, bytes]] = field(default_factory=set)
    withdrawn: bool = False
    commands_done: bool = False
    dead_lettered: int = 0


class ClickHouseSink:
    """Consumes the record topics and writes them to ClickHouse; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        metrics: SinkMetrics | None = None,
        options: SinkOptions | None = None,
        policy: Policy | None = None,
        catalog: SchemaCatalog | None = None,
        maintenance: Iterable[PeriodicJob] = (),
        commands: Iterable[CommandHandler] = (),
        engine_lock: threading.Lock | threading.RLock | None = None,
        insert_guard: InsertGuard | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.options = options = options or SinkOptions()
        self.metrics = metrics or SinkMetrics.create(CollectorRegistry())
        self.lock = engine_lock or threading.RLock()
        self.maintenance = tuple(maintenance)
        self.commands = tuple(commands)
        self.insert_guard = insert_guard
        for handler in self.commands:
            if handler.bind is not None:
                handler.bind(self.metrics)
        catalog = catalog or default_catalog()
        models = table_models(policy or default_policy(), catalog)
        self._models = {m.name: m for m in models}
        self._ledger = ledger_model(models)
        self._consent_tables: tuple[ConsentBoundTable, ...] = tuple(
            t for t in (consent_bound(m) for m in models) if t is not None
        )
        id_tables = frozenset({t.model.name for t in self._consent_tables} | {self._ledger.name})
        self.routes = Routes(
            tables={m.schema.full_name: m for m in models},
            topics={spec.name: spec for spec in options.record_topics},
            id_tables=id_tables,
            command_topics=frozenset(h.topic for h in self.commands),
        )
        registry = registry_client(settings.schema_registry_url) if settings.schema_registry_url else None
        self.deserializer = AvroDeserializer(catalog=catalog, registry=registry)
        self.committed: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._batch = self._new_batch()
        self._progress = _Progress()
        self._in_flush = False
        self._revoked = False
        self._held: list[KafkaMessage] = []  # delivered while paused: they open the next batch
        self._next_job = {
            job.name: (0.0 if job.run_at_start else time.monotonic() + job.every_s) for job in self.maintenance
        }
        self._next_lag = 0.0

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def topic_names(self) -> list[str]:
        return [spec.name for spec in self.options.record_topics] + [h.topic for h in self.commands]

    def stop(self) -> None:
        """Ask the loop to finish (thread-safe, signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Consume and write until stop(); then write the batch in hand and leave the group."""
        self._consumer = KafkaConsumer(
            self.settings.kafka,
            self.options.group_id,
            extra={
                "client.id": "cs-clickhouse-sink",
                "session.timeout.ms": str(self.options.session_timeout_ms),
                "heartbeat.interval.ms": str(max(1000, self.options.session_timeout_ms // 4)),
                **({"group.instance.id": self.options.instance_id} if self.options.instance_id else {}),
                "max.poll.interval.ms": "600000",
                "fetch.max.bytes": str(64 * 1024 * 1024),
                "max.partition.fetch.bytes": str(8 * 1024 * 1024),
            },
        )
        try:
            self._consumer.subscribe(
                self.topic_names, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            log.info("sink consuming %s as group %s", ", ".join(self.topic_names), self.options.group_id)
            while not self._stop.is_set():
                self._run_due_jobs()
                self._fill()
                if self._due():
                    self._flush(retry=True)
                self._observe_lag()
            if not self._batch.empty:
                self._flush(retry=False)
        finally:
            try:
                self._consumer.close()
            finally:
                self._consumer = None
                if self._producer is not None:
                    with contextlib.suppress(RecordsError):
                        self._producer.flush(10)
                    self._producer = None

    def _new_batch(self) -> Batch:
        return Batch(self.routes, self.deserializer)

    # ---- 1. consume -----------------------------------------------------------------

    def _fill(self) -> None:
        consumer = self._require_consumer()
        batch = self._batch
        if self._held:
            held, self._held = self._held, []
            for message in held:
                self._add(batch, message)
        remaining_s = self.options.batch_max_s - batch.age() if not batch.empty else self.options.batch_max_s
        room = max(1, min(self.options.poll_max, self.options.batch_size - batch.messages))
        for message in consumer.consume(room, timeout=max(0.01, min(remaining_s, 0.5))):
            self._add(batch, message)

    def _add(self, batch: Batch, message: KafkaMessage) -> None:
        batch.add(message)

    def _due(self) -> bool:
        batch = self._batch
        if batch.empty:
            return False
        return (
            batch.messages >= self.options.batch_size
            or batch.bytes >= self.options.batch_max_bytes
            or batch.age() >= self.options.batch_max_s
        )

    # ---- 2-6. write, then commit --------------------------------------------------------

    def _flush(self, *, retry: bool) -> bool:
        """Write and commit the current batch; True when committed. With `retry`, failures
        are retried with backoff until done, stopped or revoked. A batch not committed is
        dropped and its partitions still assigned are rewound to its first offsets."""
        batch = self._batch
        delay = self.options.retry_initial_s
        self._in_flush = True
        self._revoked = False
        committed = False
        try:
            while True:
                try:
                    self._write_and_commit(batch)
                    committed = True
                    return True
                except _RETRYABLE as exc:
                    self.metrics.insert_retries.inc()
                    log.warning(
                        "batch write failed (%s): %s; offsets not committed", type(exc).__name__, _one_line(exc)
                    )
                    if not retry or self._stop.is_set():
                        return False
                if not self._wait_paused(delay):
                    why = "stopping" if self._stop.is_set() else "rebalance"
                    log.warning("batch dropped (%s); it will be consumed again", why)
                    return False
                delay = min(self.options.retry_max_s, delay * 2)
        finally:
            self._in_flush = False
            if not committed:
                self._rewind(batch)
            self._batch = self._new_batch()
            self._progress = _Progress()

    def _write_and_commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        with self.lock:
            for key, group in list(batch.groups.items()):
                if key not in self._progress.inserted:
                    self._insert(batch, group)
                    self._progress.inserted.add(key)
            if not self._progress.withdrawn:
                self._clear_withdrawn(batch)
                self._progress.withdrawn = True
            if not self._progress.commands_done:
                for handler in self.commands:
                    messages = batch.commands.get(handler.topic)
                    if messages:
                        handler.handle(self.client, messages)
                self._progress.commands_done = True
        self._dead_letter(batch)
        self._commit(batch)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_rows.observe(batch.rows)
        for topic, count in batch.by_topic.items():
            self.metrics.messages.labels(topic).inc(count)
        for topic, count in batch.skipped_by_topic.items():
            self.metrics.skipped.labels(topic).inc(count)
        log.debug("batch committed: %s", describe(batch))

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
        block = container(group.writer, group.bodies)
        if self.insert_guard is not None and self.insert_guard.insert(
            self.client, group.table, block, _INSERT_SETTINGS
        ):
            return
        self.client.raw_insert(group.table.qualified, insert_block=block, fmt="Avro", settings=_INSERT_SETTINGS)

    def _clear_withdrawn(self, batch: Batch) -> None:
        ledger_ids = batch.ids_of(self._ledger.name)
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
            mutation = clearing_mutation(table, affected)
            if mutation is None:
                continue
            self.client.command(mutation, settings={**_BIG_QUERY, "mutations_sync": "2"})
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
                self.options.dlq_topic,
                value=message.value(),
                key=message.key(),
                headers=rejected.letter.headers(_header_pairs(message)),
            )
        producer.flush(30)
        if producer.stats.failed > failed_before:
            raise KafkaSinkError(
                f"dead letters not acknowledged by {self.options.dlq_topic}: {producer.stats.describe_errors()}"
            )
        for rejected in pending:
            self.metrics.dead_lettered.labels(rejected.letter.source_topic, rejected.letter.error_class).inc()
        self._progress.dead_lettered = len(batch.rejected)

    def _commit(self, batch: Batch) -> None:
        """Store the batch's offsets, then commit them synchronously."""
        if not batch.offsets:
            return
        consumer = self._require_consumer()
        try:
            consumer.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()])
            consumer.commit()
        except (KafkaException, KafkaAdminError) as exc:
            self.metrics.commit_failures.inc()
            raise KafkaSinkError(f"offset commit failed: {_one_line(exc)}") from exc
        self.committed.update(batch.offsets)

    def _rewind(self, batch: Batch) -> None:
        """After a dropped batch: fetch its partitions that are still ours again from its first offsets."""
        self._held = []
        if self._consumer is None or self._stop.is_set():
            return
        raw = self._consumer.consumer
        try:
            assigned = {(tp.topic, tp.partition) for tp in raw.assignment()}
            for (topic, partition), offset in batch.first_offsets.items():
                if (topic, partition) in assigned:
                    raw.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            log.warning("rewind after a dropped batch failed: %s", _one_line(exc))

    # ---- 7. backoff with paused partitions ------------------------------------------

    def _wait_paused(self, seconds: float) -> bool:
        """Sleep while polling with every partition paused; False if stopped or revoked."""
        raw = self._require_consumer().consumer
        assignment = raw.assignment()
        if assignment:
            raw.pause(assignment)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if self._stop.is_set() or self._revoked:
                    return False
                message = raw.poll(min(0.2, max(0.0, deadline - time.monotonic())))
                if message is not None and message.error() is None:
                    self._held.append(message)
            return not (self._stop.is_set() or self._revoked)
        finally:
            current = raw.assignment()
            if current:
                raw.resume(current)

    # ---- rebalance callbacks ------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _partitions(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", _partitions(partitions))
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        if self._in_flush:
            self._revoked = True  # a retry is waiting: drop the batch, it will be replayed
            return
        if not self._batch.empty:
            self._flush(retry=False)  # commit what we have while the partitions are still ours

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost %s; the batch in hand is dropped", _partitions(partitions))
        self._revoked = True
        self._held = []
        if not self._in_flush:
            self._batch = self._new_batch()
            self._progress = _Progress()

    # ---- between batches ------------------------------------------------------------

    def _run_due_jobs(self) -> None:
        now = time.monotonic()
        for job in self.maintenance:
            if now < self._next_job[job.name]:
                continue
            self._next_job[job.name] = now + job.every_s
            try:
                with self.lock:
                    job.run(self.client)
            except Exception as exc:  # a job's failure must not stop the sink
                self.metrics.maintenance_runs.labels(job.name, "error").inc()
                log.error("periodic job %s failed: %s: %s", job.name, type(exc).__name__, _one_line(exc))
            else:
                self.metrics.maintenance_runs.labels(job.name, "ok").inc()

    def _observe_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.options.lag_every_s
        raw = self._require_consumer().consumer
        try:
            assignment = raw.assignment()
            if not assignment:
                return
            for tp in raw.position(assignment):
                low, high = raw.get_watermark_offsets(tp, timeout=1, cached=True)
                if high < 0:
                    continue
                position = tp.offset if tp.offset >= 0 else self.committed.get((tp.topic, tp.partition), low)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))
        except KafkaException as exc:
            log.debug("lag not observed: %s", _one_line(exc))

    # ---- clients ----------------------------------------------------------------------

    def _require_consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            raise KafkaSinkError("the sink is not running")
        return self._consumer

    def _require_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(self.settings.kafka, extra={"client.id": "cs-clickhouse-sink-dlq"})
        return self._producer


def install_signal_handlers(sink: ClickHouseSink) -> None:
    """SIGTERM and SIGINT stop the sink gracefully (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the batch in hand", signal.Signals(signum).name)
        sink.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _partitions(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _header_pairs(message: KafkaMessage) -> list[tuple[str, bytes | None]]:
    raw = message.headers() or ()
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]
