"""Finds the current SubjectRecords that hold given subject keys on the compacted
`cs.subjects.v1` (for erasure and rectification): a lookup in an index, then a read of
just those records by offset. An adapter over two confluent-kafka consumers, both
assigned (no group membership, no commits):

- the tail: a background thread reads every partition from the beginning and keeps
  reading, feeding `streams.subject_index.SubjectIndex` (Kafka key -> position of its
  latest message and the subject keys that message holds; keys and offsets only, never
  contact details: the stage still keeps no table of subjects' details in memory). A
  restarted worker rebuilds it from the topic in the background, once, not per request;
- a lookup (`find`) takes the topic's end offsets when it starts (asked of the broker in
  one ListOffsets request, never a cached watermark; no transactions write the topic, so
  the end is the last committed record), waits until the tail
  has applied everything before them (so every SubjectRecord written before the request,
  the stage's own included, counts), reads the located messages by offset and keeps
  those that still hold a wanted key.

The correctness contract is the one the per-request replay had: the latest message of a
key decides; a later tombstone, or a later record no longer holding the keys, drops an
earlier match. A located message that compaction removed in the meantime (a newer one
of the key came after the lookup started) makes the lookup start again with new end
offsets. A tail that fails, or does not reach the end offsets within `timeout`, makes
`find` raise SubjectLookupError (the stage then exits and is restarted).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline import topics
from pipeline.config import KafkaConnection
from pipeline.exceptions import RecordsError
from pipeline.serde import AvroDeserializer, SerdeError
from streams.held_keys import HeldKeysReader
from streams.subject_index import Position, SubjectIndex

log = logging.getLogger(__name__)

LOOKUP_ATTEMPTS = 3  # a located message compacted away under a lookup: start again, this often


class SubjectLookupError(RecordsError):
    """The subjects topic could not be read to its end."""


class SubjectDirectory:
    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        decode: AvroDeserializer,
        topic: str = topics.SUBJECTS.name,
        timeout: float = 60.0,
    ) -> None:
        self._config: dict[str, Any] = {
            **kafka.as_librdkafka_dict(),
            "group.id": "cs-streams-subject-lookup",  # never joined: partitions are assigned
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.wait.max.ms": 100,
            "log_level": 3,
        }
        self.topic = topic
        self.timeout = timeout
        self._deserialize = decode
        self._held_keys = HeldKeysReader(decode)
        self._index = SubjectIndex()
        self._changed = threading.Condition()
        self._failure: str | None = None
        self._stopping = threading.Event()
        self._tail: threading.Thread | None = None
        self._lookups = threading.Lock()
        self._reader: Consumer | None = None
        self.records_read = 0  # messages lookups have read by offset (the rest of the topic they skip)

    # ---- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start tailing the topic into the index (idempotent; `find` starts it too)."""
        with self._changed:
            if self._tail is None:
                self._tail = threading.Thread(target=self._run_tail, name="subject-index-tail", daemon=True)
                self._tail.start()

    def close(self) -> None:
        """Stop the tail and close both consumers."""
        self._stopping.set()
        if self._tail is not None:
            self._tail.join(timeout=10)
        with self._lookups:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ---- lookups ----------------------------------------------------------------------

    def find(self, keys: Collection[str]) -> dict[str, dict[str, Any]]:
        """The current records (by Kafka key) whose subject_key or linked_keys include one of `keys`."""
        wanted = {key.encode() for key in keys}
        if not wanted:
            return {}
        self.start()
        with self._lookups:
            try:
                values = self._read_located(wanted)
            except KafkaException as exc:
                raise SubjectLookupError(f"cannot read {self.topic}: {exc.args[0]}") from None
        found = {}
        for key, value in values.items():
            record = self._deserialize(value).value
            if wanted & {k.encode() for k in (record["subject_key"], *record["linked_keys"])}:
                found[key.decode()] = record
        return found

    def _read_located(self, wanted: set[bytes]) -> dict[bytes, bytes]:
        reader = self._require_reader()
        for _ in range(LOOKUP_ATTEMPTS):
            ready = self._wait_for_tail(self._ends(reader))
            with self._changed:
                if self._failure is not None:
                    raise SubjectLookupError(f"cannot read {self.topic}: {self._failure}")
                if not ready:
                    raise SubjectLookupError(f"{self.topic} not read to its end in {self.timeout:.0f} s")
                located = self._index.locate(wanted)
            values = self._read(reader, located)
            if values is not None:
                return values
        raise SubjectLookupError(f"{self.topic} changed under {LOOKUP_ATTEMPTS} lookups in a row")

    def _wait_for_tail(self, ends: dict[int, int]) -> bool:
        """Whether the tail applied every offset before `ends` within the timeout (or failed)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._failure is not None or self._index.caught_up(ends), timeout=self.timeout
            )

    def _ends(self, reader: Consumer) -> dict[int, int]:
        metadata = reader.list_topics(self.topic, timeout=self.timeout)
        if self.topic not in metadata.topics or metadata.topics[self.topic].error is not None:
            raise SubjectLookupError(f"topic {self.topic} is not available")
        return end_offsets(reader, self.topic, list(metadata.topics[self.topic].partitions), self.timeout)

    def _read(self, reader: Consumer, located: dict[bytes, Position]) -> dict[bytes, bytes] | None:
        """The value at each located position; None when one is no longer there (compacted)."""
        values: dict[bytes, bytes] = {}
        for key, at in sorted(located.items(), key=lambda item: (item[1].partition, item[1].offset)):
            message = self._message_at(reader, at)
            value = message.value() if message is not None and message.key() == key else None
            if value is None:
                return None
            values[key] = value
            self.records_read += 1
        return values

    def _message_at(self, reader: Consumer, at: Position) -> Message | None:
        """The message at `at`, or None when the partition has moved past that offset (the
        first offset at or after it holds another message, or none)."""
        reader.assign([TopicPartition(self.topic, at.partition, at.offset)])
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for message in reader.consume(1, timeout=0.5):
                error = message.error()
                if message.partition() != at.partition or (message.offset() or 0) < at.offset:
                    continue
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return None
                    raise KafkaException(error)
                return message if message.offset() == at.offset else None
        raise SubjectLookupError(f"{self.topic} record not read in {self.timeout:.0f} s")

    def _require_reader(self) -> Consumer:
        if self._reader is None:
            self._reader = Consumer(self._config)
        return self._reader

    # ---- the tail ---------------------------------------------------------------------

    def _run_tail(self) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions(consumer)])
            self._warm_reader()
            while not self._stopping.is_set():
                messages = consumer.consume(1000, timeout=0.2)
                if messages:
                    self._apply(messages)
        except Exception as exc:  # the lookups report it (never personal data: Kafka's text)
            with self._changed:
                self._failure = str(exc.args[0]) if isinstance(exc, KafkaException) else type(exc).__name__
                self._changed.notify_all()
            log.error("subject index: tail of %s stopped (%s)", self.topic, type(exc).__name__)
        finally:
            consumer.close()

    def _warm_reader(self) -> None:
        """Connect the lookups' consumer now, so the first request does not pay for it; not
        when a lookup is running (it holds the reader, and waits for this thread)."""
        if not self._lookups.acquire(blocking=False):
            return
        try:
            if not self._stopping.is_set():
                with contextlib.suppress(KafkaException):  # best effort: a lookup reports failures
                    self._require_reader().list_topics(self.topic, timeout=self.timeout)
        finally:
            self._lookups.release()

    def _partitions(self, consumer: Consumer) -> list[int]:
        while not self._stopping.is_set():
            metadata = consumer.list_topics(self.topic, timeout=self.timeout)
            described = metadata.topics.get(self.topic)
            if described is not None and described.error is None and described.partitions:
                return list(described.partitions)
            time.sleep(1.0)
        return []

    def _apply(self, messages: list[Message]) -> None:
        entries: list[tuple[int, int, bytes | None, list[bytes] | None]] = []
        for message in messages:
            error = message.error()
            partition, offset = message.partition() or 0, message.offset() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    entries.append((partition, offset, None, None))
                    continue
                if error.fatal():
                    raise KafkaException(error)
                log.warning("subject index: %s", error.name())
                continue
            entries.append((partition, offset, message.key() or b"", self._held(message.value())))
        with self._changed:
            for partition, offset, key, held in entries:
                if key is None:
                    self._index.advance(partition, offset)
                else:
                    self._index.apply(partition, offset, key, held)
            self._changed.notify_all()

    def _held(self, value: bytes | None) -> list[bytes] | None:
        """The subject keys a SubjectRecord holds (read by streams.held_keys, without decoding
        the rest of the record); None for a tombstone. A value whose keys do not decode is
        indexed by its Kafka key alone (a lookup by that key then fails on it, as reading it
        always did)."""
        if value is None:
            return None
        try:
            return self._held_keys(value)
        except SerdeError:
            return []


# A partition between leaders (just created, or its leader moving): asked again shortly.
_LEADER_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})
_ASK_AGAIN_S = 0.1


def end_offsets(consumer: Consumer, topic: str, partitions: list[int], timeout: float) -> dict[int, int]:
    """Each partition's end offset, asked of the broker now (never a cached watermark) in one
    request per partition leader: a ListOffsets for the latest offset (timestamp -1). A
    partition without a leader at that moment is asked again until `timeout` has passed."""
    asked = [TopicPartition(topic, partition, OFFSET_END) for partition in partitions]
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.1, deadline - time.monotonic())
        try:
            answers = consumer.offsets_for_times(asked, timeout=left)
        except KafkaException as exc:
            error = exc.args[0]
            if _leader_moving(error) and time.monotonic() < deadline:
                time.sleep(_ASK_AGAIN_S)
                continue
            raise SubjectLookupError(f"no end offsets for {topic}: {error}") from None
        if any(_leader_moving(a.error) for a in answers) and time.monotonic() < deadline:
            time.sleep(_ASK_AGAIN_S)
            continue
        ends = {}
        for answer in answers:
            if answer.error is not None or answer.offset < 0:
                raise SubjectLookupError(f"no end offset for {topic} partition {answer.partition}")
            ends[answer.partition] = answer.offset
        return ends


def _leader_moving(error: object) -> bool:
    return isinstance(error, KafkaError) and error.code() in _LEADER_MOVING
