"""The consent ledger's rows (cs.consent.enriched.v1, key: the first subject key): one
per ConsentChanged, CookieConsentChanged, or withdrawal of every cookie category by a
data-subject request, with the tracker updates each implies. A CONTACT_DETAILS
withdrawal also tombstones the cs.subjects.v1 entries keyed by its email and phone.
Pure: the caller passes the clock and does all I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline import topics
from pipeline.policy import RecordPolicy
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import CONSENT_LEDGER_RECORD
from streams import enrich
from streams.consent_state import COOKIE_CATEGORIES, GEOLOCATION, ConsentChange, to_millis
from streams.exceptions import InvalidEvent
from streams.row_types import KEYED_COLUMNS, PERSON_IDENTIFIERS, ConsentLookup, Outcome, Row, text_or_none


class ConsentLedgerRows:
    """Builds the ledger rows of consent events for the row builder (streams/rows.py)."""

    def __init__(self, keyer: SubjectKeyer, ledger_policy: RecordPolicy) -> None:
        self.keyer = keyer
        self.ledger_policy = ledger_policy

    def _ledger(self, event: Mapping[str, Any], keys: list[str], now: datetime, **values: Any) -> Row:
        row: dict[str, Any] = {
            "event_id": str(event["event_id"]),
            "source_event_id": str(event["event_id"]),
            "subject_keys": keys,
            "event_time": event["event_time"],
            "evidence": text_or_none(event["evidence"]),
            "cookie_functional": False,
            "cookie_analytics": False,
            "cookie_marketing": False,
            "geolocation_permission": False,
            "stripped": [],
            "ingested_at": now,
            **values,
        }
        row["expires_at"] = enrich.expires_at(self.ledger_policy, row)
        return Row(topics.CONSENT_LEDGER.name, keys[0], CONSENT_LEDGER_RECORD, row)

    def consent(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        subject = event["subject"]
        keys = self.keyer.keys_of((KEYED_COLUMNS[name], subject[name]) for name in PERSON_IDENTIFIERS)
        if not keys:
            raise InvalidEvent("ConsentChanged.subject has no usable identifier")
        ledger = self._ledger(
            event, keys, now, kind="CONSENT", purpose=event["purpose"], status=event["status"], channel=event["channel"]
        )
        change = ConsentChange.from_consent_changed(event)
        out = Outcome(rows=[ledger], consent_changes=[(key, change) for key in keys] if change.statements else [])
        if event["purpose"] == "CONTACT_DETAILS" and event["status"] == "WITHDRAWN":
            # Web contact details live in cs.subjects.v1 under the email or phone key.
            for name in ("email", "phone"):
                key = self.keyer.key(KEYED_COLUMNS[name], subject[name])
                if key is not None:
                    out.rows.append(Row(topics.SUBJECTS.name, key, None, None))
        return out

    def cookie_withdrawal(
        self, keys: list[str], *, event_id: str, at: datetime, evidence: str, now: datetime
    ) -> Outcome:
        """Every cookie category and the geolocation permission withdrawn for `keys` at
        `at` (a data-subject request withdrawing all consent): a COOKIE ledger row with
        every flag false, which the sink reads as a withdrawal of each of them."""
        event = {"event_id": event_id, "event_time": at, "evidence": evidence}
        ledger = self._ledger(event, keys, now, kind="COOKIE", purpose="COOKIES", status="WITHDRAWN", channel="DPO")
        names = (*COOKIE_CATEGORIES.values(), GEOLOCATION)
        change = ConsentChange(at=to_millis(at), statements=dict.fromkeys(names, False))
        return Outcome(rows=[ledger], consent_changes=[(key, change) for key in keys])

    def cookie_consent(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        key = self.keyer.key(IdentifierKind.VISITOR_ID, event["visitor_id"])
        if key is None:
            raise InvalidEvent("CookieConsentChanged.visitor_id is empty")
        cookies = event["cookie_consent"]
        flags = {
            "cookie_functional": bool(cookies["functional"]),
            "cookie_analytics": bool(cookies["analytics"]),
            "cookie_marketing": bool(cookies["marketing"]),
            "geolocation_permission": bool(event["geolocation_permission"]),
        }
        ledger = self._ledger(
            event,
            [key],
            now,
            kind="COOKIE",
            purpose="COOKIES",
            status="GIVEN" if any(flags.values()) else "WITHDRAWN",
            channel="WEB",
            **flags,
        )
        return Outcome(rows=[ledger], consent_changes=[(key, ConsentChange.from_cookie_consent_changed(event))])
