"""What a sink process is given: the topics it reads (`RECORD_TOPICS`), its tuning and
group membership (`SinkOptions`), and the periodic jobs it runs between batches
(`PeriodicJob`). The loop that uses them is sink/clickhouse_sink.py; the consumer settings
and group deadlines serve its group membership, sink/group_member.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from clickhouse_connect.driver.client import Client

from pipeline import topics
from pipeline.topics import TopicSpec

DEFAULT_GROUP_ID = "cs-clickhouse-sink"
RECORD_TOPICS: tuple[TopicSpec, ...] = (
    topics.CHAT_ENRICHED,
    topics.CALL_ENRICHED,
    topics.CONSENT_LEDGER,
    topics.DSR_RECEIPTS,
    topics.CONTACT_FORM_ENRICHED,
)


@dataclass(frozen=True)
class SinkOptions:
    """Tuning and wiring of one sink process.

    batch_size: messages per batch. 200,000 by default, so that on a backlog a batch is
    bounded by `batch_max_bytes` (64 MB, ~150k enriched messages) or `batch_max_s`: each
    insert writes one part per partition (month) its rows touch, whatever its size, so
    the cost of an insert follows the parts it makes more than its rows. On the enriched
    backlog of `records bench --only sink` (~36 months of simulated traffic), writing it
    in 200k-message batches took 0.5-0.6x the CPU per row of 50k ones (in-process, two
    runs each), for ~150 MB more peak RSS of the sink. A live sink's batches stay small
    (`batch_max_s`); a crash replays at most one batch.
    batch_max_s: the longest a message waits before it is written (freshness for analysts).
    idle_flush_messages: a batch of at least this many messages is written as soon as a
    consume call comes back empty (the topics ran dry), without waiting for `batch_max_s`:
    the tail of a backlog is stored at once. A smaller batch still waits, so a trickle of
    live traffic is not written as one tiny insert (one part per month touched) per poll.
    """

    group_id: str = DEFAULT_GROUP_ID
    # Static group membership: a sink restarted with the same instance id gets its
    # partitions back at once instead of waiting for the dead member's session to expire.
    # Embedded mode has a natural one (one sink per chDB directory); None: dynamic.
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    batch_size: int = 200_000
    batch_max_s: float = 1.0
    batch_max_bytes: int = 64 * 1024 * 1024
    idle_flush_messages: int = 10_000
    poll_max: int = 10_000
    # The longest one consume call waits for `poll_max` messages. librdkafka returns only
    # when it has them all or the time is up, so a DSR command arriving on a quiet topic
    # waits this long before its batch is written (the erasure's receipt waits with it).
    poll_wait_s: float = 0.1
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    lag_every_s: float = 1.0
    record_topics: tuple[TopicSpec, ...] = RECORD_TOPICS
    dlq_topic: str = topics.DLQ.name
    # No other process writes the store (embedded mode: one sink per chDB directory), so
    # consent withdrawals are applied from in-memory state, without a query per batch
    # (sink/clear_before_insert.py). run_sink sets False in server mode, where several
    # sinks of the group share the store.
    sole_writer: bool = True
    # Periodic jobs due at start (retention) wait for the first committed batch, at most
    # this long: start-up is the time to the first rows stored.
    jobs_wait_s: float = 10.0
    # A synchronous offset commit, or the close of a failed consumer, still waiting after
    # this long is given up: librdkafka can wait for good on a stuck group coordinator
    # (seen after a broker restart). The consumer is then replaced and the batch replayed.
    commit_timeout_s: float = 30.0
    close_timeout_s: float = 15.0
    # The consumer is replaced as well when its group stays not joined, or its coordinator
    # connection down, this long while the broker answers (pipeline/kafka/group_watchdog.py).
    group_stuck_s: float = 30.0

    def consumer_settings(self) -> dict[str, str]:
        """The librdkafka settings of the sink's consumer (besides the connection, the
        group id and the callbacks): membership, session, and fetch sizes for large batches.

        What librdkafka fetches ahead follows `batch_max_bytes` up to 64 MB (the default
        of both): the local queue of fetched messages and one fetch response hold at most
        that much, so a smaller bound (`records worker sink --batch-max-mb`) lowers the
        consumer's share of the sink's memory with the batch's. The batch itself can pass
        its bound by what one consume call returns (at most `poll_max` messages)."""
        fetch_bytes = min(64 * 1024 * 1024, max(1024 * 1024, self.batch_max_bytes))
        return {
            "client.id": "cs-clickhouse-sink",
            "session.timeout.ms": str(self.session_timeout_ms),
            "heartbeat.interval.ms": str(max(1000, self.session_timeout_ms // 4)),
            **({"group.instance.id": self.instance_id} if self.instance_id else {}),
            "max.poll.interval.ms": "600000",
            "fetch.max.bytes": str(fetch_bytes),
            "max.partition.fetch.bytes": str(min(8 * 1024 * 1024, fetch_bytes)),
            "queued.max.messages.kbytes": str(fetch_bytes // 1024),
        }

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
    the engine lock, first at start (if `run_at_start`: once the first batch is committed,
    or `SinkOptions.jobs_wait_s` after the start if none came, so a job never delays the
    first rows) and then every `every_s` seconds.
    A failing job is logged and counted; it never stops the sink. Keep it shorter than
    max.poll.interval.ms (10 min)."""

    name: str
    every_s: float
    run: Callable[[Client], object]
    run_at_start: bool = True
