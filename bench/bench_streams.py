"""Throughput of the streams stage, as JSON.

    .venv/bin/python bench/bench_streams.py [--events 20000] [--bootstrap 127.0.0.1:9092]

Pure path (one core, no Kafka): the same encoded raw events go through
  decode           fastavro decode with parsed schemas (the baseline every stage pays),
  decode+build     + enrichment and enforcement (streams.rows.RowBuilder),
  decode+build+encode  + encoding every output row (what the worker does per event),
and each rate is given as a ratio to the decode baseline of the same run.

With --bootstrap, also end to end: a `records worker streams` subprocess (own app id,
started at the end of the input topics) consumes chats produced to cs.chat.v1; the rate
is input events/s from the first produced message until the worker's
records_streams_events_in_total metric has counted them all. Needs the topics
(`records topics ensure`) and a broker nobody else is loading.

The traffic mix: 80% web chats (3 messages each, consents and cookie choices varied,
a few dozen distinct user agents), 10% myStaff chats, 5% calls, 5% recordings; the
end-to-end run uses chats only (the heaviest input: 5 output rows each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import topics
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import SubjectKeyer
from streams.consent_state import EMPTY, SubjectConsent
from streams.rows import RowBuilder

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} "
    "Safari/605.1.15",
]


def _envelope(source: str, moment: datetime, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=i)),
        "event_time": moment,
        "produced_at": moment,
        "source_system": source,
        "schema_version": 1,
    }


def chat(i: int, *, web: bool = True, tag: str = "bench") -> dict[str, Any]:
    started = T0 + timedelta(seconds=i)
    return {
        **_envelope("web-chat" if web else "mystaff", started, i),
        "conversation_id": f"{tag}-chat-{i}",
        "channel": "WEB" if web else "MYSTAFF_APP",
        "started_at": started,
        "ended_at": started + timedelta(minutes=9),
        "visitor_id": f"visitor-{i % 5000}" if web else None,
        "person_number": None if web else f"P{i % 3000:05d}",
        "app_username": None if web else f"user{i % 3000}",
        "app_name": None if web else "myStaff",
        "app_version": None if web else "5.2.0",
        "name": "Maija Meikäläinen",
        "email": f"person{i % 20000}@example.fi",
        "phone": f"040 {i % 10_000_000:07d}",
        "postal_address": None if web else "Hämeenkatu 1, Tampere",
        "job_title": "HR manager" if web else None,
        "company_name": "Asiakas Oy" if web else None,
        "contact_consent": web and i % 2 == 0,
        "contact_consent_text_id": "contact-v3",
        "cookie_consent": {"functional": i % 3 != 0, "analytics": i % 4 == 0, "marketing": False},
        "geolocation_permission": i % 10 == 0,
        "user_agent": BROWSERS[i % 4].format(v=100 + i % 12) if web else None,
        "ip_address": f"192.0.2.{i % 250}" if web else None,
        "network_name": f"dsl-{i % 250}.elisa-laajakaista.fi" if web else None,
        "visit_count": 1 + i % 7 if web else None,
        "chat_count": 1 if web else None,
        "referrer_url": "https://www.example.fi/tyopaikat" if web else None,
        "page_url": "https://www.example.fi/yhteystiedot" if web else None,
        "visit_duration_s": 60 + i % 600 if web else None,
        "latitude": 61.4978 if web else None,
        "longitude": 23.761 if web else None,
        "messages": [
            {
                "message_id": f"m{j}",
                "sent_at": started + timedelta(seconds=30 * j),
                "sender": "VISITOR" if j % 2 == 0 else "AGENT",
                "agent_username": None if j % 2 == 0 else "agent.anna",
                "text": "Hei! Kysyisin työvuoroista ensi viikolla.",
            }
            for j in range(3)
        ],
    }


def call(i: int) -> dict[str, Any]:
    return {
        **_envelope("pbx", T0 + timedelta(seconds=i), i),
        "call_id": f"bench-call-{i}",
        "direction": "INBOUND",
        "caller_number": f"+35850{i % 10_000_000:07d}",
        "service_number": "+358201234567",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=15),
        "ended_at": T0 + timedelta(minutes=4),
        "answered_by_number": "1001",
        "answered_by_user": "agent.anna",
    }


def recording(i: int) -> dict[str, Any]:
    return {
        **_envelope("pbx", T0 + timedelta(seconds=i), i),
        "recording_id": f"bench-rec-{i}",
        "call_id": f"bench-call-{i}",
        "caller_number": f"+35850{i % 10_000_000:07d}",
        "recording_uri": f"s3://recordings/{i}.opus",
        "notice_played_at": None if i % 20 == 0 else T0 + timedelta(seconds=3),
        "recording_started_at": T0 + timedelta(seconds=15),
        "recording_ended_at": T0 + timedelta(minutes=4),
    }


def traffic(n: int) -> list[bytes]:
    serializers = {name: AvroSerializer(name) for name in ("ChatConversation", "CallDetailRecord", "CallRecording")}
    out = []
    for i in range(n):
        kind = i % 20
        if kind < 16:
            out.append(serializers["ChatConversation"](chat(i)))
        elif kind < 18:
            out.append(serializers["ChatConversation"](chat(i, web=False)))
        elif kind == 18:
            out.append(serializers["CallDetailRecord"](call(i)))
        else:
            out.append(serializers["CallRecording"](recording(i)))
    return out


def _rate(label: str, n: int, run: Any) -> dict[str, Any]:
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    return {"stage": label, "events": n, "rows": rows, "seconds": round(seconds, 3), "events_per_s": round(n / seconds)}


def bench_pure(n: int) -> list[dict[str, Any]]:
    messages = traffic(n)
    deserialize = AvroDeserializer()
    builder = RowBuilder(SubjectKeyer(secrets.token_bytes(32)), default_policy())
    serializers: dict[str, AvroSerializer] = {}

    def lookup(keys: Any) -> SubjectConsent:
        return EMPTY

    def decode_only() -> int:
        for message in messages:
            deserialize(message)
        return 0

    def decode_build(encode: bool) -> int:
        now = datetime.now(UTC)
        rows = 0
        for message in messages:
            decoded = deserialize(message)
            outcome = builder.build(decoded.schema_name, decoded.value, lookup, now)
            rows += len(outcome.rows)
            if encode:
                for row in outcome.rows:
                    if row.value is not None and row.schema is not None:
                        serializer = serializers.get(row.schema) or serializers.setdefault(
                            row.schema, AvroSerializer(row.schema)
                        )
                        serializer(row.value)
        return rows

    decode_build(encode=True)  # warm the caches the worker would have warm too
    results = [
        _rate("decode", n, decode_only),
        _rate("decode+build", n, lambda: decode_build(encode=False)),
        _rate("decode+build+encode", n, lambda: decode_build(encode=True)),
    ]
    base = results[0]["events_per_s"]
    for result in results:
        result["ratio_to_decode"] = round(result["events_per_s"] / base, 3)
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _events_in(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "records_streams_events_in_total"
    )


def bench_worker(bootstrap: str, n: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    tag = uuid.uuid4().hex[:8]
    app_id = f"cs-streams-bench-{tag}"
    serializer = AvroSerializer("ChatConversation")
    messages = [(f"{tag}-chat-{i}".encode(), serializer(chat(i, tag=tag))) for i in range(n)]
    # start the bench's consumer group at the end of the input topic
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": app_id, "enable.auto.commit": False})
    ends = []
    for spec in (topics.CHAT, topics.CALL, topics.CONSENT):
        for partition in range(spec.partitions):
            _, high = probe.get_watermark_offsets(TopicPartition(spec.name, partition), timeout=10)
            ends.append(TopicPartition(spec.name, partition, high))
    probe.commit(offsets=ends, asynchronous=False)
    probe.close()

    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "RECORDS_DATA_DIR": data_dir,
            "RECORDS_PEPPER": secrets.token_hex(32),
            "RECORDS_STREAMS_METRICS_PORT": str(port),
            # --demo generates a DPO key pair here (the worker needs a trusted key to start)
            "RECORDS_DPO_PUBLIC_KEYS": str(Path(data_dir) / "dpo.pub.pem"),
            "RECORDS_DPO_PRIVATE_KEY": str(Path(data_dir) / "dpo.pem"),
        }
        log_path = Path(data_dir) / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("records")), "worker", "streams", "--demo", "--app-id", app_id],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 90
            while "Worker ready" not in log_path.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000})
            started = time.perf_counter()
            for key, value in messages:
                while True:
                    try:
                        producer.produce(topics.CHAT.name, key=key, value=value)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(60)
            produced = time.perf_counter() - started
            while _events_in(port) < n:
                if time.monotonic() > deadline + 600:
                    raise SystemExit("the worker did not consume every event in time")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.delete_topics([f"{app_id}-consent-changelog", f"{app_id}-__assignor-__leader"], operation_timeout=10)
    return {
        "stage": "end-to-end worker (chats)",
        "events": n,
        "rows": n * 5,
        "produce_seconds": round(produced, 3),
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds),
        "rows_out_per_s": round(n * 5 / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="raw events per pure-path stage")
    parser.add_argument("--bootstrap", help="also run end to end through a worker on this broker")
    parser.add_argument("--worker-events", type=int, default=50000, help="chats for the end-to-end run")
    args = parser.parse_args()
    command = "python bench/bench_streams.py " + " ".join(sys.argv[1:])
    report: dict[str, Any] = {
        "bench": "streams",
        "command": command.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "pure_path_one_core": bench_pure(args.events),
    }
    if args.bootstrap:
        report["worker"] = bench_worker(args.bootstrap, args.worker_events)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
