"""The call history's rows: CallDetailRecord -> CallRecord, CallRecording ->
CallRecordingRecord (or a quarantine verdict when a `requires` of its policy fails), both
on cs.call.enriched.v1 under the call_id, so a call and its recordings share a partition.

No consent applies: the call history is a legal obligation. A caller number that is not
E.164 (e.g. a withheld one) is kept as the operator delivered it and gives no subject key.
Pure, like streams/rows.py, which adds the caller's SubjectRecord."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline import topics
from pipeline.policy import RecordPolicy
from pipeline.topics import CALL_RECORD, CALL_RECORDING_RECORD
from streams import enrich
from streams.contact_forms import RowKeys
from streams.enforce_consent import NO_CONSENT, enforce, rules_in_force
from streams.exceptions import InvalidEvent
from streams.record_requirements import REQUIREMENTS
from streams.row_types import (
    ConsentLookup,
    Outcome,
    Quarantine,
    Row,
    StrippedField,
    consent_headers,
    require_ids,
    text_or_none,
)


def _duration_s(record: str, event: Mapping[str, Any], started: str, ended: str) -> int:
    """Whole seconds from `started` to `ended`; InvalidEvent naming both fields if it ends first."""
    if event[ended] < event[started]:
        raise InvalidEvent(f"{record}.{ended} is before {started}")
    return int((event[ended] - event[started]).total_seconds())


# The event fields each row takes as they are, and (calls) the optional texts.
_CALL_COPIED = ("call_id", "direction", "service_number", "started_at", "answered_at", "ended_at")
_CALL_TEXT = ("answered_by_number", "answered_by_user")
_RECORDING_COPIED = (
    "recording_id",
    "call_id",
    "recording_uri",
    "notice_played_at",
    "recording_started_at",
    "recording_ended_at",
)


class CallRows:
    """Rows of calls and call recordings under their policies; `row_keys` gives a row's subject keys."""

    def __init__(self, call_policy: RecordPolicy, recording_policy: RecordPolicy, row_keys: RowKeys) -> None:
        self.call_policy = call_policy
        self.recording_policy = recording_policy
        self._row_keys = row_keys
        self._rules = {record.record_type: rules_in_force(record, None) for record in (call_policy, recording_policy)}

    def call(self, event: Mapping[str, Any], lookup: ConsentLookup, now: datetime) -> tuple[Outcome, dict[str, Any]]:
        """The call's outcome and its row as emitted (the caller's subject comes from it)."""
        require_ids("CallDetailRecord", event, "call_id")
        row = self._common(event, event["call_id"], _CALL_COPIED, _CALL_TEXT)
        row["duration_s"] = _duration_s("CallDetailRecord", event, "started_at", "ended_at")
        return self._enforced(self.call_policy, CALL_RECORD, event["call_id"], row, lookup, now)

    def recording(self, event: Mapping[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        for requirement in self.recording_policy.requires:
            failure = REQUIREMENTS[requirement](event)
            if failure is not None:
                return Outcome(quarantine=Quarantine(requirement, failure))
        require_ids("CallRecording", event, "recording_id", "call_id")
        row = self._common(event, event["recording_id"], _RECORDING_COPIED)
        row["duration_s"] = _duration_s("CallRecording", event, "recording_started_at", "recording_ended_at")
        out, _ = self._enforced(self.recording_policy, CALL_RECORDING_RECORD, event["call_id"], row, lookup, now)
        return out

    @staticmethod
    def _common(
        event: Mapping[str, Any], row_id: str, copied: tuple[str, ...], text: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A row's columns from the event: `event_id` is its business id, `copied` fields as
        they are, `text` fields with blanks as NULL (the caller number always one of them)."""
        row: dict[str, Any] = {"event_id": row_id, "source_event_id": str(event["event_id"]), "subject_keys": []}
        row.update((name, event[name]) for name in copied)
        row.update((name, text_or_none(event[name])) for name in ("caller_number", *text))
        return row

    def _enforced(
        self,
        record: RecordPolicy,
        schema: str,
        key: str,
        row: dict[str, Any],
        lookup: ConsentLookup,
        now: datetime,
    ) -> tuple[Outcome, dict[str, Any]]:
        """`row` enforced, keyed and stamped, on cs.call.enriched.v1 under `key`; the outcome
        and the row as emitted."""
        tracked = lookup(self._row_keys(row))
        row, strips = enforce(record, row, channel=None, consent=NO_CONSENT, rules=self._rules[record.record_type])
        row["caller_number"] = enrich.e164(row["caller_number"]) or row["caller_number"]
        row["subject_keys"] = self._row_keys(row)
        row.update(stripped=[str(s) for s in strips], ingested_at=now)
        row["expires_at"] = enrich.expires_at(record, row)
        out = Outcome(
            rows=[Row(topics.CALL_ENRICHED.name, key, schema, row, consent_headers(tracked))],
            stripped=[StrippedField(record.record_type, s.field, s.reason) for s in strips],
        )
        return out, row
