"""Pure: the checks behind a record policy's `requires` (pipeline/policy.toml), run on the
raw event before anything is built; a failing one quarantines the event (cs.quarantine.v1)
with the reason it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _requirement_notice_before_start(event: Mapping[str, Any]) -> str | None:
    notice = event.get("notice_played_at")
    if notice is None:
        return "recording without prior notice: no notice was played"
    if notice > event["recording_started_at"]:
        return "recording without prior notice: the notice was played after recording started"
    return None


# `requires` of a record policy -> check returning what failed (None: satisfied).
REQUIREMENTS: Mapping[str, Callable[[Mapping[str, Any]], str | None]] = {
    "recording_notice_before_start": _requirement_notice_before_start,
}
