"""Enforcement: remove every field whose policy `needs` is not met. Pure functions,
driven only by `pipeline/policy.toml` (no field list lives here).

A field rule with `needs` (and, if it has `channels`, a record of one of them) is met
when both hold:
1. the consent was captured with the record: a chat carries the contact consent, the
   cookie categories and the geolocation permission as they were when the chat took
   place (`ChatConversation.contact_consent`, `cookie_consent`, `geolocation_permission`).
   A record that carries no such flag (calls) never meets a `needs`;
2. the consent tracker (the faust table fed from `cs.consent.v1`) holds no withdrawal of
   it, for any subject key of the record, at or after the record's policy time field
   (`started_at` of a chat). A withdrawal covers everything collected before it; a
   record collected after it carries a fresh consent of its own and is kept.
Otherwise the field is set to null and listed in `stripped` as `field:reason`:
`no_contact_consent`, `no_cookie_functional`, `no_cookie_analytics`,
`no_geolocation_permission` (not given with the record) or `consent_withdrawn`
(withdrawn later). Identifiers are normalised after enforcement; a phone number that
cannot be read as E.164 is removed as `invalid_phone`, since it could not be found by an
erasure request. Only identifiers that survive give the row its subject keys.

Timing (an event before the consent event it depends on): records never wait. A chat
is judged by the consent it captured, and a withdrawal that arrives later (or is
processed after the chat, from another topic or partition) is handled by the contract
below, so both orders end with the same stored data.

Withdrawal contract with the ClickHouse sink (`cs.consent.enriched.v1`): every
ConsentLedgerRecord states the consent in force from its `event_time` on. For each
consent it denies, the sink clears (sets to null and appends `field:consent_withdrawn`
to `stripped`) every policy field with that `needs` in the rows carrying any of the
ledger row's `subject_keys` whose policy time field is <= `event_time`:
- kind CONSENT, purpose CONTACT_DETAILS, status WITHDRAWN denies `contact_consent`;
- kind COOKIE denies `cookie.functional` / `cookie.analytics` when `cookie_functional` /
  `cookie_analytics` is false, and `geolocation` when `geolocation_permission` is false.
Fields that are already null stay null, so applying a row twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.policy import FieldRule, RecordPolicy
from streams.consent_state import EMPTY, SubjectConsent

CONSENT_WITHDRAWN = "consent_withdrawn"
INVALID_PHONE = "invalid_phone"
_NOT_GIVEN = {
    "contact_consent": "no_contact_consent",
    "cookie.functional": "no_cookie_functional",
    "cookie.analytics": "no_cookie_analytics",
    "geolocation": "no_geolocation_permission",
}


def not_given_reason(need: str) -> str:
    return _NOT_GIVEN.get(need) or "no_" + need.replace(".", "_")


@dataclass(frozen=True)
class Strip:
    """One field removed from one row, and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}:{self.reason}"


@dataclass(frozen=True)
class ConsentInForce:
    """The consents that bear on one record."""

    captured: Mapping[str, bool]
    tracked: SubjectConsent = EMPTY
    collected_at: int = 0  # epoch ms of the record's policy time field

    def reason_against(self, need: str) -> str | None:
        """None when `need` is met, else why not."""
        if not self.captured.get(need, False):
            return not_given_reason(need)
        if self.tracked.withdrawn_since(need, self.collected_at):
            return CONSENT_WITHDRAWN
        return None

    def holds(self, need: str) -> bool:
        return self.reason_against(need) is None


NO_CONSENT = ConsentInForce(captured={})


def rules_in_force(policy: RecordPolicy, channel: str | None) -> tuple[FieldRule, ...]:
    """The rules of `policy` that need a consent for a record of `channel`."""
    return tuple(rule for rule in policy.fields.values() if rule.needs is not None and rule.applies_to(channel))


def enforce(
    policy: RecordPolicy,
    row: Mapping[str, Any],
    *,
    channel: str | None,
    consent: ConsentInForce,
    rules: Sequence[FieldRule] | None = None,
) -> tuple[dict[str, Any], list[Strip]]:
    """`row` without the fields whose needs are unmet, and the list of what was removed.

    `rules` may pass `rules_in_force(policy, channel)` computed once for many rows."""
    out = dict(row)
    stripped: list[Strip] = []
    for rule in rules_in_force(policy, channel) if rules is None else rules:
        if out.get(rule.name) is None:
            continue
        reason = consent.reason_against(rule.needs)  # type: ignore[arg-type]
        if reason is not None:
            out[rule.name] = None
            stripped.append(Strip(rule.name, reason))
    return out, stripped
