"""The send loop shared by the Kafka producer and the dry run (`records simulate --dry-run`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.event_producer import EventEncoder
from pipeline.kafka.producer import Headers, MessageKey
from records.simulate.model import MALFORMED_HEADER, SimulatedEvent

# ---- the send loop ----------------------------------------------------------------------


class EventSink(Protocol):
    """Where `run` puts events: `event_producer.EventProducer`, or `EncodeOnly` for a dry run."""

    def send(self, schema: str, record: Mapping[str, Any]) -> int: ...

    def send_raw(self, topic: str, value: bytes, *, key: MessageKey = None, headers: Headers | None = None) -> int: ...

    def poll(self) -> None: ...


@dataclass
class SimulationStats:
    """What a run generated and sent (delivery is counted by the producer)."""

    events: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)  # malformed kind -> count
    tags: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_event(self) -> float:
        return self.bytes / self.events if self.events else 0.0

    def add(self, event: SimulatedEvent, size: int) -> None:
        self.events += 1
        self.by_kind[event.kind] += 1
        self.by_topic[event.topic] += 1
        self.bytes += size
        for tag in event.tags:
            self.tags[tag] += 1
        if event.malformed:
            self.malformed[dict(event.headers).get(MALFORMED_HEADER, b"?").decode()] += 1


def run(
    events: Iterable[SimulatedEvent],
    sink: EventSink,
    *,
    rate: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
    poll_every: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> SimulationStats:
    """Send every event to `sink`, at most `rate` events/s (0: as fast as possible)."""
    stats = SimulationStats()
    started = clock()
    for event in events:
        if event.record is not None:
            assert event.schema_name is not None
            size = sink.send(event.schema_name, event.record)
        else:
            assert event.raw is not None
            size = sink.send_raw(event.topic, event.raw, key=event.key, headers=list(event.headers))
        stats.add(event, size)
        done = stats.events
        if done % poll_every == 0:
            sink.poll()
        if on_progress is not None and done % progress_every == 0:
            on_progress(done)
        if rate > 0:
            ahead = started + done / rate - clock()
            if ahead > 0.002:
                sleep(ahead)
    stats.seconds = clock() - started
    if on_progress is not None:
        on_progress(stats.events)
    return stats


class EncodeOnly:
    """A sink that computes keys and encodes like the producer but sends nothing (dry run)."""

    def __init__(self, encoder: EventEncoder) -> None:
        self.encoder = encoder

    def send(self, schema: str, record: Mapping[str, Any]) -> int:
        return len(self.encoder.encode(schema, record).value)

    def send_raw(self, topic: str, value: bytes, *, key: MessageKey = None, headers: Headers | None = None) -> int:
        return len(value)

    def poll(self) -> None:
        return None
