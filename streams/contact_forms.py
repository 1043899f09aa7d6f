"""Pure: a ContactFormSubmitted event -> the ContactFormRecord to store, enforced like a
web chat. The caller (streams.rows.RowBuilder) passes the consent lookup, the clock and
the function giving a row's subject keys; it wraps the row into its outcome (topic,
restriction headers, SubjectRecord) as for every other row.

- ContactFormSubmitted -> ContactFormRecord on cs.contact-form.enriched.v1 (key and row id:
  submission_id), and a SubjectRecord on cs.subjects.v1 when an identifier survives;
- the contact details (name, email, phone, company) need the form's separate
  `contact_consent` (pipeline/policy.toml [fields.contact_form]), judged as for a chat
  (streams/enforce_consent.py): captured with the submission, and not withdrawn at or
  after `submitted_at` for any subject key of the form;
- the email is lower-cased, the phone normalised to E.164 (a number that cannot be read
  is removed as `invalid_phone`); only surviving identifiers give subject keys;
- a blank submission id is an InvalidEvent (dead-lettered by the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.policy import RecordPolicy
from streams import enrich
from streams.consent_state import SubjectConsent, to_millis
from streams.enforce_consent import INVALID_PHONE, ConsentInForce, Strip, enforce, rules_in_force
from streams.exceptions import InvalidEvent

RECORD_TYPE = "contact_form"
# The raw fields naming the person (erasure scope: before enforcement).
RAW_IDENTIFIERS = ("email", "phone")
ROW_ID_FIELD = "submission_id"

ConsentLookup = Callable[[Sequence[str]], SubjectConsent]
RowKeys = Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class FormRow:
    """The enforced row of one submission, what was stripped, and the tracked consent
    state of its subject keys (restriction and objection travel from it as headers)."""

    value: dict[str, Any]
    strips: list[Strip]
    tracked: SubjectConsent


def _text(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


class ContactFormRows:
    """Builds the row of one contact-form submission under the `contact_form` policy;
    `row_keys` gives a row's subject keys (streams.rows, shared with every row)."""

    def __init__(self, policy: RecordPolicy, row_keys: RowKeys) -> None:
        self.policy = policy
        self.row_keys = row_keys
        self.rules = rules_in_force(policy, None)

    def build(self, event: Mapping[str, Any], lookup: ConsentLookup, now: datetime) -> FormRow:
        submission_id = event[ROW_ID_FIELD]
        if not submission_id.strip():
            raise InvalidEvent("ContactFormSubmitted.submission_id is empty")
        row: dict[str, Any] = {
            "event_id": submission_id,
            "source_event_id": str(event["event_id"]),
            "subject_keys": [],
            "submission_id": submission_id,
            "form_name": _text(event["form_name"]),
            "submitted_at": event["submitted_at"],
            "name": _text(event["name"]),
            "email": _text(event["email"]),
            "phone": _text(event["phone"]),
            "company_name": _text(event["company_name"]),
            "message": event["message"],
            "page_url": _text(event["page_url"]),
            "user_agent": _text(event["user_agent"]),
        }
        # Every identifier the form names, stripped or not, finds its withdrawals.
        tracked = lookup(self.row_keys(row))
        consent = ConsentInForce(
            {"contact_consent": bool(event["contact_consent"])}, tracked, to_millis(row[self.policy.time_field])
        )
        row, strips = enforce(self.policy, row, channel=None, consent=consent, rules=self.rules)
        row["email"] = enrich.normalise_email(row["email"])
        if row["phone"] is not None:
            row["phone"] = enrich.e164(row["phone"])
            if row["phone"] is None:
                strips.append(Strip("phone", INVALID_PHONE))
        row["subject_keys"] = self.row_keys(row)
        row.update(
            contact_consent=consent.holds("contact_consent"),
            marketing_consent=bool(event["marketing_consent"]),
            stripped=[str(s) for s in strips],
            ingested_at=now,
        )
        row["expires_at"] = enrich.expires_at(self.policy, row)
        return FormRow(row, strips, tracked)
