"""`python -m bench.state_sizes`: the bytes each per-subject-key structure of the workers
holds per distinct key, measured in-process through the real code paths, so a worker's
memory bound can be written as RSS <= base + b x K (K: distinct subject keys within
retention).

Simulated events (records/simulate, the seed and pool given) are encoded and decoded as
on the wire and built by `streams.rows.RowBuilder`, the consent table updated as
`streams/app.py` does (`subject key bytes -> consent_state.to_stored(...)`, what faust's
`memory://` store holds), the SubjectRecords fed to `streams.subject_index.SubjectIndex`
as the subject directory does (keys read by `streams.held_keys`). The sink's
`sink.denial_state.DenialState` is filled with one denial per key of every consent
change that denies something. Sizes are deep sizes (sys.getsizeof over every object
reachable from the structure, each counted once), so a key shared by two structures
counts in both: an upper bound per structure.

The bounded caches (lru_cache: the subject keyer's HMACs, phone normalisation, user
agents, network names, parsed consent states) are measured by filling each with distinct inputs under
tracemalloc: bytes per entry x maxsize is the most each can hold however long the run.

Output: one JSON document on stdout (see `main`); the figures quoted for the bound come
from running it, never from this docstring.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import topics
from pipeline.policy import default_policy
from pipeline.serde import Serde, SerdeError
from pipeline.subject_keys import IdentifierKind, SubjectKeyer, normalise_phone
from records.simulate.events import generate
from records.simulate.model import SimulatedEvent, SimulationConfig
from sink.denial_state import DenialState
from streams import consent_state, enrich
from streams.consent_state import (
    EMPTY,
    ConsentChange,
    SubjectConsent,
    apply,
    from_stored,
    merge,
    stored_after,
    to_stored,
)
from streams.exceptions import InvalidEvent
from streams.held_keys import HeldKeysReader
from streams.rows import RowBuilder
from streams.subject_index import SubjectIndex

PEPPER = b"state-sizes-pepper-not-a-secret-0123456789"
_ATOMS = (int, float, str, bytes, bool, type(None))
# A cookie banner's answer, the most common consent state (four statements, one refusal)
_COOKIES = {
    consent_state.COOKIE_FUNCTIONAL: True,
    consent_state.COOKIE_ANALYTICS: True,
    consent_state.COOKIE_MARKETING: False,
    consent_state.GEOLOCATION: True,
}


def deep_size(root: object) -> int:
    """Bytes of `root` and of every object reachable from it through containers, dataclass
    fields and slots, each object counted once."""
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, _ATOMS):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))
    return total


class StateBuilder:
    """The per-subject state the streams worker and the sink build from the same events."""

    def __init__(self) -> None:
        self.builder = RowBuilder(SubjectKeyer(PEPPER), default_policy())
        self.serde = Serde()
        self.decode = self.serde.decode
        self.held = HeldKeysReader(self.decode)
        self.consent: dict[bytes, bytes] = {}  # what the faust memory store holds
        self.index = SubjectIndex()
        self.denials = DenialState(timedelta(days=3650))
        self.subject_keys: set[str] = set()  # distinct keys of every row (K)
        self.offset = 0
        self.events = 0

    def encode(self, schema: str, value: dict[str, Any]) -> bytes:
        return self.serde.encoder(schema)(value)

    def consent_of(self, keys: Iterable[str]) -> SubjectConsent:
        return merge(from_stored(self.consent.get(k.encode())) for k in keys)

    def feed(self, schema: str, record: dict[str, Any], now: datetime) -> None:
        try:
            value = self.decode(self.encode(schema, record)).value
            outcome = self.builder.build(schema, value, self.consent_of, now)
        except (SerdeError, InvalidEvent):
            return
        self.events += 1
        for key, change in outcome.consent_changes:
            raw = key.encode()
            updated = stored_after(self.consent.get(raw), change)
            if updated is not None:
                self.consent[raw] = updated
            self._deny(raw, change)
        for row in outcome.rows:
            if row.value is not None:
                self.subject_keys.update(row.value.get("subject_keys") or ())
            if row.topic == topics.SUBJECTS.name:
                self.offset += 1
                encoded = None if row.value is None or row.schema is None else self.encode(row.schema, row.value)
                held = None if encoded is None else self.held(encoded)
                self.index.apply(0, self.offset, row.key.encode(), held)

    def feed_all(self, events: Iterable[SimulatedEvent], now: datetime) -> None:
        """Every record of `events` (malformed raw bytes are skipped, as dead letters)."""
        for event in events:
            if event.record is not None and event.schema_name is not None:
                self.feed(event.schema_name, event.record, now)

    def _deny(self, raw: bytes, change: ConsentChange) -> None:
        for name, given in change.statements.items():
            if not given:
                self.denials.note([raw], name, change.at)


def per_subject(events: int, seed: int, people: int | None, live_events: int = 0) -> dict[str, Any]:
    """Sizes of the per-subject structures after `events` simulated events, then
    `live_events` more of seed + 1 (what `records bench` adds in its live protocol: a
    second population, so more distinct keys)."""
    worker = StateBuilder()
    config = SimulationConfig(events=events, seed=seed, people=people)
    now = datetime.now(UTC)
    started = time.perf_counter()
    worker.feed_all(generate(config), now)
    if live_events:
        worker.feed_all(generate(SimulationConfig(events=live_events, seed=seed + 1, people=people)), now)
    seconds = time.perf_counter() - started
    k = len(worker.subject_keys)

    def structure(size: int, entries: int) -> dict[str, Any]:
        return {
            "entries": entries,
            "bytes": size,
            "bytes_per_entry": round(size / entries, 1) if entries else 0.0,
            "bytes_per_subject_key": round(size / k, 1) if k else 0.0,
        }

    return {
        "events": events,
        "live_events": live_events,
        "seed": seed,
        "people_pool": config.pool_size,
        "events_built": worker.events,
        "distinct_subject_keys": k,
        "seconds": round(seconds, 1),
        "streams": {
            "consent_table": structure(deep_size(worker.consent), len(worker.consent)),
            "subject_index": structure(deep_size(worker.index), len(worker.index)),
        },
        "sink": {"denial_state": structure(deep_size(worker.denials), len(worker.denials))},
    }


def cache_ceiling(name: str, fill: Callable[[int], object], cached: Any, sample: int) -> dict[str, Any]:
    """Bytes per entry of a bounded cache, filled with `sample` distinct inputs; x maxsize.
    The cache is emptied first (a full one would only evict)."""
    cached.cache_clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(sample):
        fill(i)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_entry = (after - before) / sample
    maxsize = int(cached.cache_parameters()["maxsize"])
    return {
        "cache": name,
        "maxsize": maxsize,
        "bytes_per_entry": round(per_entry, 1),
        "ceiling_mb": round(per_entry * maxsize / 2**20, 1),
    }


def cache_ceilings(sample: int) -> list[dict[str, Any]]:
    keyer = SubjectKeyer(PEPPER)
    return [
        cache_ceiling(
            "SubjectKeyer._key",
            lambda i: keyer.key(IdentifierKind.EMAIL, f"person{i}@example.com"),
            SubjectKeyer._key,
            sample,
        ),
        cache_ceiling("normalise_phone", lambda i: normalise_phone(f"+35840{i:07d}"), normalise_phone, sample),
        cache_ceiling(
            "enrich.parse_user_agent",
            lambda i: enrich.parse_user_agent(f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{i}.0"),
            enrich.parse_user_agent,
            min(sample, 5000),  # ua-parser is slow: a smaller sample
        ),
        cache_ceiling("enrich.isp_org", lambda i: enrich.isp_org(f"host{i}.net{i}.example.fi"), enrich.isp_org, sample),
        cache_ceiling(
            "consent_state.from_stored",
            lambda i: from_stored(to_stored(apply(EMPTY, ConsentChange(i, _COOKIES)))),
            consent_state._parsed,
            sample,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_sizes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 50_000], help="simulated events per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--people", type=int, default=None, help="the simulator's person/visitor pool size")
    parser.add_argument(
        "--live-events", type=int, default=0, help="then this many events of seed + 1 (records bench's live run)"
    )
    parser.add_argument("--cache-sample", type=int, default=20_000, help="distinct inputs per cache measured")
    args = parser.parse_args(argv)
    result = {
        "command": "python -m bench.state_sizes " + " ".join(sys.argv[1:] if argv is None else argv),
        "per_subject": [per_subject(n, args.seed, args.people, args.live_events) for n in args.events],
        "bounded_caches": cache_ceilings(args.cache_sample),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
