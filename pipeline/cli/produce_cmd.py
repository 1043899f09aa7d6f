"""`records produce` (JSON Lines in, Avro out) and `records simulate` (synthetic traffic)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.avro_json import RecordValidationError, from_json, to_jsonable
from pipeline.config import load_settings
from pipeline.event_producer import EventProducer
from pipeline.exceptions import RecordsError
from pipeline.schemas import default_catalog
from pipeline.simulate import MALFORMED, SimConfig, generate
from pipeline.subject_keys import SubjectKeyer, load_pepper
from pipeline.topics import ALL_TOPICS, by_name


def produce(
    topic: Annotated[str, typer.Option("--topic", help="Target topic, e.g. cs.chat.v1.")],
    file: Annotated[Path | None, typer.Option("--file", help="JSON Lines file (default: standard input).")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Send the valid lines even if some are invalid.")
    ] = False,
) -> None:
    """Validate JSON Lines against the topic's schemas and produce them as Avro.

    Each line is an object with the record's fields; `_schema` names the record type when
    the topic carries several. Every line is validated first: by default nothing is sent
    if any line is invalid, so a file is never half-sent. Invalid lines are reported as
    `line N: <schema>: field 'x': problem` (values are never shown). Exit code 1 if any
    line was invalid or any delivery failed.
    """
    try:
        spec = by_name(topic)
    except KeyError:
        raise RecordsError(f"unknown topic {topic}; known: {', '.join(t.name for t in ALL_TOPICS)}") from None
    if not spec.value_schemas:
        raise RecordsError(f"{topic} carries no Avro records of upstream systems")
    catalog = default_catalog()
    lines = (file.read_text(encoding="utf-8") if file else sys.stdin.read()).splitlines()
    valid: list[tuple[str, dict[str, Any]]] = []
    invalid = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            typer.echo(f"line {number}: not JSON ({exc.msg} at column {exc.colno})", err=True)
            invalid += 1
            continue
        if not isinstance(obj, dict):
            typer.echo(f"line {number}: expected a JSON object", err=True)
            invalid += 1
            continue
        name = obj.pop("_schema", None)
        if name is None and len(spec.value_schemas) == 1:
            name = spec.value_schemas[0]
        full = next((s for s in spec.value_schemas if name in (s, s.rsplit(".", 1)[-1])), None)
        if full is None:
            choices = ", ".join(s.rsplit(".", 1)[-1] for s in spec.value_schemas)
            typer.echo(f"line {number}: set _schema to one of {choices}", err=True)
            invalid += 1
            continue
        try:
            valid.append((full, from_json(catalog.get(full), obj)))
        except RecordValidationError as exc:
            typer.echo(f"line {number}: {exc}", err=True)
            invalid += 1
    if invalid and not skip_invalid:
        typer.echo(f"produced 0, rejected {invalid}: nothing sent (--skip-invalid sends the valid lines)", err=True)
        raise typer.Exit(1)
    settings = load_settings()
    keyer = SubjectKeyer(load_pepper(settings, allow_demo=True)) if topic == "cs.consent.v1" else None
    with EventProducer(settings, keyer=keyer) as producer:
        for name, record in valid:
            producer.send(name, record)
    stats = producer.flush()
    typer.echo(f"produced {stats.delivered}, rejected {invalid}, failed {stats.failed}")
    if stats.failed:
        typer.echo(f"delivery failures: {stats.describe_errors()}", err=True)
    if invalid or stats.failed:
        raise typer.Exit(1)


def simulate(
    events: Annotated[int, typer.Option("--events", min=1, help="How many events to generate.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same events.")] = 1,
    rate: Annotated[float, typer.Option("--rate", min=0, help="Events per second (0: as fast as possible).")] = 0,
    span_days: Annotated[int, typer.Option("--span-days", min=1, help="Spread event times over N days.")] = 1095,
    now: Annotated[
        datetime | None, typer.Option("--now", help="Fixed 'now' (ISO), for reproducible runs.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write JSON Lines here instead of producing to Kafka.")
    ] = None,
) -> None:
    """Produce realistic synthetic traffic (chats, calls, recordings, consents, a few malformed)."""
    moment = (now.replace(tzinfo=now.tzinfo or UTC) if now else datetime.now(UTC)).replace(microsecond=0)
    config = SimConfig(events=events, seed=seed, span_days=span_days, now=moment)
    counts: dict[str, int] = {}
    started = time.monotonic()
    if out is not None:
        with out.open("w", encoding="utf-8") as handle:
            for event in generate(config):
                counts[event.schema] = counts.get(event.schema, 0) + 1
                if event.record is not None:
                    handle.write(json.dumps({"_schema": event.schema, **to_jsonable(event.record)}) + "\n")
        typer.echo(f"wrote {sum(counts.values())} events to {out} (malformed ones are not written)")
        return
    settings = load_settings()
    keyer = SubjectKeyer(load_pepper(settings, allow_demo=True))
    columns = (TextColumn("simulate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, disable=not sys.stderr.isatty())
    with EventProducer(settings, keyer=keyer) as producer, progress:
        task = progress.add_task("events", total=events)
        for index, event in enumerate(generate(config), start=1):
            counts[event.schema] = counts.get(event.schema, 0) + 1
            if event.raw is not None:
                producer.send_raw(event.topic, event.key, event.raw)
            else:
                assert event.record is not None
                producer.send(event.schema, event.record)
            if index % 1000 == 0:
                producer.poll()
                progress.update(task, completed=index)
                if rate:
                    ahead = index / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        progress.update(task, completed=events)
    stats = producer.flush()
    elapsed = time.monotonic() - started
    for name, count in sorted(counts.items()):
        label = "malformed (for the DLQ)" if name == MALFORMED else name.removeprefix("cs.records.")
        typer.echo(f"  {label:<24} {count:>8}")
    typer.echo(
        f"delivered {stats.delivered} of {events} events in {elapsed:.1f} s: "
        f"{stats.delivered / elapsed:,.0f} events/s, {producer.bytes_sent / max(events, 1):.0f} bytes/event"
    )
    if stats.failed:
        raise RecordsError(f"{stats.failed} event(s) not delivered: {stats.describe_errors()}")


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)
    app.command("simulate")(simulate)
