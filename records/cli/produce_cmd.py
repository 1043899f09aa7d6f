"""`records produce` (JSON Lines in, Avro messages out) and `records simulate` (realistic
synthetic traffic). Both write the pipeline's input topics through
`pipeline.event_producer`, which picks each message's topic and key."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated

import typer

from pipeline.config import Settings
from pipeline.event_producer import (
    EncodedEvent,
    EventEncoder,
    InvalidLine,
    ProduceStats,
    encode_json_line,
    needs_keyer,
    producible_topics,
)
from pipeline.exceptions import ConfigError, RecordsError
from pipeline.kafka.admin import KafkaAdmin
from records.simulate import (
    KINDS,
    RAW_TOPICS,
    EncodeOnly,
    SimulatedEvent,
    SimulationConfig,
    SimulationStats,
    TrafficMix,
    event_line,
    generate,
    run,
)
from records.wiring import Wiring


def _require_topics(settings: Settings, names: list[str]) -> None:
    """Fail fast (instead of after librdkafka's 5-minute delivery timeout) when a topic is missing."""
    existing = KafkaAdmin(settings.kafka, timeout=15.0).list_topics()
    missing = [name for name in names if name not in existing]
    if missing:
        raise RecordsError(
            f"topic(s) {', '.join(missing)} missing on {settings.kafka.bootstrap}: run `records topics ensure`"
        )


def _report_delivery(stats: ProduceStats) -> None:
    if not stats.ok:
        typer.echo(f"delivery failed: {stats.describe_failures()}", err=True)


# ---- records produce ----------------------------------------------------------------------


def produce(
    topic: Annotated[str, typer.Option("--topic", help="Input topic: cs.chat.v1, cs.call.v1, cs.consent.v1 ...")],
    file: Annotated[
        Path | None, typer.Option("--file", help="JSON Lines file; standard input when not given.", dir_okay=False)
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Send the valid lines even when others are invalid.")
    ] = False,
) -> None:
    """Validate JSON Lines against the topic's Avro schemas and produce them.

    Each line is a JSON object with the record's fields (timestamps as ISO-8601 or epoch
    milliseconds, bytes as base64); "_schema" names the record type (e.g. CallRecording)
    and is needed only on topics that carry several. The Kafka key is chosen as the
    architecture says (conversation, call or request id; the subject key for consent
    events, which needs the pepper: RECORDS_PEPPER_FILE, or the local demo's).

    All or nothing by default: every line is validated first, and if any is invalid
    nothing is sent. With --skip-invalid the valid lines are sent as they are read.
    Every invalid line is reported on stderr as "line N: <Schema>: field 'x': problem"
    (values are never shown). Prints "produced N, rejected M, failed K"; the exit code
    is 1 if any line was rejected or any delivery failed.
    """
    spec = next((t for t in producible_topics() if t.name == topic), None)
    if spec is None:
        known = ", ".join(t.name for t in producible_topics())
        raise ConfigError(f"records produce writes the pipeline's input topics ({known}), not {topic}")
    wiring = Wiring()
    settings = wiring.settings
    keyer = None
    if any(needs_keyer(name) for name in spec.value_schemas):
        keyer = wiring.keyer(allow_demo=True)
    rejected = 0
    valid: list[EncodedEvent] = []
    with ExitStack() as stack:
        source = stack.enter_context(file.open("rb")) if file is not None else sys.stdin.buffer
        producer = stack.enter_context(wiring.event_producer(keyer))
        if skip_invalid:
            _require_topics(settings, [spec.name])
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                event = encode_json_line(line, spec, producer.encoder)
            except InvalidLine as exc:
                rejected += 1
                for problem in exc.problems:
                    typer.echo(f"line {number}: {problem}", err=True)
                continue
            if skip_invalid:
                producer.send_encoded(event)
            else:
                valid.append(event)
        if rejected and not skip_invalid:
            typer.echo(
                f"nothing sent: {rejected} invalid line(s); fix them, or send the valid ones with --skip-invalid",
                err=True,
            )
            typer.echo(f"produced 0, rejected {rejected}, failed 0")
            raise typer.Exit(1)
        if valid:
            _require_topics(settings, [spec.name])
        for event in valid:
            producer.send_encoded(event)
        stats = producer.flush()
    failed = stats.failed + stats.unconfirmed
    typer.echo(f"produced {stats.delivered}, rejected {rejected}, failed {failed}")
    _report_delivery(stats)
    if rejected or failed:
        raise typer.Exit(1)


# ---- records simulate ---------------------------------------------------------------------

_KIND_LABELS = {
    "web_chat": "web chat",
    "app_chat": "myStaff app chat",
    "call": "call",
    "recording": "call recording",
    "consent": "consent change",
    "cookie_consent": "cookie consent change",
    "malformed": "malformed (for the DLQ)",
    "contact_form": "contact form",
}


class _Progress:
    """A rich progress bar on a terminal; otherwise a line on stderr every 10 % (at most every 2 s)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar: object | None = None
        self._last_line = 0.0
        self._printed = 0
        self._every = 0.0  # seconds between lines: about a tenth of the run once the rate is known
        self._started = time.perf_counter()

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("simulate"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} events/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            bar.start()
            self._task = bar.add_task("events", total=self.total, rate="-")
            self._bar = bar
        return self

    def __call__(self, done: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
        if done and not self._every:
            self._every = elapsed * self.total / done / 10
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=rate)  # type: ignore[attr-defined]
            return
        if done == self._printed:
            return
        if done == self.total or elapsed - self._last_line >= max(2.0, self._every):
            self._last_line, self._printed = elapsed, done
            typer.echo(f"simulate: {done}/{self.total} events, {rate} events/s", err=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()  # type: ignore[attr-defined]


def _written(events: Iterator[SimulatedEvent], handle: IO[str]) -> Iterator[SimulatedEvent]:
    for event in events:
        handle.write(json.dumps(event_line(event), ensure_ascii=False) + "\n")
        yield event


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError("--now must be an ISO-8601 time, e.g. 2026-11-01T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(stats: SimulationStats, total: int) -> list[str]:
    lines = [f"{'kind':<24} {'record type':<22} {'topic':<18} {'events':>8} {'share':>6}"]
    for kind, (schema, topic) in KINDS.items():
        count = stats.by_kind.get(kind, 0)
        share = 100.0 * count / total if total else 0.0
        schema_label = schema.rsplit(".", 1)[-1] if schema else "raw bytes"
        topic_label = topic or "raw topics"
        lines.append(f"{_KIND_LABELS[kind]:<24} {schema_label:<22} {topic_label:<18} {count:>8} {share:>5.1f}%")
    if stats.malformed:
        lines.append("malformed by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.malformed.items())))
    if stats.tags:
        lines.append("for enforcement to catch: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.tags.items())))
    lines.append("per topic: " + ", ".join(f"{t} {stats.by_topic.get(t, 0)}" for t in RAW_TOPICS))
    return lines


def simulate(
    events: Annotated[int, typer.Option("--events", "-n", min=0, help="How many events to generate.")] = 10_000,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Same seed (and --now): the same events. Default: a random one.")
    ] = None,
    rate: Annotated[float, typer.Option("--rate", min=0, help="At most this many events/s (0: unlimited).")] = 0.0,
    span_days: Annotated[
        float, typer.Option("--span-days", min=0.2, help="Event times spread over the last N days.")
    ] = 1095.0,
    now: Annotated[
        str | None, typer.Option("--now", help="The run's 'now' (ISO-8601); default: the current second.")
    ] = None,
    people: Annotated[
        int | None, typer.Option("--people", min=1, help="Recurring people in the pool (default: events/20).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Generate and encode only; send nothing.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the events as JSON Lines to this file.", dir_okay=False)
    ] = None,
) -> None:
    """Produce realistic synthetic traffic to cs.chat.v1, cs.call.v1 and cs.consent.v1.

    Web and myStaff chats, calls, recordings, consent and cookie-consent changes of a
    pool of recurring people, with the cases enforcement must catch (contact details
    without consent, cookie data without analytics consent, locations without
    permission, recordings without a prior notice) and about 1 % malformed messages for
    the dead-letter path. Deterministic for --seed and --now. The consent topic is keyed
    by subject key, so a pepper is needed: RECORDS_PEPPER_FILE, or the demo's own.
    """
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    config = SimulationConfig(
        events=events, seed=seed, now=_parse_now(now), span_days=span_days, people=people, mix=TrafficMix()
    )
    wiring = Wiring()
    settings = wiring.settings
    keyer = wiring.keyer(allow_demo=True)
    typer.echo(
        f"simulating {events} events: seed {seed}, now {config.now.isoformat()}, span {span_days:g} days, "
        f"{config.pool_size} recurring people" + (" (dry run)" if dry_run else "")
    )
    delivery: ProduceStats | None = None
    started = time.perf_counter()
    with ExitStack() as stack:
        stream = generate(config)
        if out is not None:
            stream = _written(stream, stack.enter_context(out.open("w", encoding="utf-8")))
        progress = stack.enter_context(_Progress(events))
        if dry_run:
            dry = EncodeOnly(EventEncoder(serde=wiring.serde, keyer=keyer))
            stats = run(stream, dry, rate=rate, on_progress=progress)
        else:
            _require_topics(settings, list(RAW_TOPICS))
            producer = stack.enter_context(wiring.event_producer(keyer))
            stats = run(stream, producer, rate=rate, on_progress=progress)
            delivery = producer.flush()
            stats.seconds = time.perf_counter() - started  # until every delivery was confirmed
    for line in _summary(stats, events):
        typer.echo(line)
    if out is not None:
        typer.echo(f"wrote {stats.events} events to {out}")
    if delivery is not None:
        failed = delivery.failed + delivery.unconfirmed
        typer.echo(f"delivered {delivery.delivered} of {stats.events}, failed {failed}")
    typer.echo(
        f"{stats.events} events in {stats.seconds:.1f} s: {stats.events_per_second:,.0f} events/s, "
        f"{stats.bytes_per_event:.0f} bytes/event (encoded values, {stats.bytes / 1e6:.1f} MB)"
    )
    if delivery is not None and not delivery.ok:
        _report_delivery(delivery)
        raise typer.Exit(1)
    if stats.events != events:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)
    app.command("simulate")(simulate)
