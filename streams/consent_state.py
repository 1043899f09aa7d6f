"""What the consent tracker knows about one subject key, and how a change updates it.

Pure data: `SubjectConsent` is the value of the faust table `consent` (keyed by subject
key, stored as bytes: `to_stored`/`from_stored`), `apply` folds one `ConsentChange` into it.

Consents are named by the policy's `needs` (`contact_consent`, `cookie.functional`,
`cookie.analytics`, `geolocation`) plus `cookie.marketing`, `call_recording` and
`service_development`, which no stored field needs today but the ledger keeps.

The state is a merge of facts, so the order in which events arrive does not matter:
- `current[name]` is the latest statement about a consent (last writer wins by event
  time; on a tie a withdrawal wins);
- `withdrawn_at[name]` is the latest time the consent was withdrawn or refused. Data
  collected at or before that time may no longer be kept on that consent; data
  collected after it rests on a fresh consent (the one captured with that data);
- `flags` holds the Art. 18/21 flags `restricted` and `objected` (set by the
  data-subject request stage), last writer wins by time; on a tie the flag that is set wins.
`apply` is idempotent, commutative and associative (property-tested), which is what
makes replaying the changelog, reprocessing after a crash and out-of-order topics safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from pipeline.epoch_millis import from_millis as from_millis  # re-exported for the streams modules
from pipeline.epoch_millis import to_millis

CONTACT = "contact_consent"
COOKIE_FUNCTIONAL = "cookie.functional"
COOKIE_ANALYTICS = "cookie.analytics"
COOKIE_MARKETING = "cookie.marketing"
GEOLOCATION = "geolocation"

# ConsentChanged.purpose -> consent name. CONTACT_DETAILS is the separate consent the
# policy calls `contact_consent`; UNKNOWN (a purpose newer than this reader) has no name
# and changes no state (the ledger still records it).
PURPOSE_CONSENT = MappingProxyType(
    {
        "CONTACT_DETAILS": CONTACT,
        "CALL_RECORDING": "call_recording",
        "SERVICE_DEVELOPMENT": "service_development",
    }
)
COOKIE_CATEGORIES = MappingProxyType(
    {"functional": COOKIE_FUNCTIONAL, "analytics": COOKIE_ANALYTICS, "marketing": COOKIE_MARKETING}
)


@dataclass(frozen=True)
class ConsentStatement:
    """The latest thing said about one consent or flag, and when (epoch ms)."""

    value: bool
    at: int

    def supersedes(self, other: ConsentStatement | None, *, strict: bool) -> bool:
        """Newer than `other`; at the same moment the `strict` value wins."""
        if other is None or self.at > other.at:
            return True
        return self.at == other.at and self.value is strict and other.value is not strict


RESTRICTED = "restricted"
OBJECTED = "objected"


@dataclass(frozen=True)
class ConsentChange:
    """What one event says: consents given (True) or withdrawn (False), or Art. 18/21 flags."""

    at: int
    statements: Mapping[str, bool] = field(default_factory=dict)
    flags: Mapping[str, bool] = field(default_factory=dict)

    @classmethod
    def from_consent_changed(cls, event: Mapping[str, Any]) -> ConsentChange:
        name = PURPOSE_CONSENT.get(event["purpose"])
        statements = {name: event["status"] == "GIVEN"} if name else {}
        return cls(at=to_millis(event["event_time"]), statements=statements)

    @classmethod
    def from_cookie_consent_changed(cls, event: Mapping[str, Any]) -> ConsentChange:
        cookies = event["cookie_consent"]
        statements = {name: bool(cookies[category]) for category, name in COOKIE_CATEGORIES.items()}
        statements[GEOLOCATION] = bool(event["geolocation_permission"])
        return cls(at=to_millis(event["event_time"]), statements=statements)


@dataclass(frozen=True)
class SubjectConsent:
    current: Mapping[str, ConsentStatement] = field(default_factory=dict)
    withdrawn_at: Mapping[str, int] = field(default_factory=dict)
    flags: Mapping[str, ConsentStatement] = field(default_factory=dict)

    @property
    def restricted(self) -> bool:
        flag = self.flags.get(RESTRICTED)
        return flag is not None and flag.value

    @property
    def objected(self) -> bool:
        flag = self.flags.get(OBJECTED)
        return flag is not None and flag.value

    def withdrawn_since(self, name: str, moment: int) -> bool:
        """Whether `name` was withdrawn at or after `moment` (epoch ms)."""
        withdrawn = self.withdrawn_at.get(name)
        return withdrawn is not None and withdrawn >= moment

    def to_json(self) -> dict[str, Any]:
        return {
            "current": {name: [s.value, s.at] for name, s in sorted(self.current.items())},
            "withdrawn_at": dict(sorted(self.withdrawn_at.items())),
            "flags": {name: [s.value, s.at] for name, s in sorted(self.flags.items())},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> SubjectConsent:
        if not raw:
            return EMPTY
        return cls(
            current={name: ConsentStatement(bool(v), int(at)) for name, (v, at) in raw.get("current", {}).items()},
            withdrawn_at={name: int(at) for name, at in raw.get("withdrawn_at", {}).items()},
            flags={name: ConsentStatement(bool(v), int(at)) for name, (v, at) in raw.get("flags", {}).items()},
        )


EMPTY = SubjectConsent()


def of_change(change: ConsentChange) -> SubjectConsent:
    """The state that holds nothing but what `change` says."""
    return SubjectConsent(
        current={name: ConsentStatement(given, change.at) for name, given in change.statements.items()},
        withdrawn_at={name: change.at for name, given in change.statements.items() if not given},
        flags={name: ConsentStatement(value, change.at) for name, value in change.flags.items()},
    )


def _latest(
    a: Mapping[str, ConsentStatement], b: Mapping[str, ConsentStatement], *, strict: bool
) -> Mapping[str, ConsentStatement]:
    out = dict(a)
    for name, statement in b.items():
        if statement.supersedes(out.get(name), strict=strict):
            out[name] = statement
    return out


def join(a: SubjectConsent, b: SubjectConsent) -> SubjectConsent:
    """Everything `a` and `b` know together (a semilattice join: order never matters)."""
    if b is EMPTY or b == a:
        return a
    if a is EMPTY:
        return b
    withdrawn = dict(a.withdrawn_at)
    for name, at in b.withdrawn_at.items():
        withdrawn[name] = max(at, withdrawn.get(name, at))
    return SubjectConsent(
        current=_latest(a.current, b.current, strict=False),  # a tie: the withdrawal wins
        withdrawn_at=withdrawn,
        flags=_latest(a.flags, b.flags, strict=True),  # a tie: the restriction wins
    )


def apply(state: SubjectConsent, change: ConsentChange) -> SubjectConsent:
    """The state after `change`; the result does not depend on the order of changes."""
    return join(state, of_change(change))


def to_stored(state: SubjectConsent) -> bytes:
    """The consent table's value: `to_json` as compact JSON, byte for byte what faust's
    json codec wrote while the table held decoded values, so older changelogs read the same.
    Raw bytes because each worker also reads its own writes back from the changelog (a
    GlobalTable): bytes cost nothing to take back, JSON cost a decode per write."""
    return json.dumps(state.to_json(), separators=(",", ":")).encode()


@lru_cache(maxsize=4096)
def _parsed(stored: bytes) -> SubjectConsent:
    return SubjectConsent.from_json(json.loads(stored))


def from_stored(stored: bytes | None) -> SubjectConsent:
    """The state a consent table value holds (None: no entry). Parsed values are cached,
    bounded (a subject is looked up again soon after, by its next event); they are frozen."""
    return EMPTY if stored is None else _parsed(stored)


def stored_after(stored: bytes | None, change: ConsentChange) -> bytes | None:
    """A subject key's consent table value (None: no entry) after `change`; None when
    `change` leaves it as it was (nothing to write)."""
    state = from_stored(stored)
    updated = apply(state, change)
    return None if updated == state else to_stored(updated)


def merge(states: Iterable[SubjectConsent]) -> SubjectConsent:
    """One view of several keys of the same subject (e.g. a chat's visitor id and email)."""
    merged = EMPTY
    for state in states:
        merged = join(merged, state)
    return merged
