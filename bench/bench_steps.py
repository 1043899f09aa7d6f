"""The steps `records bench` (bench/pipeline_bench.py) is made of: pre-building the
producer's messages, measuring the producer, telling when the workers have drained,
erasing one subject through the CLI, and the versions the results name."""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from importlib import metadata

from bench.erasure_steps import erasure_steps
from bench.stack import Stack, WorkerProcess, wait_for
from pipeline import topics
from pipeline.event_producer import EventEncoder
from pipeline.exceptions import RecordsError
from pipeline.kafka.admin import group_lag, watermarks
from pipeline.subject_keys import SubjectKeyer
from records.simulate import SimulatedEvent, SimulationConfig, TrafficMix, generate
from records.wiring import Wiring
from sink.sink_options import RECORD_TOPICS

FIRST_BATCH_TIMEOUT_S = 180.0  # a worker that has counted nothing by then is stuck
ENRICHED = [spec.name for spec in RECORD_TOPICS]
STREAMS_IN = "records_streams_events_in"

# topic, key, value, headers: one message as the producer sends it
Message = tuple[str, str | bytes | None, bytes, list[tuple[str, bytes]] | None]


def prebuilt_messages(events: list[SimulatedEvent], keyer: SubjectKeyer) -> list[Message]:
    """The events encoded as the producer sends them (before the clock starts)."""
    encoder = EventEncoder(keyer=keyer)
    out: list[Message] = []
    for event in events:
        if event.record is not None:
            assert event.schema_name is not None
            encoded = encoder.encode(event.schema_name, event.record)
            out.append((encoded.topic, encoded.key, encoded.value, None))
        else:
            assert event.raw is not None
            out.append((event.topic, event.key, event.raw, list(event.headers)))
    return out


def frequent_callers(events: list[SimulatedEvent], count: int) -> list[str]:
    """The most frequent callers of the simulated calls (the subjects to erase)."""
    callers = Counter(
        str(e.record["caller_number"])
        for e in events
        if e.record is not None and e.schema_name and e.schema_name.endswith("CallDetailRecord")
        and str(e.record.get("caller_number") or "").startswith("+")
    )
    return [phone for phone, _ in callers.most_common(count)]


def measure_producer(stack: Stack, messages: list[Message]) -> float:
    with Wiring(stack.settings).event_producer() as producer:
        started = time.perf_counter()
        for i, (topic, key, value, headers) in enumerate(messages, 1):
            producer.send_raw(topic, value, key=key, headers=headers)
            if i % 1000 == 0:
                producer.poll()
        stats = producer.flush()
        elapsed = time.perf_counter() - started
    if not stats.ok or stats.delivered != len(messages):
        raise RecordsError(f"benchmark: producer delivered {stats.delivered} of {len(messages)}")
    return len(messages) / elapsed


def drained(stack: Stack, streams: list[WorkerProcess], raw_total: int, sink_group: str) -> bool:
    """Every raw message counted by the streams workers and every enriched message
    committed by the sink."""
    if sum(worker.metric(STREAMS_IN) for worker in streams) < raw_total:
        return False
    return group_lag(stack.admin, sink_group, ENRICHED) == 0


def first_count(worker: WorkerProcess, family: str, workers: list[WorkerProcess], timeout: float) -> float:
    """Wait until `worker` counts its first batch in metric `family`; perf_counter() then."""
    return wait_for(f"{worker.name} to count its first batch", lambda: worker.metric(family) > 0, workers,
                    timeout=min(timeout, FIRST_BATCH_TIMEOUT_S), every=0.1)


def renamed_changelog(spec: topics.TopicSpec, app_id: str) -> topics.TopicSpec:
    """A changelog spec of the default streams app id for another app id."""
    return replace(spec, name=app_id + spec.name.removeprefix(topics.STREAMS_APP_ID))


def commit_at_end(stack: Stack, group: str, topic_names: list[str]) -> None:
    """Start `group` at the end of `topic_names` (the solo streams worker must not re-run
    the erasures of cs.dsr.v1)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**stack.settings.kafka.as_librdkafka_dict(), "group.id": group, "enable.auto.commit": False})
    try:
        ends = [TopicPartition(t, p, high) for (t, p), (_, high) in watermarks(stack.admin, topic_names).items()]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def erase_one(stack: Stack, phone: str, timeout: float) -> tuple[float, dict[str, float]]:
    """`records dsr erase` for one phone number until its COMPLETED receipt: seconds, and
    the seconds of each step (bench/erasure_steps.py)."""
    from records.cli.dsr_cmd import find_receipt

    started, wall = time.perf_counter(), time.time()
    out = stack.run_records(
        "dsr", "erase", "--phone", phone, "--reason", "benchmark", "--by", "bench", "--identity-verified-by", "other"
    )
    request_id = out.strip().splitlines()[-1]
    receipt = find_receipt(stack.settings, request_id, wait_s=timeout)
    elapsed, ended = time.perf_counter() - started, time.time()
    if receipt is None or receipt.get("status") != "COMPLETED":
        status = "none" if receipt is None else receipt.get("status")
        raise RecordsError(f"benchmark: erasure {request_id} ended with receipt {status}")
    return elapsed, erasure_steps(stack.settings, request_id, wall, ended)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values`."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def versions() -> dict[str, str]:
    """Python's and the installed libraries' versions (the results name them)."""
    names = ("faust-streaming", "aiokafka", "confluent-kafka", "fastavro", "chdb", "clickhouse-connect", "quixstreams")
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    import confluent_kafka

    out["librdkafka"] = confluent_kafka.libversion()[0]
    return out


def kafka_version(stack: Stack) -> str:
    """The local broker's Kafka version, from its jar names."""
    jars = sorted(stack.broker.libs_dir.glob("kafka_2.13-*.jar"))
    return jars[0].stem.split("-", 1)[1] if jars else "?"


# The simulator's seed of every benchmark backlog (the full run's live traffic uses SEED + 1).
SEED = 7
# The pipeline's sink, as the benchmark runs it: the real group, no metrics port.
SINK_GROUP = "cs-clickhouse-sink"
SINK_ARGS = ["worker", "sink", "--loglevel", "warning", "--http-port", "0"]
# How often the workers' metrics and the groups' lag are read while they drain: each
# scrape costs the worker a little CPU (its Prometheus endpoint shares the GIL).
POLL_S = 0.5


def phase_reporter(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """`phase(name)`: tells `progress` (if any) that the phase `name` starts, with the
    seconds since this call."""
    clock = time.perf_counter()

    def phase(name: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - clock:6.1f} s] {name}")

    return phase


def simulated(events: int, now: datetime, *, people: int | None = None) -> list[SimulatedEvent]:
    """The benchmark's backlog: `events` simulated events (seed SEED) up to `now`."""
    return list(generate(SimulationConfig(events=events, seed=SEED, now=now, people=people, mix=TrafficMix())))
