"""The streams-worker tests' traffic: raw events of many subjects (ids from the caller,
so each test's are its own) and a producer that remembers where each one landed.

Times are fixed (T0); every chat has all its fields set, consents and cookies given unless
a test overrides them. (The pure streams tests use the single subject of `raw_events`.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from pipeline.serde import AvroSerializer
from tests.support.raw_events import USER_AGENTS as PARSED_USER_AGENTS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# User agents (a Windows Chrome, an iPhone Safari) and a network name whose derived fields are all non-null.
USER_AGENTS = tuple(agent for agent, _ in PARSED_USER_AGENTS[:2])
NETWORK_NAME = "dsl-213-216-12-9.elisa-laajakaista.fi"
RECORDING_START = T0 + timedelta(seconds=15)
CHAT_FIELDS = AvroSerializer("ChatConversation").schema.field_names


@dataclass
class Sent:
    """A produced message; its partition and offset are set once it is delivered."""

    topic: str
    key: bytes
    value: bytes
    partition: int = -1
    offset: int = -1


class Traffic:
    """Produces raw events and remembers where each one landed."""

    def __init__(self, bootstrap: str, tag: str) -> None:
        self.tag = tag
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.sent: dict[str, Sent] = {}  # by label

    def send(
        self, label: str, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Produce `value` keyed `key`, remembered under `label`."""
        record = Sent(topic, key.encode(), value)
        self.sent[label] = record

        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            record.partition, record.offset = msg.partition(), msg.offset()

        self.producer.produce(topic, key=record.key, value=value, headers=headers, on_delivery=delivered)

    def avro(self, label: str, topic: str, key: str, schema: str, value: dict[str, Any]) -> None:
        """Produce `value` encoded as `schema`, with a trace-id header carrying the test's tag."""
        self.send(label, topic, key, AvroSerializer(schema)(value), headers=[("trace-id", self.tag.encode())])

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def raw_envelope(source: str, moment: datetime) -> dict[str, Any]:
    """The fields every raw event carries: a fresh event id, `moment`, `source`."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": moment,
        "produced_at": moment,
        "source_system": source,
        "schema_version": 1,
    }


def web_chat(cid: str, *, visitor: str, email: str, started: datetime = T0, **overrides: Any) -> dict[str, Any]:
    """A web chat with every field set; consents and cookies accepted unless overridden."""
    chat = {
        **raw_envelope("web-chat", started + timedelta(minutes=15)),
        "conversation_id": cid,
        "channel": "WEB",
        "started_at": started,
        "ended_at": started + timedelta(minutes=15),
        "visitor_id": visitor,
        "name": "Maija Meikäläinen",
        "email": email,
        "phone": f"+35840{int(cid.rsplit('-', 1)[-1]):07d}",
        "job_title": "HR manager",
        "company_name": "Asiakas Oy",
        "contact_consent": True,
        "contact_consent_text_id": "contact-v3",
        "cookie_consent": {"functional": True, "analytics": True, "marketing": False},
        "geolocation_permission": True,
        "user_agent": USER_AGENTS[0],
        "ip_address": "192.0.2.44",
        "network_name": NETWORK_NAME,
        "visit_count": 4,
        "chat_count": 1,
        "referrer_url": "https://www.example.fi/tyopaikat",
        "page_url": "https://www.example.fi/yhteystiedot",
        "visit_duration_s": 311,
        "latitude": 61.4978,
        "longitude": 23.761,
        "messages": [
            {"message_id": "m1", "sent_at": started, "sender": "VISITOR", "agent_username": None, "text": "Hei!"},
            {"message_id": "m2", "sent_at": started, "sender": "AGENT", "agent_username": "agent.anna", "text": "Hei"},
        ],
    }
    return {name: None for name in CHAT_FIELDS} | chat | overrides


def mystaff_chat(cid: str, *, person_number: str) -> dict[str, Any]:
    """A chat from the myStaff app: identified by login, no cookie-derived data."""
    app_fields = {"person_number": person_number, "app_username": person_number.lower(), "app_name": "myStaff"}
    app_fields |= {"app_version": "5.2.0", "postal_address": "Hämeenkatu 1, Tampere"}
    web_only = ["visitor_id", "job_title", "company_name", "user_agent", "ip_address", "network_name", "visit_count"]
    web_only += ["chat_count", "referrer_url", "page_url", "visit_duration_s", "latitude", "longitude"]
    chat = web_chat(cid, visitor="", email=f"{person_number.lower()}@staff.example.fi", channel="MYSTAFF_APP")
    chat.update(app_fields, contact_consent=False, geolocation_permission=False)
    chat["cookie_consent"] = {"functional": False, "analytics": False, "marketing": False}
    return chat | dict.fromkeys(web_only)


def consent_changed(moment: datetime, status: str, evidence: str | None, **identifiers: str | None) -> dict[str, Any]:
    """A ConsentChanged of CONTACT_DETAILS on the web chat for the subject of `identifiers`."""
    subject = dict.fromkeys(("email", "phone", "person_number", "app_username", "visitor_id")) | identifiers
    return {
        **raw_envelope("web-chat", moment),
        "subject": subject,
        "purpose": "CONTACT_DETAILS",
        "status": status,
        "channel": "WEB_CHAT",
        "evidence": evidence,
    }


def call_detail(call_id: str, caller: str, **overrides: Any) -> dict[str, Any]:
    """An answered inbound CallDetailRecord of `caller`, five minutes from T0."""
    return {
        **raw_envelope("pbx", T0 + timedelta(minutes=5)),
        "call_id": call_id,
        "direction": "INBOUND",
        "caller_number": caller,
        "service_number": "+358201234567",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=15),
        "ended_at": T0 + timedelta(minutes=5),
        "answered_by_number": "1001",
        "answered_by_user": "agent.anna",
    } | overrides


def call_recording(recording_id: str, call_id: str, notice: datetime | None) -> dict[str, Any]:
    """A CallRecording of `call_id` that starts at RECORDING_START, its notice played at `notice`."""
    return {
        **raw_envelope("pbx", T0 + timedelta(minutes=5)),
        "recording_id": recording_id,
        "call_id": call_id,
        "caller_number": "+358500000001",
        "recording_uri": f"s3://recordings/{recording_id}.opus",
        "notice_played_at": notice,
        "recording_started_at": RECORDING_START,
        "recording_ended_at": T0 + timedelta(minutes=5),
    }
