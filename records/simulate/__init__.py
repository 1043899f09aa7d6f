"""Realistic synthetic upstream traffic for the demo, the tests and the benchmarks.

`generate(config)` is a pure generator of `SimulatedEvent`s, deterministic for a seed and
a fixed `now` (same config -> the same events, ids and times included): web chats with
and without the separate contact-details consent, every cookie-banner combination,
precise locations with and without the geolocation permission, myStaff app chats with
personnel numbers and postal addresses, calls answered or not, recordings (a few without
a notice or with the notice after recording started), consent and cookie-consent
changes, contact-form submissions (a few with details but without the form's consent),
and a few deliberately malformed messages (raw bytes) for the dead-letter path.

People recur: a pool of Finnish and foreign persons (faker, fi_FI and a few other
locales) and anonymous web visitors is built once per run, so one subject appears in
chats, calls and consent changes, as an erasure test needs. Event times are spread
evenly over the last `span_days` (oldest first), so retention has work to do;
`produced_at` follows a few seconds later, as if history were replayed, while Kafka's own
message timestamps stay the wall clock of the run (so topic retention does not drop them).

Which share of events is of which kind, and how often each case that enforcement must
catch occurs, lives in `TrafficMix`. `run(events, sink)` is the send loop shared by the
Kafka producer and the dry run; the CLI (`records simulate`) composes them.

| module | what it holds |
| --- | --- |
| `model` | kinds, topics, tags, `TrafficMix`, `SimulationConfig`, `SimulatedEvent` |
| `corpus` | static data: places, pages, user agents, transcript lines |
| `population` | the persons and visitors of one run |
| `events` | the generator (`generate`, `event_line`), consent changes, malformed messages |
| `context` | `SimulationContext`: what the event builders borrow from the run |
| `chats` | web and myStaff app chats with their transcripts |
| `calls` | call detail records and the recordings of answered calls |
| `malformed` | broken messages for the dead-letter path |
| `contact_forms` | contact-form submissions of the web site |
| `send` | the send loop (`run`, `SimulationStats`, `EncodeOnly`) |

The package exports the API the CLI and the benchmarks compose (below); the kind and case
tags (`WEB_CHAT`, `RECORDING_WITHOUT_NOTICE`, ...) are imported from `records.simulate.model`.
"""

from records.simulate.events import event_line, generate
from records.simulate.model import KINDS, RAW_TOPICS, SimulatedEvent, SimulationConfig, TrafficMix
from records.simulate.send import EncodeOnly, EventSink, SimulationStats, run

__all__ = [
    "KINDS",
    "RAW_TOPICS",
    "EncodeOnly",
    "EventSink",
    "SimulatedEvent",
    "SimulationConfig",
    "SimulationStats",
    "TrafficMix",
    "event_line",
    "generate",
    "run",
]
