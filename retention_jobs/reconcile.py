"""Pure: where every raw event of a window ended up, by id (`records reconcile --since T`).

Input is plain data the adapter (records/reconcile_read.py) collects: the raw messages of
cs.chat.v1, cs.call.v1, cs.consent.v1 and cs.contact-form.v1 produced since T, decoded;
the stored rows with those row ids (read FINAL); the quarantine and dead-letter messages; the erased-keys table.
Each raw message (topic, partition, offset) gets exactly one of these outcomes:

- `stored`: its row is in its table under its row id and came from this event
  (`source_event_id`); `stripped` rows are stored rows that name stripped fields;
- `superseded`: the row id is stored but from another event of the same record (a newer
  version replaced it: ReplacingMergeTree keeps the latest);
- `quarantined` / `dead_lettered`: a cs.quarantine.v1 / cs.dlq.v1 message points at its
  source offset (streams), or carries its event id (a row the sink refused), with a reason;
- `erased`: not stored, and one of its subject keys was erased at or after its policy
  time (the erased-keys table names the request);
- `expired`: not stored and past its retention already (the row TTL drops it on insert).

An event with none of these is `missing`. An event in two places where one is expected
(stored and dead-lettered, stored although erased, quarantined and dead-lettered ...) is a
`duplicate`. Copies of one dead letter (a replay after a crash re-sends a batch's dead
letters; the DLQ is a log) are counted as `letter_copies`, not as duplicates: the event is
still in one place.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.retention_period import RetentionPeriod

QUARANTINED = "quarantined"
DEAD_LETTERED = "dead_lettered"
STORED = "stored"
SUPERSEDED = "superseded"
ERASED = "erased"
EXPIRED = "expired"
OUTCOMES = (STORED, SUPERSEDED, QUARANTINED, DEAD_LETTERED, ERASED, EXPIRED)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class RawEvent:
    """One raw message. `event_id` is None when it could not be decoded (then only a dead
    letter can account for it). `table`/`row_id`: where its main row belongs."""

    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    schema: str | None = None
    table: str | None = None
    row_id: str | None = None
    subject_keys: tuple[str, ...] = ()
    policy_time_ms: int = 0
    retention: RetentionPeriod | None = None  # the policy's limit for its record type

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def label(self) -> str:
        """How a report names the event: its id, or its offset; never a personal value."""
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        return f"{self.event_id} ({where})" if self.event_id else where


@dataclass(frozen=True)
class StoredRow:
    table: str
    row_id: str
    source_event_id: str
    stripped: tuple[str, ...] = ()  # "field:reason", as the rows carry them


@dataclass(frozen=True)
class Letter:
    """A cs.quarantine.v1 or cs.dlq.v1 message: `kind` is QUARANTINED or DEAD_LETTERED.
    Streams letters point at their raw source offset; a sink letter (a refused row) at an
    enriched topic, and carries the row's `source_event_id` when it could be read."""

    kind: str
    source_topic: str
    partition: int
    offset: int
    reason: str
    stage: str = ""
    source_event_id: str | None = None


@dataclass(frozen=True)
class Erasure:
    """One erased subject key (the erased-keys table holds no request id: nothing links a person's keys)."""

    subject_key: str
    erased_at_ms: int


@dataclass(frozen=True)
class Place:
    outcome: str
    detail: str  # table/row id, the reason, or when the subject was erased


@dataclass(frozen=True)
class Accounted:
    event: RawEvent
    places: tuple[Place, ...]
    stripped: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        """The one outcome, 'missing', or 'duplicate'."""
        kinds = {p.outcome for p in self.places}
        if not kinds:
            return "missing"
        if len(kinds) > 1:
            return "duplicate"
        return next(iter(kinds))


@dataclass(frozen=True)
class Reconciliation:
    since_ms: int
    events: tuple[Accounted, ...]
    letter_copies: int = 0
    repeated_ids: int = 0  # event ids that occur at more than one offset

    @property
    def counts(self) -> Counter[str]:
        return Counter(a.outcome for a in self.events)

    @property
    def stripped(self) -> int:
        return sum(1 for a in self.events if a.outcome == STORED and a.stripped)

    @property
    def missing(self) -> tuple[Accounted, ...]:
        return tuple(a for a in self.events if a.outcome == "missing")

    @property
    def duplicates(self) -> tuple[Accounted, ...]:
        return tuple(a for a in self.events if a.outcome == "duplicate")

    @property
    def balanced(self) -> bool:
        return not self.missing and not self.duplicates

    def summary(self) -> str:
        """One line, e.g. '120 raw events: 100 stored (7 stripped), 20 dead-lettered; 0 missing, 0 duplicates'."""
        counts = self.counts
        parts = []
        for outcome in OUTCOMES:
            if counts[outcome]:
                text = f"{counts[outcome]} {outcome.replace('_', '-')}"
                if outcome == STORED and self.stripped:
                    text += f" ({self.stripped} stripped)"
                parts.append(text)
        body = ", ".join(parts) or "nothing"
        return f"{len(self.events)} raw events: {body}; {len(self.missing)} missing, {len(self.duplicates)} duplicates"

    def to_dict(self, *, detail: bool = True) -> dict[str, Any]:
        counts = self.counts
        out: dict[str, Any] = {
            "since_ms": self.since_ms,
            "events": len(self.events),
            **{outcome: counts[outcome] for outcome in OUTCOMES},
            "stripped": self.stripped,
            "missing": len(self.missing),
            "duplicates": len(self.duplicates),
            "letter_copies": self.letter_copies,
            "repeated_ids": self.repeated_ids,
            "balanced": self.balanced,
        }
        if detail:
            out["missing_events"] = [a.event.label() for a in self.missing]
            out["duplicate_events"] = [
                {"event": a.event.label(), "places": [f"{p.outcome}: {p.detail}" for p in a.places]}
                for a in self.duplicates
            ]
        return out


def reconcile(
    events: Iterable[RawEvent],
    rows: Iterable[StoredRow],
    letters: Iterable[Letter],
    erasures: Iterable[Erasure],
    *,
    since_ms: int,
    now_ms: int,
) -> Reconciliation:
    """Account for every event (see the module docstring). `rows` may hold rows of other
    events; only rows whose (table, row id) an event names are looked at."""
    events = list(events)
    stored = {(r.table, r.row_id): r for r in rows}
    by_position: dict[tuple[str, int, int], list[Letter]] = defaultdict(list)
    by_event_id: dict[str, list[Letter]] = defaultdict(list)
    for letter in letters:
        if letter.source_event_id is not None:
            by_event_id[letter.source_event_id].append(letter)
        else:
            by_position[(letter.source_topic, letter.partition, letter.offset)].append(letter)
    erased_at: dict[str, Erasure] = {}
    for erasure in erasures:
        known = erased_at.get(erasure.subject_key)
        if known is None or erasure.erased_at_ms > known.erased_at_ms:
            erased_at[erasure.subject_key] = erasure

    accounted = []
    copies = 0
    for event in events:
        places: list[Place] = []
        strips: tuple[str, ...] = ()
        row = stored.get((event.table, event.row_id)) if event.table and event.row_id else None
        if row is not None:
            if row.source_event_id == event.event_id:
                places.append(Place(STORED, f"{row.table}/{row.row_id}"))
                strips = row.stripped
            else:
                places.append(Place(SUPERSEDED, f"{row.table}/{row.row_id}"))
        own = list(by_position.get(event.position, ()))
        if event.event_id is not None:
            own += by_event_id.get(event.event_id, ())
        seen: set[tuple[str, str, int, int]] = set()
        for letter in own:
            identity = (letter.kind, letter.source_topic, letter.partition, letter.offset)
            if identity in seen:
                copies += 1
                continue
            seen.add(identity)
            places.append(Place(letter.kind, f"{letter.stage or '?'}: {letter.reason}"))
        covering = _erasure_of(event, erased_at)
        if covering is not None and (row is None or row.source_event_id == event.event_id):
            # stored although erased is an erasure that did not hold: in two places
            erased = datetime.fromtimestamp(covering.erased_at_ms / 1000, UTC).isoformat(timespec="seconds")
            places.append(Place(ERASED, f"erased at {erased}"))
        if not places and _expired(event, now_ms):
            places.append(Place(EXPIRED, f"older than {event.retention.label if event.retention else '?'}"))
        accounted.append(Accounted(event, tuple(places), strips))
    ids = Counter(e.event_id for e in events if e.event_id is not None)
    return Reconciliation(
        since_ms, tuple(accounted), letter_copies=copies, repeated_ids=sum(1 for n in ids.values() if n > 1)
    )


def _erasure_of(event: RawEvent, erased_at: Mapping[str, Erasure]) -> Erasure | None:
    """The erasure that covers the event: one of its keys erased at or after its time."""
    for key in event.subject_keys:
        erasure = erased_at.get(key)
        if erasure is not None and event.policy_time_ms <= erasure.erased_at_ms:
            return erasure
    return None


def _expired(event: RawEvent, now_ms: int) -> bool:
    """Past its period at `now_ms`, by the TTL's calendar arithmetic."""
    if event.retention is None or not event.policy_time_ms:
        return False
    moment = datetime.fromtimestamp(event.policy_time_ms / 1000, UTC)
    return event.retention.expired(moment, datetime.fromtimestamp(now_ms / 1000, UTC))


def first(items: Sequence[Accounted], limit: int = 10) -> list[str]:
    """Labels of the first `limit` events (for one-line error messages)."""
    return [a.event.label() for a in items[:limit]]
