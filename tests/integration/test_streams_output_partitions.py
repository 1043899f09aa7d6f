"""The streams worker's record output goes through librdkafka, yet every key lands on the
partition faust's aiokafka producer chose before (murmur2, as the Java client): the
compacted topics (cs.subjects.v1) need a key to stay on one partition across versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.dsr_contract import CommandSigner
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from pipeline.topics import TopicSpec
from streams.app import StreamsWorker


def test_keys_land_on_the_partitions_aiokafka_chose(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]
) -> None:
    topic = topic_factory(partitions=3)
    worker = StreamsWorker(
        kafka_settings,
        SubjectKeyer(b"p" * 32),
        serde=Serde(),
        registry=CollectorRegistry(),
        command_signer=CommandSigner(Ed25519PrivateKey.generate()),
    )
    keys = [f"subject-{uuid.uuid4().hex}".encode() for _ in range(30)]
    for key in keys:
        worker.output.produce(topic.name, b"v", key)
    worker.output.flush(30)

    consumer = Consumer({"bootstrap.servers": kafka_settings.kafka.bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic.name, p, 0) for p in range(3)])
    landed: dict[bytes, int] = {}
    try:
        while len(landed) < len(keys):
            for message in consumer.consume(100, 5.0) or []:
                assert message.error() is None
                landed[message.key()] = message.partition()
    finally:
        consumer.close()
    expected = {key: DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]) for key in keys}
    assert landed == expected
    assert len(set(landed.values())) == 3  # the keys did spread
