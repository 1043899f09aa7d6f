"""The erased-keys table: which subject keys were erased, and when. Pure decisions; the
ledger itself is the faust GlobalTable `erasures` (subject key -> erased_at, epoch ms),
whose compacted changelog holds subject keys and times only, never plaintext.

Why it exists: an erasure tombstones the subject's state, but the raw topics keep the
subject's events until their retention ends. Reprocessing them (a new consumer group,
a reset offset, a restored backup) would otherwise build the erased rows again.

What "older than the erasure" means: an event is dropped when any subject key of any
identifier it names (before enforcement: a stripped identifier still says whose event
it is) has an erasure at or after the event's policy time, the `time_field` of its
record type in `pipeline/policy.toml`:
- ChatConversation: `started_at` (the whole conversation, transcript included: a chat
  that began before the erasure is pre-erasure data even if it ended after it);
- CallDetailRecord: `started_at`; CallRecording: `recording_started_at`;
- ConsentChanged / CookieConsentChanged: `event_time`.
An event dated after the erasure is new contact and is processed normally (the subject
starts afresh), unless Kafka took the raw message in before the erasure (`taken_in`: a
future-dated event re-read by a replay is not new contact). `erased_at` is the time the
streams stage executed the request (the command envelope's `verified_at`), not the time the
DPO issued it: events in between were still stored before the erasure ran and are erased
with the rest.

Dropped events are valid input, so they are counted (`records_streams_erased_dropped_total`),
not dead-lettered. A key erased twice keeps the later time (`merge`), so the erased-keys table's
state does not depend on the order its changelog is read.

The erased-keys table is kept no longer than it can matter: an entry older than the policy's
`erasure.erased_keys_retention_days` (pipeline/topics.py `erased_keys_retention`, which
covers the longest replay of any topic plus a margin) is `expired`, and the worker
deletes it (a tombstone in the compacted changelog). The erased-keys table holds one entry per
subject key and no request id, so it does not link one person's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

ErasureLookup = Callable[[str], int | None]


def merge(current: int | None, erased_at: int) -> int:
    """The erased-keys table value after an erasure at `erased_at` (epoch ms): the later one wins."""
    return erased_at if current is None else max(current, erased_at)


def taken_in(event_ms: int, appended_s: float | None) -> int:
    """The moment an event is compared with an erasure (epoch ms): the earlier of its policy
    time and the time Kafka took the raw message in (its record timestamp, seconds). A source
    may date an event ahead of its clock (within the policy's skew): re-read after an
    erasure, such an event must still count as taken in before it, and the record timestamp
    of the message, which a replay does not change, says so."""
    if not appended_s or appended_s <= 0:
        return event_ms
    return min(event_ms, int(appended_s * 1000))


def is_erased(lookup: ErasureLookup, keys: Iterable[str], moment: int) -> bool:
    """Whether an event at `moment` (epoch ms) naming `keys` predates an erasure of one of them."""
    for key in keys:
        erased_at = lookup(key)
        if erased_at is not None and moment <= erased_at:
            return True
    return False


def expired(entries: Iterable[tuple[Any, Any]], now: int, retention_ms: int) -> list[Any]:
    """The keys of erased-keys entries (key, erased_at epoch ms) older than the retention at `now`."""
    cutoff = now - retention_ms
    return [key for key, erased_at in entries if erased_at is not None and int(erased_at) < cutoff]
