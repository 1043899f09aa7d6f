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

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

# Values that never hold a time: skipped without a call (most of an event's fields).
_SCALARS = (str, int, float, bytes)


def _implausible(value: Any, earliest: datetime, latest: datetime) -> tuple[tuple[str, ...], datetime] | None:
    """The field path below `value` and the time of its first time outside [earliest,
    latest], depth first in field order; None when every time is inside. The path is
    built only for the time found (this runs on every event: issue 15)."""
    if isinstance(value, datetime):
        return ((), value) if value < earliest or value > latest else None
    if isinstance(value, dict | Mapping):
        for name, inner in value.items():
            if inner is None or isinstance(inner, _SCALARS):
                continue
            found = _implausible(inner, earliest, latest)
            if found is not None:
                return (name, *found[0]), found[1]
    elif isinstance(value, list):
        for item in value:
            if item is None or isinstance(item, _SCALARS):
                continue
            found = _implausible(item, earliest, latest)
            if found is not None:
                return found
    return None


def implausible_time(
    schema: str, event: Mapping[str, Any], *, now: datetime, earliest: datetime, max_future_skew: timedelta
) -> str | None:
    """Why one of the event's times is implausible (the first found), or None."""
    found = _implausible(event, earliest, now + max_future_skew)
    if found is None:
        return None
    parts, moment = found
    path = ".".join((schema.rsplit(".", 1)[-1], *parts))
    if moment < earliest:
        return f"{path} is before {earliest:%Y-%m-%d}: not a plausible event time"
    hours = int(max_future_skew.total_seconds() // 3600)
    return f"{path} is more than {hours} h ahead of the streams stage's clock: not a plausible event time"
