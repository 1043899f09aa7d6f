"""A batch's offsets on the sink's consumer: committed only after everything they cover
is stored (step 6 of sink/clickhouse_sink.py) -- with a deadline between batches, handed
to librdkafka without waiting inside a revocation -- or rewound to the batch's first
offsets when the batch is dropped; and which consumer errors end a consumer for good."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.exceptions import KafkaClientError
from pipeline.kafka.consumer import FATAL_CODES, KafkaConsumer
from sink.between_batches import one_line

log = logging.getLogger(__name__)

# Codes after which a consumer can never commit again (see GroupMember.commit): fatal,
# fenced, a commit that never returned (WEDGED), or a client in a bad state.
_CONSUMER_FAILED = FATAL_CODES | {"_STATE"}


def commit_offsets(consumer: KafkaConsumer, offsets: Mapping[tuple[str, int], int], timeout: float) -> None:
    """Store `offsets` ((topic, partition) -> next offset), then commit them synchronously,
    waiting at most `timeout` seconds; raises the client's error when either fails."""
    consumer.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    consumer.commit(timeout=timeout)


def hand_over_offsets(raw: Consumer, offsets: Mapping[tuple[str, int], int]) -> None:
    """Inside a rebalance callback, on the thread serving it: store `offsets` ((topic,
    partition) -> next offset) and request their commit without waiting for its result;
    raises the client's KafkaException when either request fails.

    Why not wait (`commit_offsets`): its deadline runs the commit on a helper thread, and
    confluent-kafka-python (>= 2.16) lets a consumer serve one thread at a time -- a call
    from another thread waits until the call in progress returns, while the thread inside
    a callback may call back in. The helper thread waited for the consume call serving
    the callback, which waited for the helper: the whole group stood still until the
    commit deadline (tests/integration/test_sink_revocation.py).
    Why this is enough: with enable.auto.commit (pipeline/kafka/consumer.py) librdkafka
    commits the stored offsets of the partitions it unassigns after a revocation callback,
    and completes the rebalance only once that commit is answered (rdkafka_assignment.c,
    serve_removals / wait_commit_cnt); the asynchronous commit covers the partitions kept.
    A commit that fails leaves the batch to be replayed by the next owner (idempotent)."""
    raw.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    raw.commit(asynchronous=True)


def rewind(raw: Consumer, first_offsets: Mapping[tuple[str, int], int]) -> None:
    """Seek the partitions still assigned back to a dropped batch's first offsets, so its
    messages are fetched again; a failure is logged (the next owner resumes from the commit)."""
    try:
        assigned = {(tp.topic, tp.partition) for tp in raw.assignment()}
        for (topic, partition), offset in first_offsets.items():
            if (topic, partition) in assigned:
                raw.seek(TopicPartition(topic, partition, offset))
    except KafkaException as exc:
        log.warning("rewind after a dropped batch failed: %s", one_line(exc))


def seek_to_committed(raw: Consumer, partitions: Iterable[tuple[str, int]], timeout: float) -> list[TopicPartition]:
    """Seek those of `partitions` still assigned to their committed offsets, asked of the
    group coordinator (the beginning where none is committed, as auto.offset.reset=earliest);
    the partitions sought. Raises the client's KafkaException when the query fails, for any
    partition (nothing is sought then)."""
    assigned = {(tp.topic, tp.partition) for tp in raw.assignment()}
    wanted = [TopicPartition(t, p) for t, p in sorted(set(partitions)) if (t, p) in assigned]
    if not wanted:
        return []
    committed = raw.committed(wanted, timeout=timeout)
    for tp in committed:
        if tp.error is not None:  # not read: seeking to the beginning would replay it all
            raise KafkaException(tp.error)
    for tp in committed:
        raw.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
    return committed


def consumer_failed(exc: KafkaException | KafkaClientError) -> bool:
    """True when the error leaves the consumer unable to commit again (fatal, fenced)."""
    if isinstance(exc, KafkaClientError):
        return exc.code in _CONSUMER_FAILED
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.fatal() or error.name() in _CONSUMER_FAILED)


def partitions_text(partitions: Sequence[TopicPartition]) -> str:
    """`topic[p], ...` for a log line; "nothing" for none."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
