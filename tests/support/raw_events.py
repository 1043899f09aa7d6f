"""Raw input events for the streams stage's pure tests: one subject's chat, call and
recording with fixed ids and times, every field that matters set, so a test overrides only
what it is about. (The streams-worker tests build many subjects' traffic in
`streams_traffic`.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.schemas import default_catalog

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
EVENT_ID = "5d3c7a3e-2f59-4b0e-8a5e-0c1f6d2b7a90"

# Real user agents and what a person reading them would say.
USER_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ("Chrome 124", "Windows", "computer"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        ("Mobile Safari 17", "iOS", "phone"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        ("Mobile Safari 16", "iOS", "tablet"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Mobile Safari/537.36",
        ("Chrome Mobile 123", "Android", "phone"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36",
        ("Chrome 122", "Android", "tablet"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        ("Safari 17", "Mac OS X", "computer"),
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ("Firefox 125", "Ubuntu", "computer"),
    ),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", ("Googlebot 2", None, None)),
    ("", (None, None, None)),
    ("not a browser at all", (None, None, None)),
]


def envelope(**fields: Any) -> dict[str, Any]:
    """The fields every raw event carries (one fixed event id, at T0, from the PBX), and `fields`."""
    return {
        "event_id": EVENT_ID,
        "event_time": T0,
        "produced_at": T0,
        "source_system": "pbx",
        "schema_version": 1,
        **fields,
    }


def cdr_event(**overrides: Any) -> dict[str, Any]:
    """An answered inbound CallDetailRecord of "040 123 4567" at T0, and `overrides`."""
    return (
        envelope(
            call_id="call-1",
            direction="INBOUND",
            caller_number="040 123 4567",
            service_number="+358201234567",
            started_at=T0,
            answered_at=T0 + timedelta(seconds=20),
            ended_at=T0 + timedelta(minutes=3),
            answered_by_number="1001",
            answered_by_user="agent.anna",
        )
        | overrides
    )


def recording_event(**overrides: Any) -> dict[str, Any]:
    """The CallRecording of `cdr_event`'s call, from its answer to its end, the notice
    played before it; and `overrides`."""
    call = cdr_event()
    recording = {
        "recording_id": "rec-1",
        "call_id": call["call_id"],
        "caller_number": call["caller_number"],
        "recording_uri": "s3://recordings/rec-1.opus",
        "notice_played_at": T0 + timedelta(seconds=5),
        "recording_started_at": call["answered_at"],
        "recording_ended_at": call["ended_at"],
    }
    return envelope(**recording) | overrides


def chat_event(**overrides: Any) -> dict[str, Any]:
    """A web ChatConversation of Maija (visitor v-1) with every consent given and no
    messages; every other field None, and `overrides`."""
    started = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    chat: dict[str, Any] = dict.fromkeys(default_catalog().get("ChatConversation").field_names)
    chat |= {
        "event_id": "0b7d1c2e-6f1a-4c1e-9a51-1f0c3d2b9e11",
        "event_time": started + timedelta(minutes=10),
        "produced_at": started + timedelta(minutes=10),
        "source_system": "web-chat",
        "schema_version": 1,
        "conversation_id": "conv-1",
        "channel": "WEB",
        "started_at": started,
        "visitor_id": "v-1",
        "name": "Maija Meikäläinen",
        "email": "maija@example.fi",
        "phone": "040 123 4567",
        "contact_consent": True,
        "cookie_consent": {"functional": True, "analytics": True, "marketing": False},
        "geolocation_permission": True,
        "latitude": 61.49,
        "longitude": 23.76,
        "messages": [],
    }
    return chat | overrides
