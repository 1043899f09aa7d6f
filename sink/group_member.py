"""The sink's membership of its consumer group: one confluent-kafka consumer at a time,
from its join to its bounded leave, and everything librdkafka makes it do around a
rebalance. The loop that uses it (fill, flush, commit, backoff) is sink/clickhouse_sink.py.

What a `GroupMember` owns:
- the consumer: opened with the group watchdog (`stats_cb`) and the fatal-error callback
  (`join`), committed and closed with deadlines (`commit`, `leave`): past one the client
  is given up and abandoned, not destroyed (pipeline/kafka/consumer.py);
- why the consumer failed for good (`failure`): a fatal error, a fence, a commit that
  wedged the client, a group stuck while the broker answers. Once set, the loop makes no
  further call on this consumer (one may never return), leaves, and `start`s a new one;
- the rebalance callbacks: a revocation or a loss is handed to the loop (`revoked`,
  `lost`), which writes or drops its batch; a batch committed inside a callback has its
  offsets stored and their commit requested, not awaited (`commit`); every assigned
  partition is read from its committed offset, sought explicitly before its messages are
  taken, and a consume call in which any rebalance callback ran keeps none of its
  messages. The revocation that closing a consumer serves (on the closing thread) is not
  handed to the loop: its batch was written or dropped before `leave`;
- the consumer lag gauge (observed every `lag_every_s`, removed for revoked partitions).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError
from pipeline.kafka.bounded_call import WEDGED
from pipeline.kafka.consumer import KafkaConsumer, is_fatal
from pipeline.kafka.group_watchdog import STATS_INTERVAL_MS, GroupWatchdog
from sink.batch import KafkaMessage
from sink.batch_offsets import (
    commit_offsets,
    consumer_failed,
    hand_over_offsets,
    partitions_text,
    rewind,
    seek_to_committed,
)
from sink.between_batches import observe_lag, one_line
from sink.exceptions import KafkaSinkError
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions

log = logging.getLogger(__name__)

# Called on the polling thread, inside a consume or poll call, with the partitions taken.
RebalanceHandler = Callable[[list[TopicPartition]], None]


def partition_of(message: KafkaMessage) -> tuple[str, int]:
    """A message's (topic, partition)."""
    return (message.topic() or "", message.partition() or 0)


class GroupMember:
    """The sink's consumer in group `options.group_id` over `topics` (see the module
    docstring). Not thread-safe: every call, and every callback, runs on the sink's thread
    (those that `leave`'s close serves run on its deadline thread and do not reach the loop).

    `revoked(partitions)` runs when partitions are revoked (the loop writes and commits
    the batch in hand while they are still ours, or marks a waiting retry as revoked);
    `lost(partitions)` when they were lost (the loop drops its batch)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        options: SinkOptions,
        topics: Iterable[str],
        *,
        metrics: SinkMetrics,
        revoked: RebalanceHandler,
        lost: RebalanceHandler,
    ) -> None:
        self.kafka = kafka
        self.options = options
        self.topics = list(topics)
        self.metrics = metrics
        self._revoked = revoked
        self._lost = lost
        self._consumer: KafkaConsumer | None = None
        self.failure: str | None = None  # set when the consumer failed for good (see `start`)
        self._watchdog = GroupWatchdog(options.group_stuck_s)
        # librdkafka keeps a partition's pause flag across a rebalance: a partition paused
        # by a backoff wait, lost meanwhile and assigned again would stay paused for good
        # (found by tests/faults/test_broker_restart.py). Set on assignment, honoured by
        # the loop, outside the callback.
        self._resume_assigned = False
        self._rebalanced = False  # a rebalance callback ran during the last consume call
        self._in_callback = False  # the loop's rebalance handler is running
        # partitions to seek to their committed offsets before their messages are taken
        self._unsought: set[tuple[str, int]] = set()
        self._next_lag = 0.0

    # ---- join and leave ---------------------------------------------------------------

    def start(self) -> None:
        """Forget the previous consumer's failure and join the group, unless joined."""
        self.failure = None
        self.join()

    def join(self) -> None:
        """Open a consumer and subscribe, unless one is open (librdkafka joins in the
        background; nothing is consumed before the first `consume`)."""
        if self._consumer is None:
            self._consumer = self._open()

    def leave(self) -> None:
        """Close the consumer (at most `close_timeout_s`; idempotent). Closing a failed or
        wedged consumer may fail: that is logged, since it is replaced anyway; any other
        close error is raised."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(timeout=self.options.close_timeout_s)
        except (KafkaException, KafkaClientError) as exc:
            wedged = isinstance(exc, KafkaClientError) and exc.code == WEDGED
            if self.failure is None and not wedged:
                raise
            log.warning("closing the %s consumer: %s", "failed" if self.failure else "old", one_line(exc))

    def fail(self, reason: str) -> None:
        """The consumer is done for (`reason`, one line), unless it already failed."""
        self.failure = self.failure or reason

    @property
    def consumer(self) -> KafkaConsumer:
        """The open consumer; KafkaSinkError when none is (not joined, or leaving)."""
        if self._consumer is None:
            raise KafkaSinkError("the sink is not running")
        return self._consumer

    def _open(self) -> KafkaConsumer:
        self._watchdog = GroupWatchdog(self.options.group_stuck_s)
        consumer = KafkaConsumer(
            self.kafka,
            self.options.group_id,
            extra={
                **self.options.consumer_settings(),
                "statistics.interval.ms": str(STATS_INTERVAL_MS),
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
            },
        )
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("sink consuming %s as group %s", ", ".join(self.topics), self.options.group_id)
        return consumer

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (on the polling thread): remember a fatal error."""
        if is_fatal(error):
            self.failure = f"{error.name()}: {error.str()}"

    def _on_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (on the polling thread): a group stuck while the broker
        answers fails the consumer, so that the loop replaces it (pipeline/kafka/group_watchdog.py)."""
        self._watchdog.observe(stats_json)
        if self._watchdog.verdict is not None and self.failure is None:
            self.failure = self._watchdog.verdict

    # ---- consume ----------------------------------------------------------------------

    def settle(self) -> None:
        """Before a fetch, outside the callbacks: resume the partitions assigned since the
        last fetch, and seek those not yet sought to their committed offsets."""
        consumer = self.consumer
        if self._resume_assigned:
            self._resume_assigned = False
            try:
                assignment = consumer.consumer.assignment()
                if assignment:
                    consumer.consumer.resume(assignment)
            except KafkaException as exc:
                log.warning("resuming the assigned partitions failed: %s", one_line(exc))
        if self._unsought:
            self._seek_unsought()

    def sought(self, messages: Iterable[KafkaMessage]) -> list[KafkaMessage]:
        """Those of `messages` that may be taken: the others were fetched before their
        partition's seek to the commit, and are read again from there."""
        return [message for message in messages if partition_of(message) not in self._unsought]

    def consume(self, count: int, timeout: float) -> list[KafkaMessage]:
        """Up to `count` messages within `timeout` seconds, none if a rebalance callback
        ran during the call. Raises KafkaClientError when the consumer is done for."""
        consumer = self.consumer
        self._rebalanced = False
        messages = consumer.consume(count, timeout=timeout)
        if self._rebalanced:
            # A rebalance callback ran inside this call (a lost batch replaced, a revoked one
            # written, partitions assigned): which of these messages were fetched before it
            # cannot be told. None is kept; their partitions are read again from the commit.
            # (Adding them to the batch in hand lost them for good, as did trusting the fetch
            # position of a partition lost and assigned again: seen with the broker restarted
            # three times in a row.)
            self._unsought |= {partition_of(m) for m in messages}
            self._seek_unsought()
            return []
        return self.sought(messages)  # fetched before its seek: read again

    def _seek_unsought(self) -> None:
        """Seek the partitions assigned (or whose messages were dropped) since the last seek
        to their committed offsets; on failure they stay unsought (their messages are
        dropped meanwhile) and the seek is tried again on the next fill."""
        try:
            sought = seek_to_committed(self.consumer.consumer, self._unsought, self.options.commit_timeout_s)
        except KafkaException as exc:
            log.warning("reading the committed offsets after a rebalance failed (%s); tried again", one_line(exc))
            return
        self._unsought = set()
        log.info("after a rebalance, read from the commit: %s", partitions_text(sought))

    # ---- the backoff wait -------------------------------------------------------------

    def pause(self) -> None:
        """Pause every assigned partition (the consumer keeps polling, so it stays in the group)."""
        raw = self.consumer.consumer
        assignment = raw.assignment()
        if assignment:
            raw.pause(assignment)

    def poll_paused(self, timeout: float) -> KafkaMessage | None:
        """One poll while paused, serving rebalances: a message delivered anyway, or None."""
        message = self.consumer.consumer.poll(timeout)
        error = None if message is None else message.error()
        if message is not None and error is None:
            return message
        if error is not None and is_fatal(error):
            # librdkafka reports a fenced member once, as a message error (its
            # error callback is not called): dropped here, the sink polled on
            # without partitions for good (tests/faults/test_broker_restart.py)
            self.fail(f"{error.name()}: {error.str()}")
        return None

    def resume(self) -> None:
        """Resume every partition assigned now."""
        raw = self.consumer.consumer
        current = raw.assignment()
        if current:
            raw.resume(current)

    # ---- offsets ----------------------------------------------------------------------

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Store `offsets` ((topic, partition) -> next offset) and commit them, waiting at
        most `commit_timeout_s`; raises the client's error. An error after which this
        consumer can never commit again (fatal, fenced, wedged) also fails it.

        Inside a rebalance callback the commit is requested and not awaited: librdkafka
        commits the revoked partitions' stored offsets before the rebalance completes, and
        waiting there deadlocked (sink/batch_offsets.py, `hand_over_offsets`)."""
        try:
            if self._in_callback:
                hand_over_offsets(self.consumer.consumer, offsets)
            else:
                commit_offsets(self.consumer, offsets, self.options.commit_timeout_s)
        except (KafkaException, KafkaClientError) as exc:
            if consumer_failed(exc):
                self.fail(one_line(exc))  # retrying on this consumer is futile
            raise

    def rewind(self, first_offsets: Mapping[tuple[str, int], int]) -> None:
        """Seek the partitions still assigned back to `first_offsets` (a dropped batch's)."""
        if self._consumer is None or self.failure is not None:
            return  # a failed consumer is replaced; the new one resumes from the commit
        rewind(self._consumer.consumer, first_offsets)

    def observe_lag(self, committed: Mapping[tuple[str, int], int]) -> None:
        """Set the lag gauge of the assigned partitions, at most every `lag_every_s`."""
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.options.lag_every_s
        observe_lag(self.consumer.consumer, committed, self.metrics)

    # ---- rebalance callbacks (on the polling thread, inside consume or poll) ----------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", partitions_text(partitions))
        self._resume_assigned = True
        # Read from the commit, explicitly: librdkafka was seen resuming a partition lost and
        # assigned again at its old fetch position, past a batch dropped uncommitted.
        self._unsought |= {(tp.topic, tp.partition) for tp in partitions}
        self._rebalanced = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", partitions_text(partitions))
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self._rebalanced = True
        if self._consumer is None:
            return  # served by `leave`'s close, on its thread: the loop is done with its batch
        self._in_callback = True
        try:
            self._revoked(partitions)
        finally:
            self._in_callback = False

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalanced = True
        if self._consumer is None:
            return
        self._in_callback = True
        try:
            self._lost(partitions)
        finally:
            self._in_callback = False
