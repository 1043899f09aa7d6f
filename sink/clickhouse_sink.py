"""The ClickHouse sink's loop: a confluent-kafka consumer group over the enriched topics
that hands batches to the writer for the tables of pipeline/clickhouse_ddl.py (`records worker sink`).

Rows are written as Avro object containers that ClickHouse decodes itself
(`INSERT ... FORMAT Avro`, sink/avro_container.py; why: ../shared/docs/performance-
notes.md), one per (table, writer schema), so older released schema versions insert as
they are.

The commit path. Offsets are committed only after everything they cover is stored: the
consumer (pipeline/kafka/consumer.py) commits only offsets the sink has *stored*
(`enable.auto.offset.store=False`), and the sink stores a batch's offsets in step 6 only.
One batch:
1. consume: messages accumulate in a `Batch` (sink/batch.py) until it holds
   `batch_size` messages or `batch_max_bytes`, or its first message is `batch_max_s` old,
   or it holds a command (DSR work is written as soon as it is consumed), or it holds
   `idle_flush_messages` and a consume call came back empty (the end of a backlog);
   each message's offset + 1 is remembered per partition;
2-5. write: `BatchWriter.write(batch)` (sink/batch_writer.py) inserts the rows, applies
   consent withdrawals, hands command messages (DSR work) to their handlers and produces
   the dead letters; a failed write raises and is resumed from its first step not done;
6. commit: store the batch's offsets, then commit them synchronously (at most
   `commit_timeout_s`: past it the consumer is replaced, see run()). Only now is the
   batch done;
7. on failure in 2-6: nothing is committed; the partitions are paused (the consumer keeps
   polling, so it stays in the group and rebalances are served), the write is retried
   with exponential backoff from the first step not yet done, then the partitions resume.
   A rebalance or shutdown during the wait drops the batch: partitions still assigned are
   rewound to the batch's first offsets, the others resume from the last commit at their
   next owner. A rebalance between batches first writes the batch in hand and stores its
   offsets; their commit is requested, not awaited, inside the revocation callback, and
   librdkafka completes it before the partitions go (sink/group_member.py `commit`).
   Every assigned partition is read from its committed offset, sought explicitly, and a
   consume call in which a rebalance callback ran keeps none of its messages.
This module is the loop: batching, commits, backoff, what a rebalance does to the batch in
hand, and the periodic jobs (sink/between_batches.py; offsets: sink/batch_offsets.py; its
options: sink/sink_options.py); it writes nothing to the store itself. The consumer's
lifecycle (join, bounded commit and close, replacement of a failed consumer, the rebalance
callbacks, the seeks to the commit, the lag gauge) is its group membership,
sink/group_member.py. Steps 2-4 hold the engine lock, which the embedded HTTP endpoint shares.

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

import logging
import threading
import time
from collections.abc import Iterable

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from confluent_kafka import KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings
from pipeline.exceptions import KafkaClientError, RecordsError
from pipeline.policy import Policy, default_policy
from pipeline.serde import Serde
from sink.batch import Batch, KafkaMessage, Routes, describe
from sink.batch_offsets import partitions_text
from sink.batch_writer import BatchWriter, CommandHandler, InsertGuard
from sink.between_batches import JobSchedule, one_line
from sink.consent_withdrawal import consent_bound, ledger_model
from sink.exceptions import KafkaSinkError
from sink.group_member import GroupMember, partition_of
from sink.metrics import SinkMetrics
from sink.sink_options import PeriodicJob, SinkOptions

log = logging.getLogger(__name__)


# A write step failing with one of these is retried; anything else is a bug and stops the
# sink (its batch is replayed after the restart).
_RETRYABLE = (RecordsError, DriverError, KafkaException)


class ClickHouseSink:
    """Consumes the record topics and writes them to ClickHouse; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        serde: Serde,
        metrics: SinkMetrics | None = None,
        options: SinkOptions | None = None,
        policy: Policy | None = None,
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
        self.jobs = JobSchedule(
            maintenance, client=client, lock=self.lock, metrics=self.metrics, wait_s=options.jobs_wait_s
        )
        self.commands = tuple(commands)
        catalog = serde.catalog
        models = table_models(policy or default_policy(), catalog)
        ledger = ledger_model(models)
        consent_tables = tuple(t for t in (consent_bound(m) for m in models) if t is not None)
        # The per-batch query selects rows by id; the sole writer's in-memory path needs none.
        id_tables: frozenset[str] = frozenset()
        if not options.sole_writer:
            id_tables = frozenset({t.model.name for t in consent_tables} | {ledger.name})
        self.routes = Routes(
            tables={m.schema.full_name: m for m in models},
            topics={spec.name: spec for spec in options.record_topics},
            id_tables=id_tables,
            command_topics=frozenset(h.topic for h in self.commands),
        )
        self.deserializer = serde.decode
        self.writer = BatchWriter(
            client,
            kafka=settings.kafka,
            dlq_topic=options.dlq_topic,
            metrics=self.metrics,
            consent_tables=consent_tables,
            ledger=ledger,
            commands=self.commands,
            engine_lock=self.lock,
            insert_guard=insert_guard,
            cluster=settings.clickhouse_cluster,
            sole_writer=options.sole_writer,
        )
        # The group membership: the consumer, its failure, its rebalances (sink/group_member.py).
        self.member = GroupMember(
            settings.kafka,
            options,
            self.topic_names,
            metrics=self.metrics,
            revoked=self._on_revoked,
            lost=self._on_lost,
        )
        self.committed: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._batch = self._new_batch()
        self._in_flush = False
        self._revoked = False
        self._held: list[KafkaMessage] = []  # delivered while paused: they open the next batch
        self._idle = False  # the last consume call came back empty

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
        """Consume and write until stop(); then write the batch in hand and leave the group.

        A fatal consumer error (e.g. a static member fenced after the broker came back) makes
        the consumer unusable for good: the batch in hand is dropped uncommitted (it is
        consumed again) and a new consumer joins the group, without a process restart. So
        does a consumer librdkafka leaves stuck: a commit with no result after
        `commit_timeout_s`, or a group not joined for `group_stuck_s` while the broker
        answers (pipeline/kafka/group_watchdog.py); its close is bounded too
        (`close_timeout_s`), past which the old client is abandoned, not destroyed."""
        try:
            while True:
                self.member.start()
                try:
                    self._consume_until_stopped()
                    if self._stop.is_set():
                        if not self._batch.empty:
                            self._flush(retry=False)
                        self.member.leave()
                        return
                except BaseException:
                    self.member.leave()
                    raise
                log.error(
                    "consumer failed (%s); the batch in hand is dropped, a new consumer joins", self.member.failure
                )
                self.member.leave()
                self.metrics.consumer_restarts.inc()
                self._batch = self._new_batch()
                self.writer.reset()
                self._held = []
        finally:
            self.writer.close()

    def subscribe(self) -> None:
        """Join the group now (librdkafka joins in the background), so the partitions are
        assigned while the process does its other start-up work; `run` then polls at once."""
        self.member.join()

    def close(self) -> None:
        """Leave the group if `subscribe` joined it and `run` never did (idempotent)."""
        self.member.leave()

    def _consume_until_stopped(self) -> None:
        """The loop; returns when stopped, or when the consumer failed fatally (`member.failure`)."""
        while not self._stop.is_set() and self.member.failure is None:
            self.jobs.run_due()
            try:
                self._fill()
            except KafkaClientError as exc:  # consume() raises only when the consumer is done for
                self.member.fail(one_line(exc))
                return
            self.jobs.open_when_waited()
            if self._due() and self._flush(retry=True):
                self.jobs.open()
            if self.member.failure is not None:
                return  # no further call on a failed consumer: one may never return
            self.member.observe_lag(self.committed)

    def _new_batch(self) -> Batch:
        return Batch(self.routes, self.deserializer)

    # ---- 1. consume -----------------------------------------------------------------

    def _fill(self) -> None:
        self.member.settle()
        if self._held:
            held, self._held = self._held, []
            for message in self.member.sought(held):
                self._add(self._batch, message)
        batch = self._batch
        remaining_s = self.options.batch_max_s - batch.age() if not batch.empty else self.options.batch_max_s
        room = max(1, min(self.options.poll_max, self.options.batch_size - batch.messages))
        # none if a rebalance callback ran meanwhile (sink/group_member.py)
        messages = self.member.consume(room, timeout=max(0.01, min(remaining_s, self.options.poll_wait_s)))
        self._idle = not messages
        for message in messages:
            self._add(self._batch, message)

    def _add(self, batch: Batch, message: KafkaMessage) -> None:
        batch.add(message)

    def _due(self) -> bool:
        batch = self._batch
        if batch.empty:
            return False
        return (
            bool(batch.commands)  # DSR work waits for no more rows: an erasure's receipt is awaited
            or batch.messages >= self.options.batch_size
            or batch.bytes >= self.options.batch_max_bytes
            or batch.age() >= self.options.batch_max_s
            or (self._idle and batch.messages >= self.options.idle_flush_messages)
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
                    log.warning("batch write failed (%s): %s; offsets not committed", type(exc).__name__, one_line(exc))
                    if self.member.failure is not None:
                        log.warning("batch dropped (consumer failed); it will be consumed again")
                        return False
                    if not retry or self._stop.is_set():
                        return False
                if not self._wait_paused(delay):
                    failure = self.member.failure
                    why = "stopping" if self._stop.is_set() else "consumer failed" if failure else "rebalance"
                    log.warning("batch dropped (%s); it will be consumed again", why)
                    return False
                delay = min(self.options.retry_max_s, delay * 2)
        finally:
            self._in_flush = False
            if not committed:
                self._rewind(batch)
            self._batch = self._new_batch()
            self.writer.reset()

    def _write_and_commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        self.writer.write(batch)  # steps 2-5 (sink/batch_writer.py)
        self._commit(batch)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_rows.observe(batch.rows)
        for topic, count in batch.by_topic.items():
            self.metrics.messages.labels(topic).inc(count)
        for topic, count in batch.skipped_by_topic.items():
            self.metrics.skipped.labels(topic).inc(count)
        log.debug("batch committed: %s", describe(batch))

    def _commit(self, batch: Batch) -> None:
        """Store the batch's offsets, then commit them synchronously."""
        if not batch.offsets:
            return
        try:
            self.member.commit(batch.offsets)  # fails the member when retrying on it is futile
        except (KafkaException, KafkaClientError) as exc:
            self.metrics.commit_failures.inc()
            raise KafkaSinkError(f"offset commit failed: {one_line(exc)}") from exc
        self.committed.update(batch.offsets)

    def _rewind(self, batch: Batch) -> None:
        """After a dropped batch: fetch its partitions that are still ours again from its
        first offsets, and those of messages held back during its backoff from theirs (after
        a loss, those come from the new assignment and start at the commit)."""
        first = dict(batch.first_offsets)
        for message in self._held:
            offset = message.offset() or 0
            first[partition_of(message)] = min(first.get(partition_of(message), offset), offset)
        self._held = []
        if self._stop.is_set():
            return
        self.member.rewind(first)  # not on a failed consumer: the new one resumes from the commit

    # ---- 7. backoff with paused partitions ------------------------------------------

    def _wait_paused(self, seconds: float) -> bool:
        """Sleep while polling with every partition paused; False if stopped or revoked."""
        member = self.member
        member.pause()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if self._stop.is_set() or self._revoked or member.failure is not None:
                    return False
                message = member.poll_paused(min(0.2, max(0.0, deadline - time.monotonic())))
                if message is not None:
                    self._held.append(message)
            return not (self._stop.is_set() or self._revoked or member.failure is not None)
        finally:
            member.resume()

    # ---- rebalances (called by the member, inside a consume or poll call) ---------------

    def _on_revoked(self, partitions: list[TopicPartition]) -> None:
        if self._in_flush:
            self._revoked = True  # a retry is waiting: drop the batch, it will be replayed
            return
        if not self._batch.empty:
            # write what we have while the partitions are still ours; its commit is handed to
            # librdkafka, which makes it before the rebalance completes (not awaited here)
            self._flush(retry=False)

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost %s; the batch in hand is dropped", partitions_text(partitions))
        self._revoked = True
        self._held = []
        if not self._in_flush:
            self._batch = self._new_batch()
            self.writer.reset()
