"""Erasure latency of the sink (GDPR Art. 17, storage side), as JSON.

    .venv/bin/python bench/bench_erasure.py [--rows 1000000] [--erasures 20] [--bootstrap HOST:PORT]
                                            [--start-broker] [--out FILE]

A store like production's in miniature: ~1M rows in embedded chDB (a temporary
directory), spread over every table with subject keys (chat conversations, chat
messages, calls, call recordings, consent ledger), generated with `INSERT ... SELECT
FROM numbers()` in chunks of 100k rows (several parts per table, monthly partitions),
with realistic `subject_keys`: 64-hex keys, one or two per row (email, phone), of
--subjects subjects (default 100k, so ~10 rows per subject).

Measured:
  storage_side   `DsrExecutor.erase` alone, no Kafka: count query per table, ledger rows,
                 one `ALTER TABLE ... DELETE ... SETTINGS mutations_sync = 2` per table
                 holding the subject; --erasures subjects one by one (p50/p95), then
                 --erasures others as one run (one mutation per table for all of them);
  kafka_path     (with a broker: --bootstrap, KAFKA_BOOTSTRAP or --start-broker) the whole
                 storage path: a signed erasure command produced to a fresh copy of
                 cs.dsr.commands.v1 -> an in-process ClickHouseSink with the DSR handler
                 (batch_max_s 0.2) -> its receipt consumed from cs.dsr.receipts.v1; one
                 command at a time (p50/p95 of produce -> receipt), then a burst of
                 --erasures commands at once (time until the last receipt).
The streams stage (signature check, Kafka tombstones) is not part of this path: it is
measured by bench/bench_streams.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import TableModel, table_models
from pipeline.config import KafkaConnection, Settings, load_settings
from pipeline.dsr import DpoSigner, RequestType, TrustedKeys, build_request, utcnow
from pipeline.dsr_contract import CommandEnvelope, CommandSigner, request_digest
from pipeline.kafka.admin import KafkaAdmin
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, Serde
from pipeline.topics import TopicSpec
from records.local_kafka import LocalBroker, free_port, metadata_ok
from sink.clickhouse_sink import ClickHouseSink, SinkOptions
from sink.dsr_commands import DsrExecutor, DsrTopics
from sink.dsr_storage import DsrCommand, subject_tables
from sink.metrics import SinkMetrics
from sink.sink_process import apply_schema

# Share of the rows per table: the chat topic's mix (5 messages per conversation), calls
# and their recordings, the consent ledger.
SHARES = {
    "chat_conversations": 0.15,
    "chat_messages": 0.50,
    "calls": 0.20,
    "call_recordings": 0.05,
    "consent_ledger": 0.10,
}
CHUNK = 100_000


def subject_key(kind: str, subject: int) -> str:
    return hashlib.sha256(f"{kind}{subject}".encode()).hexdigest()


def _key_sql(kind: str, subject: str) -> str:
    return f"lower(hex(SHA256(concat('{kind}', toString({subject})))))"


def _value_sql(model: TableModel, name: str, kind: str, subjects: int, salt: int) -> str:
    """A generated value for one column of row `number` (generic by type: schema-proof)."""
    subject = f"(cityHash64(number, {salt}) % {subjects})"
    if name == "subject_keys":
        email, phone = _key_sql("email", subject), _key_sql("phone", subject)
        return f"if(number % 3 = 0, [{email}], [{email}, {phone}])"
    if name == model.record.time_field or "DateTime64" in kind:
        # within the last 60 days: inside every retention (recordings: 90 days)
        return "now64(3) - toIntervalSecond(cityHash64(number) % 5184000)"
    base = kind.removeprefix("Nullable(").removesuffix(")") if kind.startswith("Nullable(") else kind
    if name == "channel":
        return "if(number % 4 = 0, 'MYSTAFF_APP', 'WEB')"
    if name in ("kind", "purpose", "status"):
        return {"kind": "'CONSENT'", "purpose": "'CONTACT_DETAILS'", "status": "'GIVEN'"}[name]
    if base == "String":
        if name == "text":
            return "concat('Hei, kysyisin laskusta numero ', toString(number), '. Kiitos!')"
        return f"concat('{name}-', toString(number))"
    if base.startswith(("Int", "UInt")):
        return f"to{base}(number % 1000)"
    if base.startswith("Float"):
        return f"to{base}(60.17 + (number % 100) / 1000)"
    if base == "Bool":
        return "number % 2 = 0"
    if base.startswith("Array("):
        return "[]"
    raise ValueError(f"no generator for {model.name}.{name} {kind}")


def fill(client: Client, rows: int, subjects: int) -> dict[str, int]:
    """Generate about `rows` rows over the tables with subject keys; rows per table."""
    out: dict[str, int] = {}
    for salt, model in enumerate(subject_tables(table_models()), start=1):
        total = int(rows * SHARES[model.name])
        columns = ", ".join(f"`{c.name}`" for c in model.columns)
        values = ", ".join(_value_sql(model, c.name, c.type, subjects, salt) for c in model.columns)
        for start in range(0, total, CHUNK):
            count = min(CHUNK, total - start)
            client.command(
                f"INSERT INTO {model.qualified} ({columns}) SELECT {values} "
                f"FROM numbers({start + salt * 10**8}, {count})"
            )
        out[model.name] = int(client.command(f"SELECT count() FROM {model.qualified}"))
    return out


def envelope_for(subject: int, request: dict[str, Any], value: bytes) -> CommandEnvelope:
    """The streams stage's envelope of an erasure of one generated subject."""
    return CommandEnvelope(
        request_id=str(request["request_id"]),
        request_type=str(request["request_type"]),
        request_sha256=request_digest(value),
        subject_keys=(subject_key("email", subject), subject_key("phone", subject)),
        verified_at=utcnow(),
    )


def command_for(subject: int) -> DsrCommand:
    """An erasure of one generated subject as the sink executes it (keys from the envelope)."""
    request = build_request(
        RequestType.ERASURE, {"email": f"s{subject}@example.fi"}, requested_by="bench", reason="bench", now=utcnow()
    )
    return DsrCommand(request, envelope_for(subject, request, b""))


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 4),
        "p95_s": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 4),
        "max_s": round(ordered[-1], 4),
        "mean_s": round(statistics.fmean(ordered), 4),
    }


def bench_storage_side(client: Client, executor: DsrExecutor, erasures: int, first: int) -> dict[str, Any]:
    single: list[float] = []
    deleted: list[int] = []
    for subject in range(first, first + erasures):
        command = command_for(subject)
        started = time.perf_counter()
        outcome = executor.erase(client, [command])[command.request_id]
        single.append(time.perf_counter() - started)
        deleted.append(sum(v for k, v in outcome.store_counts.items() if k.startswith("records.")))
    run = [command_for(s) for s in range(first + erasures, first + 2 * erasures)]
    started = time.perf_counter()
    outcomes = executor.erase(client, run)
    together = time.perf_counter() - started
    return {
        "one_at_a_time": {**percentiles(single), "rows_deleted_per_erasure_mean": statistics.fmean(deleted)},
        "one_run_of_all": {
            "erasures": len(run),
            "seconds": round(together, 4),
            "rows_deleted": sum(
                v for o in outcomes.values() for k, v in o.store_counts.items() if k.startswith("records.")
            ),
        },
    }


def bench_kafka_path(
    client: Client, settings: Settings, erasures: int, first: int, signer: DpoSigner
) -> dict[str, Any]:
    suffix = f".bench-{uuid.uuid4().hex[:8]}"
    options = SinkOptions(group_id=f"bench-erasure-{uuid.uuid4().hex[:8]}", batch_max_s=0.2).with_topic_suffix(suffix)
    dsr_topics = DsrTopics().with_suffix(suffix)
    specs = [TopicSpec(s.name, s.key, s.description, s.partitions) for s in options.record_topics]
    specs += [TopicSpec(options.dlq_topic, "k", "dlq", 1), TopicSpec(dsr_topics.commands, "id", "commands", 1)]
    admin = KafkaAdmin(settings.kafka)
    admin.create_topics(specs)
    command_signer = CommandSigner(Ed25519PrivateKey.generate())
    command_keys = TrustedKeys.of(command_signer.private_key.public_key())
    executor = DsrExecutor(settings, serde=Serde(), dsr_topics=dsr_topics, command_keys=command_keys)
    sink = ClickHouseSink(
        settings,
        client,
        serde=Serde(),
        metrics=SinkMetrics.create(CollectorRegistry()),
        options=options,
        commands=[executor.handler()],
        insert_guard=executor.guard,
    )
    thread = threading.Thread(target=sink.run, name="sink", daemon=True)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "linger.ms": 0})
    receipts = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"bench-receipts-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    receipts.subscribe([dsr_topics.receipts])
    serialize = AvroSerializer(default_catalog().get("DataSubjectRequest"))
    decode = AvroDeserializer()

    def send(subject: int) -> str:
        request = build_request(
            RequestType.ERASURE, {"email": f"s{subject}@example.fi"}, requested_by="bench", reason="bench", now=utcnow()
        )
        signed = signer.sign(request)
        value = serialize(signed)
        headers = command_signer.headers(envelope_for(subject, signed, value))
        key = signed["request_id"].encode()
        producer.produce(dsr_topics.commands, key=key, value=value, headers=headers)
        producer.flush(10)
        return str(signed["request_id"])

    def wait(ids: set[str], timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while ids - set(got):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - set(got))} receipt(s) missing")
            message = receipts.poll(0.05)
            if message is not None and message.error() is None and message.value():
                value = decode(message.value()).value
                request_id = str(value["request_id"])  # a uuid.UUID once decoded
                if request_id in ids:
                    got[request_id] = value
        return got

    try:
        thread.start()
        wait({send(first - 1)})  # warm-up: group joined, partitions assigned
        latencies: list[float] = []
        statuses: list[str] = []
        for subject in range(first, first + erasures):
            started = time.perf_counter()
            request_id = send(subject)
            statuses.append(wait({request_id})[request_id]["status"])
            latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        burst = {send(s) for s in range(first + erasures, first + 2 * erasures)}
        burst_receipts = wait(burst)
        burst_s = time.perf_counter() - started
        return {
            "one_at_a_time": {**percentiles(latencies), "statuses": sorted(set(statuses))},
            "burst": {
                "erasures": len(burst),
                "seconds_until_last_receipt": round(burst_s, 4),
                "statuses": sorted({r["status"] for r in burst_receipts.values()}),
            },
            "sink_batch_max_s": options.batch_max_s,
        }
    finally:
        sink.stop()
        thread.join(30)
        receipts.close()
        executor.close()
        admin.delete_topics([s.name for s in specs])


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--erasures", type=int, default=20)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"), help="Kafka bootstrap")
    parser.add_argument("--start-broker", action="store_true", help="start a private local broker if none answers")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    private = Ed25519PrivateKey.generate()
    public_pem = workdir / "dpo.pub.pem"
    public_pem.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {"RECORDS_CHDB_PATH": str(workdir / "chdb"), "RECORDS_DATA_DIR": str(workdir / "data")}
    env["RECORDS_DPO_PUBLIC_KEYS"] = str(public_pem)
    broker: LocalBroker | None = None
    bootstrap = args.bootstrap
    if not (bootstrap and metadata_ok(KafkaConnection(bootstrap=bootstrap), timeout=3)) and args.start_broker:
        cache = Path(os.environ.get("RECORDS_CACHE_DIR") or Path(__file__).resolve().parents[1] / ".cache")
        port, controller = free_port(), free_port()
        broker = LocalBroker(workdir / "kafka", cache / "kafka-libs", port=port, controller_port=controller)
        broker.start()
        bootstrap = broker.bootstrap
    if bootstrap:
        env["KAFKA_BOOTSTRAP"] = bootstrap
    settings = load_settings(env=env)
    report: dict[str, Any] = {
        "benchmark": "erasure",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        with connect(settings) as client:
            apply_schema(client)
            started = time.perf_counter()
            report["rows_per_table"] = fill(client, args.rows, args.subjects)
            report["rows"] = sum(report["rows_per_table"].values())
            report["subjects"] = args.subjects
            report["fill_seconds"] = round(time.perf_counter() - started, 2)
            report["active_parts"] = int(
                client.command("SELECT count() FROM system.parts WHERE database = 'records' AND active")
            )
            executor = DsrExecutor(settings, serde=Serde())
            report["storage_side"] = bench_storage_side(client, executor, args.erasures, first=1000)
            if bootstrap and metadata_ok(KafkaConnection(bootstrap=bootstrap), timeout=3):
                report["kafka_path"] = bench_kafka_path(
                    client, dataclasses.replace(settings), args.erasures, first=2000, signer=DpoSigner(private)
                )
            else:
                report["kafka_path"] = "skipped: no broker (pass --bootstrap or --start-broker)"
            report["rows_after"] = int(
                sum(int(client.command(f"SELECT count() FROM {m.qualified}")) for m in subject_tables(table_models()))
            )
            report["mutations"] = int(client.command("SELECT count() FROM system.mutations WHERE database = 'records'"))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
