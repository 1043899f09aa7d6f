"""Raw ContactFormSubmitted events for the tests: one person's submission with every
field set and both consents given, so a test overrides only what it is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def form_event(submission_id: str = "form-1", *, at: datetime = T0, **overrides: Any) -> dict[str, Any]:
    """A contact form of Maija Meikäläinen (email and a typed Finnish mobile number) sent at
    `at`, with the form's contact-details and marketing consents given."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_time": at,
        "produced_at": at + timedelta(seconds=1),
        "source_system": "web-forms",
        "schema_version": 1,
        "submission_id": submission_id,
        "form_name": "yhteydenotto",
        "submitted_at": at,
        "name": "Maija Meikäläinen",
        "email": "Maija.Meikalainen@Example.FI",
        "phone": "040 123 4567",
        "company_name": "Meikäläinen Oy",
        "message": "Tarvitsisimme kolme varastotyöntekijää, soittaisitteko?",
        "page_url": "https://www.henkilostopalvelu.example/ota-yhteytta",
        "contact_consent": True,
        "contact_consent_text_id": "form-contact-details-v3-fi",
        "marketing_consent": True,
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
    }
    event.update(overrides)
    return event
