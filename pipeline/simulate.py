"""Realistic synthetic traffic for the demo, tests and benchmarks.

`generate(config)` yields upstream events (ChatConversation, CallDetailRecord,
CallRecording, ConsentChanged, CookieConsentChanged) plus a few deliberately malformed
messages, deterministically for a seed. People recur (a pool of Finnish and foreign
persons), so one subject appears in chats, calls and consent changes; event times are
spread over `span_days` so retention has work to do. Nothing here talks to Kafka.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from faker import Faker

from pipeline.schemas import default_catalog
from pipeline.topics import CALL, CHAT, CONSENT

_NS = "cs.records."
CHAT_SCHEMA = _NS + "ChatConversation"
CDR_SCHEMA = _NS + "CallDetailRecord"
RECORDING_SCHEMA = _NS + "CallRecording"
CONSENT_SCHEMA = _NS + "ConsentChanged"
COOKIE_SCHEMA = _NS + "CookieConsentChanged"
MALFORMED = "malformed"


@dataclass(frozen=True)
class Mix:
    """Share of each kind of event (normalised when drawing)."""

    web_chat: float = 0.34
    app_chat: float = 0.14
    call: float = 0.32
    consent: float = 0.09
    cookie_consent: float = 0.09
    malformed: float = 0.02
    # Within kinds:
    web_contact_details: float = 0.7  # a web visitor typed contact details
    web_contact_consent: float = 0.6  # ... and gave the separate consent
    precise_location: float = 0.25  # the widget captured coordinates
    geolocation_permission: float = 0.7  # ... with the permission (else to be stripped)
    call_answered: float = 0.85
    call_recorded: float = 0.4  # answered calls that are recorded
    recording_without_notice: float = 0.06  # recordings whose notice was missing or late
    consent_withdrawal: float = 0.35


@dataclass(frozen=True)
class SimConfig:
    events: int
    seed: int = 1
    span_days: int = 1095
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    people: int | None = None
    mix: Mix = field(default_factory=Mix)

    @property
    def pool_size(self) -> int:
        return self.people or max(20, self.events // 25)


@dataclass(frozen=True)
class SimulatedEvent:
    """One upstream event: a record of `schema`, or raw bytes for a malformed one."""

    schema: str
    topic: str
    record: dict[str, Any] | None = None
    raw: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str
    visitor_id: str
    person_number: str | None
    app_username: str | None
    postal_address: str | None
    job_title: str
    company: str | None


_LOCALES = (("fi_FI", 0.7), ("sv_SE", 0.1), ("en_GB", 0.08), ("et_EE", 0.06), ("de_DE", 0.06))
_FOREIGN_PREFIX = {"sv_SE": "+46 70", "en_GB": "+44 7700", "et_EE": "+372 5", "de_DE": "+49 151"}
_FI_MOBILE = ("040", "041", "044", "045", "046", "050")
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
    "Edg/131.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
)
_NETWORKS = (
    "dsl-hkibng21-54f8a3-12.dhcp.inet.fi",
    "87-92-11-200.bb.dnainternet.fi",
    "mobile-access-5672c1-9.dhcp.inet.fi",
    "a91-152-40-7.elisa-laajakaista.fi",
    "host-212-149-0-1.customer.telia.fi",
    "gw.staffcorp-customer.example.com",
)
_PAGES = ("/", "/tyonhakijoille", "/yrityksille", "/avoimet-tyopaikat", "/mystaff", "/yhteystiedot", "/en/jobs")
_REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://www.linkedin.com/", "https://duunitori.fi/")
_VISITOR_LINES = (
    "Hei, milloin palkka maksetaan?",
    "Miten voin päivittää verokorttini?",
    "Haen kesätöitä, onko paikkoja vapaana?",
    "Hello, I would like to change my shift next week.",
    "En pääse kirjautumaan myStaffiin.",
    "Can you tell me the status of my application?",
    "Tarvitsisimme kolme varastotyöntekijää ensi viikolle.",
)
_AGENT_LINES = (
    "Kiitos viestistäsi, tarkistan asian.",
    "Palkka maksetaan kuukauden 15. päivä.",
    "Could you tell me your personnel number, please?",
    "Lähetin sinulle ohjeet sähköpostiin.",
    "Otan yhteyttä myyntiin ja palaamme asiaan tänään.",
)
_SERVICE_NUMBERS = ("+358201234560", "+358201234561", "+358201234562")
_AGENTS = ("agent.aino", "agent.mikko", "agent.sara", "agent.jonne")


class _Generator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.start = config.now - timedelta(days=config.span_days)
        self.people = [self._person(i) for i in range(config.pool_size)]
        self.workers = [p for p in self.people if p.person_number] or self.people
        catalog = default_catalog()
        self.unknown_fp = b"\xc3\x01" + bytes(self.rng.randrange(256) for _ in range(8))
        self.truncated_base = catalog.get(CDR_SCHEMA).fingerprint
        kinds = ("web_chat", "app_chat", "call", "consent", "cookie_consent", "malformed")
        self.kinds = kinds
        self.weights = [getattr(config.mix, k) for k in kinds]

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _person(self, index: int) -> Person:
        roll, locale = self.rng.random(), "fi_FI"
        for name, share in _LOCALES:
            if roll < share:
                locale = name
                break
            roll -= share
        fake = Faker(locale)
        fake.seed_instance(self.config.seed * 1_000_003 + index)
        first, last = fake.first_name(), fake.last_name()
        ascii_name = f"{first}.{last}".lower().encode("ascii", "ignore").decode() or f"user{index}"
        domain = self.rng.choice(("example.com", "example.fi", "example.org", "example.net"))
        if locale == "fi_FI":
            digits = "".join(str(self.rng.randrange(10)) for _ in range(7))
            phone = f"{self.rng.choice(_FI_MOBILE)} {digits[:3]} {digits[3:]}"
        else:
            digits = "".join(str(self.rng.randrange(10)) for _ in range(6))
            phone = f"{_FOREIGN_PREFIX[locale]} {digits}"
        worker = self.chance(0.4)
        return Person(
            name=f"{first} {last}",
            email=f"{ascii_name}{index}@{domain}",
            phone=phone,
            visitor_id=f"v-{self.rng.getrandbits(64):016x}",
            person_number=f"P{100000 + index}" if worker else None,
            app_username=f"{ascii_name[:12]}{index}" if worker else None,
            postal_address=fake.address().replace("\n", ", ") if worker else None,
            job_title=fake.job()[:60],
            company=fake.company() if self.chance(0.6) else None,
        )

    def moment(self) -> datetime:
        seconds = self.rng.uniform(0, self.config.span_days * 86400)
        return (self.start + timedelta(seconds=seconds)).replace(microsecond=0)

    def envelope(self, when: datetime, source: str) -> dict[str, Any]:
        return {
            "event_id": self.uuid(),
            "event_time": when,
            "produced_at": self.config.now,
            "source_system": source,
            "schema_version": 1,
        }

    def transcript(self, start: datetime) -> list[dict[str, Any]]:
        messages, when = [], start
        for i in range(self.rng.randint(1, 8)):
            when += timedelta(seconds=self.rng.randint(5, 240))
            visitor = i % 2 == 0
            messages.append(
                {
                    "message_id": f"m{i + 1}",
                    "sent_at": when,
                    "sender": "VISITOR" if visitor else "AGENT",
                    "agent_username": None if visitor else self.rng.choice(_AGENTS),
                    "text": self.rng.choice(_VISITOR_LINES if visitor else _AGENT_LINES),
                }
            )
        return messages

    def chat(self, app: bool) -> dict[str, Any]:
        mix = self.config.mix
        person = self.rng.choice(self.workers if app else self.people)
        start = self.moment()
        messages = self.transcript(start)
        ended = messages[-1]["sent_at"] + timedelta(seconds=self.rng.randint(10, 120))
        record: dict[str, Any] = {
            **self.envelope(ended, "mystaff-chat" if app else "web-chat"),
            "conversation_id": f"chat-{self.uuid()}",
            "channel": "MYSTAFF_APP" if app else "WEB",
            "started_at": start,
            "ended_at": ended,
            "visitor_id": None,
            "person_number": None,
            "app_username": None,
            "app_name": None,
            "app_version": None,
            "name": None,
            "email": None,
            "phone": None,
            "postal_address": None,
            "job_title": None,
            "company_name": None,
            "contact_consent": False,
            "contact_consent_text_id": None,
            "cookie_consent": {"functional": False, "analytics": False, "marketing": False},
            "geolocation_permission": False,
            "user_agent": self.rng.choice(_USER_AGENTS),
            "ip_address": f"{self.rng.randint(80, 95)}.{self.rng.randrange(256)}.{self.rng.randrange(256)}."
            f"{self.rng.randint(1, 254)}",
            "network_name": None,
            "visit_count": None,
            "chat_count": None,
            "referrer_url": None,
            "page_url": None,
            "visit_duration_s": None,
            "latitude": None,
            "longitude": None,
            "messages": messages,
        }
        if app:
            record.update(
                person_number=person.person_number,
                app_username=person.app_username,
                app_name="myStaff",
                app_version=self.rng.choice(("4.12.0", "4.13.1", "5.0.2")),
                name=person.name,
                email=person.email,
                phone=person.phone,
                postal_address=person.postal_address,
            )
            return record
        record["visitor_id"] = person.visitor_id
        if self.chance(mix.web_contact_details):
            record.update(name=person.name, email=person.email, job_title=person.job_title, company_name=person.company)
            if self.chance(0.5):
                record["phone"] = person.phone
            if self.chance(mix.web_contact_consent):
                record.update(contact_consent=True, contact_consent_text_id="chat-consent-v3")
        cookies = {"functional": self.chance(0.6), "analytics": self.chance(0.5), "marketing": self.chance(0.3)}
        record["cookie_consent"] = cookies
        # The widget reports what it saw; enforcement downstream decides what may be kept.
        record.update(
            network_name=self.rng.choice(_NETWORKS),
            visit_count=self.rng.randint(1, 30),
            chat_count=self.rng.randint(1, 5),
            referrer_url=self.rng.choice(_REFERRERS),
            page_url="https://www.example-staffing.fi" + self.rng.choice(_PAGES),
            visit_duration_s=self.rng.randint(10, 3600),
        )
        if self.chance(mix.precise_location):
            record.update(
                latitude=round(self.rng.uniform(60.1, 65.0), 5),
                longitude=round(self.rng.uniform(21.5, 29.5), 5),
                geolocation_permission=self.chance(mix.geolocation_permission),
            )
        return record

    def call(self) -> Iterator[SimulatedEvent]:
        mix = self.config.mix
        person = self.rng.choice(self.people)
        start = self.moment()
        answered = self.chance(mix.call_answered)
        answered_at = start + timedelta(seconds=self.rng.randint(3, 120)) if answered else None
        ended = (answered_at or start) + timedelta(seconds=self.rng.randint(20, 1800))
        call_id = f"call-{self.uuid()}"
        cdr = {
            **self.envelope(ended, "pbx"),
            "call_id": call_id,
            "direction": "INBOUND",
            "caller_number": person.phone,
            "service_number": self.rng.choice(_SERVICE_NUMBERS),
            "started_at": start,
            "answered_at": answered_at,
            "ended_at": ended,
            "answered_by_number": f"+35820123{self.rng.randint(4000, 4999)}" if answered else None,
            "answered_by_user": self.rng.choice(_AGENTS) if answered else None,
        }
        yield SimulatedEvent(CDR_SCHEMA, CALL.name, cdr)
        if answered_at is not None and self.chance(mix.call_recorded):
            notice: datetime | None = answered_at - timedelta(seconds=self.rng.randint(5, 15))
            if self.chance(mix.recording_without_notice):
                notice = None if self.chance(0.5) else answered_at + timedelta(seconds=30)
            recording = {
                **self.envelope(ended, "recorder"),
                "recording_id": f"rec-{self.uuid()}",
                "call_id": call_id,
                "caller_number": person.phone,
                "recording_uri": f"s3://cs-recordings/{call_id}.opus",
                "notice_played_at": notice,
                "recording_started_at": answered_at,
                "recording_ended_at": ended,
            }
            yield SimulatedEvent(RECORDING_SCHEMA, CALL.name, recording)

    def consent(self) -> dict[str, Any]:
        person = self.rng.choice(self.people)
        when = self.moment()
        subject = {"email": person.email, "phone": None, "person_number": None, "app_username": None,
                   "visitor_id": person.visitor_id if self.chance(0.5) else None}
        withdrawn = self.chance(self.config.mix.consent_withdrawal)
        return {
            **self.envelope(when, "consent-service"),
            "subject": subject,
            "purpose": self.rng.choice(("CONTACT_DETAILS", "CONTACT_DETAILS", "CALL_RECORDING", "SERVICE_DEVELOPMENT")),
            "status": "WITHDRAWN" if withdrawn else "GIVEN",
            "channel": self.rng.choice(("WEB_CHAT", "MYSTAFF_APP", "PHONE", "CONTACT_FORM")),
            "evidence": "consent-text-v3",
        }

    def cookie(self) -> dict[str, Any]:
        person = self.rng.choice(self.people)
        return {
            **self.envelope(self.moment(), "cookie-banner"),
            "visitor_id": person.visitor_id,
            "cookie_consent": {
                "functional": self.chance(0.6),
                "analytics": self.chance(0.5),
                "marketing": self.chance(0.3),
            },
            "geolocation_permission": self.chance(0.3),
            "evidence": "banner-v7",
        }

    def malformed(self) -> SimulatedEvent:
        kind = self.rng.randrange(3)
        topic = self.rng.choice((CHAT.name, CALL.name, CONSENT.name))
        if kind == 0:
            raw = b'{"not": "avro", "n": ' + str(self.rng.randrange(1000)).encode() + b"}"
        elif kind == 1:
            raw = b"\xc3\x01" + self.truncated_base + b"\x48"  # a header and a cut body
        else:
            raw = self.unknown_fp + b"\x02\x04ab"
        return SimulatedEvent(MALFORMED, topic, raw=raw, key=f"bad-{self.uuid()}".encode())

    def events(self) -> Iterator[SimulatedEvent]:
        produced = 0
        while produced < self.config.events:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            batch: list[SimulatedEvent]
            if kind == "web_chat":
                batch = [SimulatedEvent(CHAT_SCHEMA, CHAT.name, self.chat(app=False))]
            elif kind == "app_chat":
                batch = [SimulatedEvent(CHAT_SCHEMA, CHAT.name, self.chat(app=True))]
            elif kind == "call":
                batch = list(self.call())
            elif kind == "consent":
                batch = [SimulatedEvent(CONSENT_SCHEMA, CONSENT.name, self.consent())]
            elif kind == "cookie_consent":
                batch = [SimulatedEvent(COOKIE_SCHEMA, CONSENT.name, self.cookie())]
            else:
                batch = [self.malformed()]
            for event in batch[: self.config.events - produced]:
                produced += 1
                yield event


def generate(config: SimConfig) -> Iterator[SimulatedEvent]:
    """The events of one simulation run, deterministic for `config.seed` and `config.now`."""
    return _Generator(config).events()


def summarise(events: list[SimulatedEvent]) -> Counter[str]:
    return Counter(e.schema.removeprefix(_NS) for e in events)
