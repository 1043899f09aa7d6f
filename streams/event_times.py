"""Pure: whether the times a source put on a raw event are plausible.

Event times decide retention (the TTL counts from the record's time field) and whether a
replayed event predates an erasure, yet the source chooses them. A time before the
policy's `event_times.earliest` (2000-01-01) or more than `max_future_skew_hours` ahead of
the streams stage's clock is a broken clock or a typo, not data to store: the event goes
to the dead-letter topic. The reason names the field (`ChatConversation.messages.sent_at`)
and the bound, never the value. Every timestamp of the event is checked, nested ones
(a chat's messages) included, since each may become a row's time field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any


def _times(value: Any, path: str) -> Iterator[tuple[str, datetime]]:
    if isinstance(value, datetime):
        yield path, value
    elif isinstance(value, Mapping):
        for name, inner in value.items():
            yield from _times(inner, f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            yield from _times(item, path)


def implausible_time(
    schema: str, event: Mapping[str, Any], *, now: datetime, earliest: datetime, max_future_skew: timedelta
) -> str | None:
    """Why one of the event's times is implausible (the first found), or None."""
    latest = now + max_future_skew
    for path, moment in _times(event, schema.rsplit(".", 1)[-1]):
        if moment < earliest:
            return f"{path} is before {earliest:%Y-%m-%d}: not a plausible event time"
        if moment > latest:
            hours = int(max_future_skew.total_seconds() // 3600)
            return f"{path} is more than {hours} h ahead of the streams stage's clock: not a plausible event time"
    return None
