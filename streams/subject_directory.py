"""Reads the current SubjectRecords that hold given subject keys from the compacted
`cs.subjects.v1` (for erasure and rectification). An adapter: one confluent-kafka
consumer, assigned (no group membership, no commits), read from the beginning to the end
offsets taken at the start.

The streams stage keeps no table of subjects (it would hold every subject's contact
details in every worker's memory); data-subject requests are rare, so reading the topic
when one arrives is cheaper. Only messages whose key is one of the subject keys, or whose
bytes contain one (a linked key is stored as its hex text), are decoded, and the latest
message of a key decides: a later tombstone or a record no longer holding the keys drops
an earlier match.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline import topics
from pipeline.config import KafkaConnection
from pipeline.exceptions import RecordsError
from pipeline.serde import AvroDeserializer


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
            "log_level": 3,
        }
        self.topic = topic
        self.timeout = timeout
        self._deserialize = decode

    def find(self, keys: Collection[str]) -> dict[str, dict[str, Any]]:
        """The current records (by Kafka key) whose subject_key or linked_keys include one of `keys`."""
        wanted = {key.encode() for key in keys}
        if not wanted:
            return {}
        consumer = Consumer(self._config)
        try:
            latest = self._scan(consumer, wanted)
        except KafkaException as exc:
            raise SubjectLookupError(f"cannot read {self.topic}: {exc.args[0]}") from None
        finally:
            consumer.close()
        found = {}
        for key, value in latest.items():
            record = self._deserialize(value).value
            if wanted & {k.encode() for k in (record["subject_key"], *record["linked_keys"])}:
                found[key.decode()] = record
        return found

    def _scan(self, consumer: Consumer, wanted: set[bytes]) -> dict[bytes, bytes]:
        metadata = consumer.list_topics(self.topic, timeout=self.timeout)
        if self.topic not in metadata.topics or metadata.topics[self.topic].error is not None:
            raise SubjectLookupError(f"topic {self.topic} is not available")
        ends: dict[int, int] = {}
        for partition in metadata.topics[self.topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=self.timeout)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + self.timeout
        while ends:
            if time.monotonic() > deadline:
                raise SubjectLookupError(f"{self.topic} not read to its end in {self.timeout:.0f} s")
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                partition, offset = message.partition() or 0, message.offset() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(partition, None)
                        continue
                    raise KafkaException(error)
                end = ends.get(partition)
                if end is None or offset >= end:
                    continue
                if offset >= end - 1:
                    ends.pop(partition)
                key, value = message.key() or b"", message.value()
                if value is not None and (key in wanted or any(k in value for k in wanted)):
                    latest[key] = value
                else:
                    latest.pop(key, None)
        return latest
