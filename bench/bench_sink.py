"""Throughput of the ClickHouse sink, as JSON.

    .venv/bin/python bench/bench_sink.py [--rows 200000] [--bootstrap 127.0.0.1:9092] [--out FILE]

Insert path (no Kafka, embedded chDB in a temporary directory): the same single-object
encoded rows (1 chat conversation per 5 chat messages, the chat topic's real mix) are
inserted per batch size
  avro_container   the sink's path: prefixes cut, one Avro container per table, INSERT FORMAT Avro
                   (ClickHouse decodes), build + insert timed;
  decode_arrow     the alternative: fastavro decode in Python, pyarrow table, insert_arrow
                   (one batch size only: it shows why the sink does not decode);
rows/s is rows over the wall time of building and inserting all batches.

With --bootstrap, also end to end: the rows are produced to fresh copies of the record
topics (3 partitions each), then an in-process `ClickHouseSink` with a fresh group
consumes them per batch size; the rate is rows over the time from the sink's start
until every offset is committed (poll, container build, insert, consent-withdrawal
check, commit). One chDB directory per process, so the end-to-end runs reuse one store
and truncate the tables between runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import table_models
from pipeline.config import KafkaConnection, load_settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer, Serde
from pipeline.topics import TopicSpec
from records.local_kafka import metadata_ok
from sink.avro_container import SINGLE_OBJECT_PREFIX, container
from sink.clickhouse_sink import ClickHouseSink, SinkOptions
from sink.metrics import SinkMetrics
from sink.sink_process import apply_schema

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CATALOG = default_catalog()
CONVERSATION = CATALOG.get("ChatConversationRecord")
MESSAGE = CATALOG.get("ChatMessageRecord")
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def conversation(n: int) -> dict[str, Any]:
    return {
        "event_id": f"conv-{n:08d}",
        "source_event_id": str(uuid.uuid4()),
        "subject_keys": [f"{n % 9973:064x}", f"{n:064x}"],
        "conversation_id": f"conv-{n:08d}",
        "channel": "WEB",
        "started_at": NOW,
        "ended_at": NOW + timedelta(minutes=7),
        "message_count": 5,
        "name": "Maija Meikäläinen",
        "email": f"maija.{n}@example.fi",
        "phone": "+358401234567",
        "job_title": "HR manager",
        "company_name": "Esimerkki Oy",
        "person_number": None,
        "app_username": None,
        "postal_address": None,
        "app_name": None,
        "app_version": None,
        "visitor_id": f"v-{n:08d}",
        "user_agent": UA,
        "ip_address": "213.216.12.9",
        "browser": "Chrome 124",
        "os": "Windows",
        "device_type": "computer",
        "isp_org": "Elisa",
        "visit_count": 3,
        "chat_count": 1,
        "referrer_url": "https://www.google.com/",
        "page_url": "https://www.staffpoint.fi/tyonhakijoille/",
        "visit_duration_s": 420,
        "city": "Helsinki",
        "latitude": None,
        "longitude": None,
        "contact_consent": True,
        "cookie_functional": True,
        "cookie_analytics": True,
        "cookie_marketing": False,
        "geolocation_permission": False,
        "stripped": ["latitude:no_geolocation_permission", "longitude:no_geolocation_permission"],
        "ingested_at": NOW,
        "expires_at": NOW + timedelta(days=180),
    }


def message(conv: int, m: int) -> dict[str, Any]:
    return {
        "event_id": f"conv-{conv:08d}:{m}",
        "source_event_id": str(uuid.uuid4()),
        "subject_keys": [f"{conv % 9973:064x}", f"{conv:064x}"],
        "conversation_id": f"conv-{conv:08d}",
        "message_id": str(m),
        "channel": "WEB",
        "sent_at": NOW + timedelta(seconds=30 * m),
        "sender": "VISITOR" if m % 2 else "AGENT",
        "agent_username": None if m % 2 else "agent.smith",
        "text": "Hei, haluaisin kysyä työvuorojen vaihtamisesta ensi viikolla." * (1 + m % 3),
        "stripped": [],
        "ingested_at": NOW,
        "expires_at": NOW + timedelta(days=180),
    }


def traffic(rows: int) -> list[tuple[str, bytes]]:
    """(table, single-object message) in chat-topic order: a conversation, then its 5 messages."""
    conv_ser, msg_ser = AvroSerializer(CONVERSATION), AvroSerializer(MESSAGE)
    out: list[tuple[str, bytes]] = []
    n = 0
    while len(out) < rows:
        out.append(("chat_conversations", conv_ser(conversation(n))))
        out.extend(("chat_messages", msg_ser(message(n, m))) for m in range(5))
        n += 1
    return out[:rows]


def _rate(rows: int, seconds: float) -> float:
    return round(rows / seconds) if seconds > 0 else 0.0


def _stored(client: Any, *, final: bool) -> int:
    final_clause = " FINAL" if final else ""
    return sum(
        int(client.command(f"SELECT count() FROM records.{table}{final_clause}"))
        for table in ("chat_conversations", "chat_messages")
    )


def _sample(metric: Any, suffix: str) -> float:
    return sum(s.value for f in metric.collect() for s in f.samples if s.name.endswith(suffix))


def _truncate(client: Any) -> None:
    for model in table_models():
        client.command(f"TRUNCATE TABLE {model.qualified}")


def bench_insert_path(
    client: Any, data: Sequence[tuple[str, bytes]], batch_sizes: Sequence[int]
) -> list[dict[str, Any]]:
    writers = {"chat_conversations": CONVERSATION, "chat_messages": MESSAGE}
    results = []
    for size in batch_sizes:
        _truncate(client)
        build_s = insert_s = 0.0
        for start in range(0, len(data), size):
            t0 = time.perf_counter()
            groups: dict[str, list[bytes]] = {}
            for table, value in data[start : start + size]:
                groups.setdefault(table, []).append(value[SINGLE_OBJECT_PREFIX:])
            blobs = {table: container(writers[table], bodies) for table, bodies in groups.items()}
            t1 = time.perf_counter()
            for table, blob in blobs.items():
                client.raw_insert(f"records.{table}", insert_block=blob, fmt="Avro")
            t2 = time.perf_counter()
            build_s += t1 - t0
            insert_s += t2 - t1
        assert _stored(client, final=False) == len(data)
        results.append(
            {
                "path": "avro_container",
                "batch_size": size,
                "rows": len(data),
                "build_s": round(build_s, 3),
                "insert_s": round(insert_s, 3),
                "rows_per_s": _rate(len(data), build_s + insert_s),
            }
        )
    return results


def bench_decode_arrow(client: Any, data: Sequence[tuple[str, bytes]], size: int) -> dict[str, Any]:
    _truncate(client)
    schemas = {"chat_conversations": CONVERSATION, "chat_messages": MESSAGE}
    decode_s = insert_s = 0.0
    for start in range(0, len(data), size):
        t0 = time.perf_counter()
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, value in data[start : start + size]:
            parsed = schemas[table].parsed
            body = io.BytesIO(value[SINGLE_OBJECT_PREFIX:])
            rows.setdefault(table, []).append(fastavro.schemaless_reader(body, parsed, None))
        tables = {name: pa.Table.from_pylist(values) for name, values in rows.items()}
        t1 = time.perf_counter()
        for name, table in tables.items():
            client.insert_arrow(f"records.{name}", table)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        insert_s += t2 - t1
    return {
        "path": "decode_arrow",
        "batch_size": size,
        "rows": len(data),
        "decode_s": round(decode_s, 3),
        "insert_s": round(insert_s, 3),
        "rows_per_s": _rate(len(data), decode_s + insert_s),
    }


def _committed(bootstrap: str, group: str, wanted: dict[tuple[str, int], int]) -> bool:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = probe.committed([TopicPartition(t, p) for t, p in wanted], timeout=10)
    except Exception:
        return False
    finally:
        probe.close()
    return all(tp.offset >= wanted[(tp.topic, tp.partition)] for tp in parts)


def bench_end_to_end(
    client: Any, settings: Any, data: Sequence[tuple[str, bytes]], batch_sizes: Sequence[int]
) -> list[dict[str, Any]]:
    bootstrap = settings.kafka.bootstrap
    admin = KafkaAdmin(settings.kafka)
    suffix = f".bench-{uuid.uuid4().hex[:8]}"
    base = SinkOptions().with_topic_suffix(suffix)
    specs = [TopicSpec(s.name, s.key, s.description, s.partitions) for s in base.record_topics]
    specs.append(TopicSpec(base.dlq_topic, "k", "dlq", 1))
    admin.create_topics(specs)
    chat_topic = base.record_topics[0].name
    results = []
    try:
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4"}
        )
        t0 = time.perf_counter()
        for i, (_table, value) in enumerate(data):
            while True:
                try:
                    producer.produce(chat_topic, key=value[10:26], value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 10_000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        produce_s = time.perf_counter() - t0
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
        wanted = {}
        for p in range(3):
            _low, high = probe.get_watermark_offsets(TopicPartition(chat_topic, p), timeout=10)
            if high > 0:
                wanted[(chat_topic, p)] = high
        probe.close()
        for size in batch_sizes:
            _truncate(client)
            options = SinkOptions(group_id=f"bench-{uuid.uuid4().hex[:8]}", batch_size=size).with_topic_suffix(suffix)
            metrics = SinkMetrics.create(CollectorRegistry())
            sink = ClickHouseSink(settings, client, serde=Serde(), metrics=metrics, options=options)
            started = time.perf_counter()
            thread = threading.Thread(target=sink.run)
            thread.start()
            first_batch_s = None
            while not _committed(bootstrap, options.group_id, wanted):
                if not thread.is_alive():
                    raise RuntimeError("the sink stopped")
                if first_batch_s is None and sink.committed:
                    first_batch_s = time.perf_counter() - started
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            sink.stop()
            thread.join(60)
            batches = _sample(metrics.batch_rows, "_count")
            write_s = _sample(metrics.batch_seconds, "_sum")
            assert _stored(client, final=True) == len(data)
            results.append(
                {
                    "path": "kafka_to_clickhouse",
                    "batch_size": size,
                    "rows": len(data),
                    "batches": int(batches),
                    "seconds": round(elapsed, 3),
                    "first_commit_s": round(first_batch_s or elapsed, 3),
                    "write_and_commit_s": round(write_s, 3),
                    "rows_per_s": _rate(len(data), elapsed),
                    "produce_rows_per_s": _rate(len(data), produce_s),
                }
            )
    finally:
        admin.delete_topics([s.name for s in specs])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-sizes", default="5000,10000,25000,50000,100000")
    parser.add_argument("--e2e-batch-sizes", default="10000,50000")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"), help="Kafka bootstrap; unset: insert path only"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    e2e_sizes = [int(s) for s in args.e2e_batch_sizes.split(",")]

    t0 = time.perf_counter()
    data = traffic(args.rows)
    encode_s = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    env = {"RECORDS_CHDB_PATH": str(workdir / "chdb"), "RECORDS_DATA_DIR": str(workdir / "data")}
    if args.bootstrap:
        env["KAFKA_BOOTSTRAP"] = args.bootstrap
    settings = load_settings(env=env)
    report: dict[str, Any] = {
        "benchmark": "sink",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": args.rows,
        "mix": "1 chat conversation : 5 chat messages",
        "avg_message_bytes": round(sum(len(v) for _, v in data) / len(data)),
        "encode_rows_per_s_for_reference": _rate(len(data), encode_s),
    }
    try:
        with connect(settings) as client:
            apply_schema(client)
            report["insert_path"] = bench_insert_path(client, data, sizes)
            report["insert_path"].append(bench_decode_arrow(client, data, 50_000))
            if args.bootstrap and metadata_ok(KafkaConnection(bootstrap=args.bootstrap), timeout=3):
                report["end_to_end"] = bench_end_to_end(client, settings, data, e2e_sizes)
            elif args.bootstrap:
                report["end_to_end"] = f"no broker answers at {args.bootstrap}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
