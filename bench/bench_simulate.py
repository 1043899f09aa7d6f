"""Throughput of the traffic simulator (`records simulate`), as JSON.

    .venv/bin/python bench/bench_simulate.py [--events 50000] [--bootstrap 127.0.0.1:9092]

Stages, each over the same seed and `now`, on one core:
  pool         building the recurring people, visitors, networks and devices (once per run),
  generate     the pure generator (records as Python dicts),
  encode       + Kafka key and Avro single-object encoding (what `--dry-run` does),
  kafka        + producing to the real topics and waiting for every delivery report
               (only with --bootstrap; needs `records topics ensure` on that cluster).
Rates are events/s over the whole stage, pool included; each is also given as a ratio
to `generate` of the same run, so runs on different machines compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pipeline.config import load_settings
from pipeline.event_producer import EventEncoder, EventProducer
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from records.simulate import EncodeOnly, SimulationConfig, generate, run

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _stage(name: str, events: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "stage": name,
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        **extra,
    }


def bench(config: SimulationConfig, bootstrap: str | None) -> list[dict[str, Any]]:
    keyer = SubjectKeyer(secrets.token_bytes(32))
    started = time.perf_counter()
    stream = generate(dataclasses.replace(config, events=1))
    next(stream)
    pool = time.perf_counter() - started

    started = time.perf_counter()
    count = sum(1 for _ in generate(config))
    results = [
        {"stage": "pool", "people": config.pool_size, "seconds": round(pool, 3)},
        _stage("generate", count, time.perf_counter() - started),
    ]
    encoded = run(generate(config), EncodeOnly(EventEncoder(keyer=keyer)))
    results.append(_stage("encode", encoded.events, encoded.seconds, bytes_per_event=round(encoded.bytes_per_event)))
    if bootstrap:
        settings = load_settings({**os.environ, "KAFKA_BOOTSTRAP": bootstrap})
        started = time.perf_counter()
        with EventProducer(settings.kafka, serde=Serde(), keyer=keyer) as producer:
            run(generate(config), producer)
            delivery = producer.flush()
        results.append(
            _stage(
                "kafka",
                delivery.delivered,
                time.perf_counter() - started,
                failed=delivery.failed + delivery.unconfirmed,
            )
        )
    base = results[1]["events_per_s"]
    for result in results[1:]:
        result["ratio_to_generate"] = round(result["events_per_s"] / base, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per stage")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", help="also produce to the real topics of this cluster")
    args = parser.parse_args()
    config = SimulationConfig(events=args.events, seed=args.seed, now=NOW)
    report = {
        "bench": "simulate",
        "command": ("python bench/bench_simulate.py " + " ".join(sys.argv[1:])).strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "stages": bench(config, args.bootstrap),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
