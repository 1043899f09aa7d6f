"""Realistic synthetic upstream traffic for the demo, the tests and the benchmarks.

`generate(config)` is a pure generator of `SimulatedEvent`s, deterministic for a seed and
a fixed `now` (same config -> the same events, ids and times included): web chats with
and without the separate contact-details consent, every cookie-banner combination,
precise locations with and without the geolocation permission, myStaff app chats with
personnel numbers and postal addresses, calls answered or not, recordings (a few without
a notice or with the notice after recording started), consent and cookie-consent
changes, and a few deliberately malformed messages (raw bytes) for the dead-letter path.

People recur: a pool of Finnish and foreign persons (faker, fi_FI and a few other
locales) and anonymous web visitors is built once per run, so one subject appears in
chats, calls and consent changes, as an erasure test needs. Event times are spread
evenly over the last `span_days` (oldest first), so retention has work to do;
`produced_at` follows a few seconds later, as if history were replayed, while Kafka's own
message timestamps stay the wall clock of the run (so topic retention does not drop them).

Which share of events is of which kind, and how often each case that enforcement must
catch occurs, lives in `TrafficMix`. `run(events, sink)` is the send loop shared by the
Kafka producer and the dry run; the CLI (`records simulate`) composes them.
"""

from __future__ import annotations

import json
import random
import struct
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import phonenumbers
from faker import Faker

from pipeline.avro_json import to_jsonable
from pipeline.event_producer import EventEncoder
from pipeline.exceptions import ConfigError
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.topics import CALL, CHAT, CONSENT

_NS = "cs.records."
CHAT_CONVERSATION = _NS + "ChatConversation"
CALL_DETAIL_RECORD = _NS + "CallDetailRecord"
CALL_RECORDING = _NS + "CallRecording"
CONSENT_CHANGED = _NS + "ConsentChanged"
COOKIE_CONSENT_CHANGED = _NS + "CookieConsentChanged"

# Event kinds, their record type (None: raw bytes) and topic.
WEB_CHAT, APP_CHAT, CALL_KIND, RECORDING, CONSENT_KIND, COOKIE_CONSENT, MALFORMED = (
    "web_chat",
    "app_chat",
    "call",
    "recording",
    "consent",
    "cookie_consent",
    "malformed",
)
KINDS: Mapping[str, tuple[str | None, str | None]] = {
    WEB_CHAT: (CHAT_CONVERSATION, CHAT.name),
    APP_CHAT: (CHAT_CONVERSATION, CHAT.name),
    CALL_KIND: (CALL_DETAIL_RECORD, CALL.name),
    RECORDING: (CALL_RECORDING, CALL.name),
    CONSENT_KIND: (CONSENT_CHANGED, CONSENT.name),
    COOKIE_CONSENT: (COOKIE_CONSENT_CHANGED, CONSENT.name),
    MALFORMED: (None, None),  # any of the three raw topics
}
RAW_TOPICS = (CHAT.name, CALL.name, CONSENT.name)

# Malformed messages, each a different failure of the consumer's decoder.
NOT_AVRO = "not_avro"  # JSON or text where Avro was expected
TRUNCATED = "truncated"  # a single-object message cut in the middle of its body
UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # single-object framing, a writer schema nobody knows
UNREGISTERED_SCHEMA_ID = "unregistered_schema_id"  # Confluent framing, a schema id no registry has
MALFORMED_KINDS = (NOT_AVRO, TRUNCATED, UNKNOWN_FINGERPRINT, UNREGISTERED_SCHEMA_ID)
MALFORMED_HEADER = "sim.malformed"  # header naming the malformation, so a DLQ check can count them

# Tags: cases the streams stage must catch (strip or quarantine), counted per run.
DETAILS_WITHOUT_CONSENT = "contact_details_without_consent"
COOKIE_DATA_WITHOUT_CONSENT = "cookie_data_without_analytics_consent"
LOCATION_WITHOUT_PERMISSION = "location_without_geolocation_permission"
RECORDING_WITHOUT_NOTICE = "recording_without_notice"
NOTICE_AFTER_START = "recording_notice_after_start"
WITHHELD_CALLER = "withheld_caller_number"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits of a UUID
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


@dataclass(frozen=True)
class TrafficMix:
    """The proportions of a simulation run, in one place.

    The first block are shares of the generated events (they sum to 1); the rest are
    probabilities within a kind, including how often upstream sends something the
    pipeline must strip or quarantine.
    """

    web_chat: float = 0.32
    app_chat: float = 0.14
    call: float = 0.28
    recording: float = 0.08  # each follows an answered inbound call
    consent: float = 0.07
    cookie_consent: float = 0.10
    malformed: float = 0.01
    # web chats
    known_web_visitor: float = 0.6  # a recurring person (else an anonymous visitor)
    contact_consent: float = 0.45  # the separate consent was given in the chat
    details_with_consent: float = 0.85  # ... and contact details were entered
    details_without_consent: float = 0.2  # details typed although consent was refused: to be stripped
    cookie_data_without_consent: float = 0.1  # cookie-derived fields sent without analytics consent
    geolocation_permission: float = 0.2
    location_with_permission: float = 0.8  # coordinates captured when permitted
    location_without_permission: float = 0.05  # coordinates sent anyway: to be stripped
    # calls
    answered: float = 0.85
    outbound: float = 0.05
    known_caller: float = 0.75  # a recurring person (else a one-off number)
    withheld_caller: float = 0.01
    recording_notice_missing: float = 0.02  # of recordings: to be quarantined
    recording_notice_late: float = 0.02  # of recordings: notice after recording started
    # consent changes
    consent_withdrawn: float = 0.3

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"TrafficMix.{name} must be between 0 and 1")
        total = sum(self.shares().values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"the event shares of TrafficMix must sum to 1 (they sum to {total:.4f})")
        if self.recording > 0 and self.recording_probability() > 1.0:
            raise ConfigError("TrafficMix.recording is larger than the answered inbound calls allow")
        if self.recording_notice_missing + self.recording_notice_late > 1.0:
            raise ConfigError("TrafficMix: recording notice violations exceed all recordings")

    def shares(self) -> dict[str, float]:
        """Share of events per kind."""
        return {
            WEB_CHAT: self.web_chat,
            APP_CHAT: self.app_chat,
            CALL_KIND: self.call,
            RECORDING: self.recording,
            CONSENT_KIND: self.consent,
            COOKIE_CONSENT: self.cookie_consent,
            MALFORMED: self.malformed,
        }

    def recording_probability(self) -> float:
        """Probability that an answered inbound call is recorded, so recordings get their share."""
        recordable = self.call * self.answered * (1.0 - self.outbound)
        return self.recording / recordable if recordable else 0.0

    def schema_shares(self) -> dict[str, float]:
        """Expected share of events per record type ('malformed' for raw bytes)."""
        out: dict[str, float] = {}
        for kind, share in self.shares().items():
            schema = KINDS[kind][0] or MALFORMED
            out[schema] = out.get(schema, 0.0) + share
        return out


def _default_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class SimulationConfig:
    events: int
    seed: int = 1
    now: datetime = field(default_factory=_default_now)
    span_days: float = 1095.0
    people: int | None = None  # size of the recurring-person pool (None: from `events`)
    mix: TrafficMix = field(default_factory=TrafficMix)

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ConfigError("the number of events must not be negative")
        if self.span_days <= 0.1:
            raise ConfigError("the time span must be more than 0.1 days")
        if self.now.tzinfo is None:
            raise ConfigError("'now' must carry a time zone")
        if self.people is not None and self.people < 1:
            raise ConfigError("the person pool needs at least one person")

    @property
    def pool_size(self) -> int:
        """Recurring people: about one per 20 events, between 50 and 5,000."""
        return self.people if self.people is not None else min(5000, max(50, self.events // 20))

    @property
    def window(self) -> tuple[datetime, datetime]:
        """Every timestamp of every event lies in this interval."""
        return self.now - timedelta(days=self.span_days), self.now


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One generated message: a record of `schema_name`, or `raw` bytes when malformed."""

    kind: str
    topic: str
    schema_name: str | None
    record: dict[str, Any] | None
    raw: bytes | None = None
    key: str | None = None  # only for raw bytes; records get theirs from event_producer.event_key
    headers: tuple[tuple[str, bytes], ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def malformed(self) -> bool:
        return self.schema_name is None


# ---- the world the events come from ---------------------------------------------------


def _lines(block: str) -> tuple[str, ...]:
    """A vocabulary written one item per line."""
    return tuple(line.strip() for line in block.strip().splitlines() if line.strip())


# locale, weight, (phone region, weight) choices, free-mail domains, chat language
_LOCALES: tuple[tuple[str, float, tuple[tuple[str, float], ...], tuple[str, ...], str], ...] = (
    ("fi_FI", 0.66, (("FI", 0.98), ("SE", 0.02)), ("gmail.com", "hotmail.com", "luukku.com", "suomi24.fi"), "fi"),
    ("sv_SE", 0.07, (("FI", 0.7), ("SE", 0.3)), ("gmail.com", "hotmail.com", "outlook.com", "telia.com"), "fi"),
    ("et_EE", 0.07, (("FI", 0.55), ("EE", 0.45)), ("gmail.com", "mail.ee", "hot.ee", "outlook.com"), "en"),
    ("en_GB", 0.05, (("FI", 0.5), ("GB", 0.5)), ("gmail.com", "outlook.com", "yahoo.co.uk", "icloud.com"), "en"),
    ("pl_PL", 0.05, (("FI", 0.5), ("PL", 0.5)), ("gmail.com", "wp.pl", "o2.pl", "onet.pl"), "en"),
    ("de_DE", 0.03, (("FI", 0.5), ("DE", 0.5)), ("gmail.com", "gmx.de", "web.de", "t-online.de"), "en"),
    ("lv_LV", 0.025, (("FI", 0.5), ("LV", 0.5)), ("gmail.com", "inbox.lv", "outlook.com"), "en"),
    ("lt_LT", 0.025, (("FI", 0.5), ("LT", 0.5)), ("gmail.com", "inbox.lt", "outlook.com"), "en"),
    ("ro_RO", 0.02, (("FI", 0.5), ("RO", 0.5)), ("gmail.com", "yahoo.com", "outlook.com"), "en"),
)
# Mobile numbers: country code, national prefixes, digits after the prefix.
_MOBILE: Mapping[str, tuple[str, tuple[str, ...], int]] = {
    "FI": ("358", ("40", "41", "44", "45", "46", "50"), 7),
    "SE": ("46", ("70", "72", "73", "76"), 7),
    "EE": ("372", ("5",), 7),
    "GB": ("44", ("7700", "7911", "7412", "7507"), 6),
    "PL": ("48", ("50", "51", "53", "60", "66", "69", "78", "79"), 7),
    "DE": ("49", ("151", "160", "170", "176"), 8),
    "LV": ("371", ("2",), 7),
    "LT": ("370", ("6",), 7),
    "RO": ("40", ("72", "73", "74", "75"), 7),
}
_ASCII = str.maketrans({"ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "đ": "d", "œ": "oe", "þ": "th", " ": "", "'": ""})
# name, latitude, longitude, weight: where precise locations come from
_CITIES: tuple[tuple[str, float, float, float], ...] = tuple(
    (name, float(lat), float(lon), float(weight))
    for name, lat, lon, weight in (
        line.split()
        for line in _lines("""
            Helsinki 60.1699 24.9384 0.25
            Espoo 60.2055 24.6559 0.10
            Vantaa 60.2934 25.0378 0.10
            Tampere 61.4978 23.7610 0.10
            Turku 60.4518 22.2666 0.08
            Oulu 65.0121 25.4651 0.07
            Jyväskylä 62.2426 25.7473 0.05
            Lahti 60.9827 25.6612 0.05
            Kuopio 62.8924 27.6770 0.05
            Pori 61.4851 21.7974 0.04
            Joensuu 62.6010 29.7636 0.04
            Vaasa 63.0951 21.6165 0.04
            Seinäjoki 62.7903 22.8403 0.03
        """)
    )
)
_CUSTOMER_TITLES = _lines("""
    HR-päällikkö
    Henkilöstöpäällikkö
    Tuotantopäällikkö
    Varastopäällikkö
    Toimitusjohtaja
    Työnjohtaja
    Rekrytointiasiantuntija
    Ostopäällikkö
    Logistiikkapäällikkö
    Ravintolapäällikkö
    Operations Manager
    HR Business Partner
    Site Manager
""")
_SITE = "https://www.henkilostopalvelu.example"
_PAGES = _lines("""
    /
    /avoimet-tyopaikat
    /avoimet-tyopaikat/varastotyontekija-vantaa
    /avoimet-tyopaikat/trukinkuljettaja-tampere
    /avoimet-tyopaikat/siivooja-helsinki
    /avoimet-tyopaikat/kokki-turku
    /avoimet-tyopaikat/lahihoitaja-espoo
    /yrityksille
    /yrityksille/henkilostovuokraus
    /yrityksille/pyyda-tarjous
    /tyontekijoille/mystaff
    /tyontekijoille/palkanmaksu
    /tyontekijoille/usein-kysyttya
    /yhteystiedot
    /en/jobs
    /en/for-employers
    /sv/lediga-jobb
""")
_REFERRERS = _lines("""
    https://www.google.com/
    https://www.google.fi/
    https://www.bing.com/
    https://duckduckgo.com/
    https://l.facebook.com/
    https://www.linkedin.com/
    https://tyomarkkinatori.fi/
    https://duunitori.fi/
    https://tyopaikat.oikotie.fi/
""")
# customer service (most calls), myStaff support, sales, the free number
_SERVICE_NUMBERS = ("+358206341100",) * 3 + ("+358206341200", "+358206341300", "+358800123456")
_OUTBOUND_NUMBER = "+358206341000"
_APP_VERSIONS = ("4.6.2", "4.7.0", "4.8.1", "4.9.3", "4.10.0", "4.11.2", "4.12.1", "5.0.0", "5.1.1")
_BANNER_VERSIONS = ("cookie-banner:v5", "cookie-banner:v6", "cookie-banner:v7")
_CONSENT_TEXTS = ("contact-details-v2", "contact-details-v3")
# (functional, analytics, marketing): every combination occurs; most visitors take all or nothing.
_COOKIE_COMBOS: tuple[tuple[tuple[bool, bool, bool], float], ...] = (
    ((True, True, True), 0.36),
    ((False, False, False), 0.26),
    ((True, False, False), 0.12),
    ((True, True, False), 0.12),
    ((False, True, False), 0.04),
    ((False, False, True), 0.03),
    ((True, False, True), 0.04),
    ((False, True, True), 0.03),
)
_CONSENT_CHANNELS = (("WEB_CHAT", 0.35), ("MYSTAFF_APP", 0.25), ("PHONE", 0.15), ("CONTACT_FORM", 0.15), ("DPO", 0.1))
_CONSENT_PURPOSES = (("CONTACT_DETAILS", 0.55), ("CALL_RECORDING", 0.15), ("SERVICE_DEVELOPMENT", 0.3))
_CONSENT_SOURCES = {
    "WEB_CHAT": "web-chat",
    "MYSTAFF_APP": "mystaff-app",
    "PHONE": "pbx",
    "CONTACT_FORM": "contact-form",
    "DPO": "dpo-console",
}

# Browsers as they report themselves, with their share of visits. Placeholders: {v} Chrome,
# {f} Firefox, {s}.{m} Safari/iOS, {a} Android, {sb} Samsung Internet versions; device models.
_WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_DESKTOP_AGENTS = (
    (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.30),
    (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36 Edg/{{v}}.0.0.0", 0.12),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0", 0.05),
    (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.06),
    (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/{{s}}.{{m}} Safari/605.1.15", 0.07),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0", 0.02),
    (f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.01),
)
_HANDHELD_AGENTS = (
    (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Version/{{s}}.{{m}} "
        "Mobile/15E148 Safari/604.1",
        0.18,
    ),
    (f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}) {_WEBKIT} Chrome/{{v}}.0.0.0 Mobile Safari/537.36", 0.10),
    (
        f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}) {_WEBKIT} SamsungBrowser/{{sb}}.0 Chrome/{{v}}.0.0.0 "
        "Mobile Safari/537.36",
        0.03,
    ),
    ("Mozilla/5.0 (Android {a}; Mobile; rv:{f}.0) Gecko/{f}.0 Firefox/{f}.0", 0.01),
    (
        f"Mozilla/5.0 (iPad; CPU OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Version/{{s}}.{{m}} Mobile/15E148 "
        "Safari/604.1",
        0.03,
    ),
    (f"Mozilla/5.0 (Linux; Android {{a}}; {{tablet}}) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.02),
)
# The myStaff app's web views (iOS, Android), naming the app version.
_APP_AGENTS = (
    f"Mozilla/5.0 (iPhone; CPU iPhone OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Mobile/15E148 myStaff/{{app}}",
    f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}; wv) {_WEBKIT} Version/4.0 Chrome/{{v}}.0.0.0 "
    "Mobile Safari/537.36 myStaff/{app}",
)
_PHONE_MODELS = ("SM-S918B", "SM-A546B", "SM-G991B", "Pixel 7", "Pixel 8a", "moto g54 5G", "CPH2451", "2201117TY")
_TABLET_MODELS = ("SM-X710", "SM-T830", "Lenovo TB-X606F")

# Transcript lines by language and role; none holds an identifier.
_LINES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "fi": {
        "open": _lines("""
            Hei, milloin palkka maksetaan?
            Miten voin päivittää verokorttini?
            Haen kesätöitä, onko paikkoja vapaana?
            En pääse kirjautumaan myStaffiin.
            Vuoroni muuttui, keneen otan yhteyttä?
            Tarvitsisimme kolme varastotyöntekijää ensi viikolle.
            Työtodistus puuttuu, voitteko lähettää sen?
            Sairastuin, miten ilmoitan poissaolosta?
            Onko teillä töitä Tampereella?
            Haluaisin pyytää tarjouksen henkilöstövuokrauksesta.
        """),
        "follow": _lines("""
            Selvä, entä lomarahat?
            Kävin jo sovelluksessa, mutta en löydä kohtaa.
            Koskeeko tämä myös iltavuoroja?
            Milloin voisin aloittaa?
            Tarvitsetteko minulta vielä jotain?
            Okei, kiitos tiedosta.
        """),
        "close": _lines("""
            Kiitos avusta!
            Selvä, kiitos.
            Kiitos, hyvää päivänjatkoa!
        """),
        "agent_open": _lines("""
            Hei! Kiitos yhteydenotosta, autan mielelläni.
            Hei, tässä asiakaspalvelu. Tarkistan asian.
            Kiitos viestistä! Hetki, katson tilanteen.
        """),
        "agent": _lines("""
            Palkka maksetaan joka toinen perjantai.
            Voit päivittää tiedot myStaffin Profiili-sivulla.
            Välitin viestisi esihenkilöllesi.
            Lähetin ohjeet sähköpostiisi.
            Avoimet paikat löytyvät sivultamme kohdasta Avoimet työpaikat.
            Myyntimme ottaa sinuun yhteyttä vielä tänään.
            Poissaolo ilmoitetaan myStaffissa kohdassa Vuorot.
        """),
        "agent_close": _lines("""
            Onko jotain muuta, missä voin auttaa?
            Mukavaa päivänjatkoa!
        """),
        "bot": _lines("""
            Hei! Olen virtuaaliavustaja. Miten voin auttaa?
            Hei! Kerro lyhyesti, mitä asiasi koskee.
        """),
        "joined": ("Asiakaspalvelija liittyi keskusteluun.",),
    },
    "en": {
        "open": _lines("""
            Hi, when is the salary paid?
            How do I update my tax card?
            Are there any summer jobs available?
            I cannot log in to myStaff.
            My shift changed, who should I contact?
            We need three warehouse workers for next week.
            Could you send me my employment certificate?
            I am sick today, how do I report it?
        """),
        "follow": _lines("""
            OK, and what about holiday pay?
            I tried the app but cannot find it.
            Does this apply to night shifts?
            When could I start?
            Do you need anything else from me?
        """),
        "close": _lines("""
            Thanks for your help!
            Great, thank you.
            Thank you, have a nice day!
        """),
        "agent_open": _lines("""
            Hi! Thanks for reaching out, happy to help.
            Hello, customer service here. Let me check.
        """),
        "agent": _lines("""
            Salaries are paid every other Friday.
            You can update it on the Profile page in myStaff.
            I forwarded your message to your supervisor.
            I sent you the instructions by email.
            You can find open positions on our Jobs page.
            Absences are reported in myStaff under Shifts.
        """),
        "agent_close": _lines("""
            Is there anything else I can help with?
            Have a nice day!
        """),
        "bot": _lines("""
            Hi! I am the virtual assistant. How can I help?
            Hi! Tell me briefly what this is about.
        """),
        "joined": ("An agent joined the conversation.",),
    },
}
_SENDERS = {"open": "VISITOR", "follow": "VISITOR", "close": "VISITOR", "bot": "BOT", "joined": "SYSTEM"}


@dataclass(frozen=True, slots=True)
class _Person:
    name: str
    email: str
    phone: str  # as the person types it
    phone_e164: str  # as the operator delivers it
    language: str
    visitor_ids: tuple[str, ...]
    network: int
    device: int
    person_number: str | None = None
    app_username: str | None = None
    postal_address: str | None = None
    job_title: str | None = None
    company: str | None = None


@dataclass(frozen=True, slots=True)
class _Visitor:
    visitor_id: str
    network: int
    device: int
    language: str


def _weighted(rng: random.Random, items: Iterable[tuple[Any, float]]) -> Any:
    pairs = list(items)
    return rng.choices([item for item, _ in pairs], [weight for _, weight in pairs])[0]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_ASCII))
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in ".-"))


class _World:
    """Pools built once per run: people, visitors, networks, devices, agents."""

    def __init__(self, config: SimulationConfig, rng: random.Random) -> None:
        self.rng = rng
        fakers = {}
        for locale, *_ in _LOCALES:
            fake = Faker(locale)
            fake.seed_instance(rng.getrandbits(64))
            fakers[locale] = fake
        self.fi = fakers["fi_FI"]
        self.networks = [self._network(i) for i in range(max(40, config.pool_size // 4))]
        self.desktop, self.mobile = self._user_agents()
        self.agents = [self._agent(i) for i in range(24)]
        self._emails: set[str] = set()
        self._usernames: set[str] = set()
        numbers = rng.sample(range(100_000, 1_000_000), config.pool_size)
        self.people = [self._person(fakers, numbers[i]) for i in range(config.pool_size)]
        self.workers = [p for p in self.people if p.person_number is not None] or self.people
        self.visitors = [self._visitor() for _ in range(config.pool_size)]

    # -- identifiers ---------------------------------------------------------------------

    def visitor_id(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"

    def mobile_number(self, region: str) -> phonenumbers.PhoneNumber:
        country, prefixes, digits = _MOBILE[region]
        for _ in range(20):
            subscriber = "".join(str(self.rng.randrange(10)) for _ in range(digits))
            number = phonenumbers.parse(f"+{country}{self.rng.choice(prefixes)}{subscriber}")
            if phonenumbers.is_valid_number(number):
                return number
        return self.mobile_number("FI") if region != "FI" else number

    def typed_phone(self, number: phonenumbers.PhoneNumber) -> str:
        """A number as people type it: national or international, spaced or not."""
        fmt = phonenumbers.PhoneNumberFormat
        roll = self.rng.random()
        if number.country_code == 358 and roll < 0.55:
            national = phonenumbers.format_number(number, fmt.NATIONAL)
            return national if roll < 0.35 else national.replace(" ", "")
        return phonenumbers.format_number(number, fmt.INTERNATIONAL if roll < 0.8 else fmt.E164)

    def _email(self, first: str, last: str, domains: tuple[str, ...]) -> str:
        first_a, last_a = _ascii(first) or "user", _ascii(last) or "x"
        local = _weighted(
            self.rng,
            (
                (f"{first_a}.{last_a}", 0.5),
                (f"{first_a}{last_a}", 0.15),
                (f"{first_a[0]}.{last_a}", 0.15),
                (f"{first_a}.{last_a}{self.rng.randint(1, 99)}", 0.2),
            ),
        )
        email = f"{local}@{self.rng.choice(domains)}"
        while email in self._emails:
            email = f"{local}{self.rng.randint(1, 999)}@{self.rng.choice(domains)}"
        self._emails.add(email)
        if self.rng.random() < 0.1:  # typed with capitals; subject keys use the lower-cased form
            name, domain = email.split("@", 1)
            email = ".".join(part.capitalize() for part in name.split(".")) + "@" + domain
        return email

    def _username(self, first: str, last: str) -> str:
        base = (_ascii(first)[:1] + _ascii(last))[:14] or "user"
        name = base
        while name in self._usernames:
            name = f"{base}{self.rng.randint(2, 99)}"
        self._usernames.add(name)
        return name

    # -- pools ---------------------------------------------------------------------------

    def _person(self, fakers: Mapping[str, Faker], person_number: int) -> _Person:
        rng = self.rng
        locale, _, regions, domains, language = _weighted(rng, ((entry, entry[1]) for entry in _LOCALES))
        fake = fakers[locale]
        first, last = fake.first_name(), fake.last_name()
        number = self.mobile_number(_weighted(rng, regions))
        role = _weighted(rng, (("worker", 0.45), ("contact", 0.35), ("other", 0.2)))
        company = self.fi.company() if role == "contact" else None
        email = self._email(first, last, domains)
        if company is not None and rng.random() < 0.7:  # contact persons often use the work address
            slug = _ascii(company.split()[0]) or "yritys"
            work = f"{_ascii(first)}.{_ascii(last)}@{slug}.fi"
            if work not in self._emails:
                self._emails.add(work)
                email = work
        visitor_ids = tuple(self.visitor_id() for _ in range(rng.choice((1, 1, 1, 2, 3))))
        worker = role == "worker"
        return _Person(
            name=f"{first} {last}",
            email=email,
            phone=self.typed_phone(number),
            phone_e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            language=language if rng.random() < 0.9 else ("en" if language == "fi" else "fi"),
            visitor_ids=visitor_ids,
            network=rng.randrange(len(self.networks)),
            device=rng.randrange(1 << 16),
            person_number=f"{person_number}" if worker else None,
            app_username=self._username(first, last) if worker else None,
            postal_address=self.fi.address().replace("\n", ", ") if worker else None,
            job_title=rng.choice(_CUSTOMER_TITLES) if role == "contact" else None,
            company=company,
        )

    def _visitor(self) -> _Visitor:
        rng = self.rng
        return _Visitor(
            self.visitor_id(),
            rng.randrange(len(self.networks)),
            rng.randrange(1 << 16),
            "fi" if rng.random() < 0.75 else "en",
        )

    def _network(self, index: int) -> tuple[str, str | None]:
        """(address, reverse-DNS name or None): Finnish ISPs, mobile, company and foreign networks."""
        rng = self.rng
        b, c, d = rng.randrange(256), rng.randrange(256), rng.randint(1, 254)
        roll = rng.random()
        if roll < 0.25:
            a = rng.choice((87, 91, 84))
            return (
                f"{a}.{b}.{c}.{d}",
                f"dsl-hkibng{rng.randint(11, 42)}-{b:02x}{c:02x}{d:02x}-{index % 97}.dhcp.inet.fi",
            )
        if roll < 0.4:
            return f"213.216.{c}.{d}", f"dsl-213-216-{c}-{d}.elisa-laajakaista.fi"
        if roll < 0.6:
            a = rng.choice((37, 62, 85))
            return f"{a}.{b}.{c}.{d}", f"{a}-{b}-{c}-{d}.bb.dnainternet.fi"
        if roll < 0.72:
            return (
                f"91.{rng.randint(152, 159)}.{c}.{d}",
                f"mobile-access-{b:02x}{c:02x}{d:02x}-{index % 13}.dhcp.inet.fi",
            )
        if roll < 0.82:
            slug = _ascii(self.fi.last_name()) + rng.choice(("-group", "-oy", "logistics", "-foods", ""))
            return f"{rng.choice((193, 194, 195))}.{b}.{c}.{d}", f"{rng.choice(('gw', 'vpn', 'fw1'))}.{slug}.fi"
        if roll < 0.88:
            return f"{rng.choice((90, 78, 81))}.{b}.{c}.{d}", f"{d}.{c}.{b}.static.telia.{rng.choice(('se', 'ee'))}"
        if roll < 0.94:
            groups = ":".join(f"{rng.getrandbits(16):x}" for _ in range(6))
            return f"2001:14ba:{groups}", None
        return f"{rng.choice((88, 176, 195))}.{b}.{c}.{d}", None

    def _user_agents(self) -> tuple[list[str], list[str]]:
        """Pre-built user agents, weighted by repetition; returns (desktop, mobile+tablet)."""
        rng = self.rng

        def fill(template: str) -> str:
            chrome = rng.randint(118, 131)
            safari = rng.randint(16, 18)
            return template.format(
                v=chrome,
                f=rng.randint(115, 133),
                s=safari,
                m=rng.randint(0, 6),
                a=rng.randint(11, 15),
                sb=rng.randint(22, 26),
                phone=rng.choice(_PHONE_MODELS),
                tablet=rng.choice(_TABLET_MODELS),
                app="",
            )

        def pool(templates: tuple[tuple[str, float], ...], size: int) -> list[str]:
            return [fill(_weighted(rng, templates)) for _ in range(size)]

        return pool(_DESKTOP_AGENTS, 120), pool(_HANDHELD_AGENTS, 120)

    def _agent(self, index: int) -> tuple[str, str]:
        first, last = self.fi.first_name(), self.fi.last_name()
        return f"{_ascii(first)}.{_ascii(last)}", f"+35820634{1400 + index:04d}"


# ---- the generator ---------------------------------------------------------------------


class _Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.mix = config.mix
        self.rng = random.Random(config.seed)
        self.world = _World(config, self.rng)
        now_ms = _millis(config.now)
        # Scenario anchors leave room for a long call before and upload lags after.
        self.start_ms = now_ms - int(config.span_days * _DAY) + 2 * _HOUR
        self.end_ms = now_ms - 2 * _MINUTE
        self.step = max(0.0, (self.end_ms - self.start_ms) / max(config.events, 1))
        self.recorded = self.mix.recording_probability()
        shares = self.mix.shares()
        rest = 1.0 - shares.pop(RECORDING)  # recordings follow calls; the rest are drawn
        self.scenarios = list(shares)
        self.cum_weights: list[float] = []
        total = 0.0
        for kind in self.scenarios:
            total += shares[kind] / rest if rest else 0.0
            self.cum_weights.append(total)
        self.serializers = {
            name: AvroSerializer(name)
            for name in (CHAT_CONVERSATION, CALL_DETAIL_RECORD, CONSENT_CHANGED, COOKIE_CONSENT_CHANGED)
        }
        self.decoder = AvroDeserializer()
        chat = default_catalog().get(CHAT_CONVERSATION).definition["fields"]
        self.chat_defaults = {
            f["name"]: f["default"] for f in chat if "default" in f and not isinstance(f["default"], (dict, list))
        }

    def uuid(self) -> str:
        """A random (version 4) UUID from the run's generator."""
        bits = self.rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def between(self, low: int, high: int) -> int:
        """An int in [low, high]; random.randint's speed matters in this loop."""
        return low + int(self.rng.random() * (high - low + 1))

    def events(self) -> Iterator[SimulatedEvent]:
        rng = self.rng
        builders: dict[str, Callable[[int], list[SimulatedEvent]]] = {
            WEB_CHAT: lambda at: [self.web_chat(at)],
            APP_CHAT: lambda at: [self.app_chat(at)],
            CALL_KIND: self.call,
            CONSENT_KIND: lambda at: [self.consent(at)],
            COOKIE_CONSENT: lambda at: [self.cookie_consent(at)],
            MALFORMED: lambda at: [self.malformed(at)],
        }
        emitted, wanted = 0, self.config.events
        while emitted < wanted:
            anchor = self.start_ms + int((emitted + rng.random()) * self.step)
            kind = rng.choices(self.scenarios, cum_weights=self.cum_weights)[0]
            for event in builders[kind](anchor):
                if emitted == wanted:
                    return
                emitted += 1
                yield event

    # -- shared parts -------------------------------------------------------------------

    def envelope(self, event_time: int, source: str, lag_ms: tuple[int, int] = (50, 3000)) -> dict[str, Any]:
        return {
            "event_id": self.uuid(),
            "event_time": _datetime(event_time),
            "produced_at": _datetime(event_time + self.between(*lag_ms)),
            "source_system": source,
            "schema_version": 1,
        }

    def person(self, pool: list[_Person] | None = None) -> _Person:
        """A recurring person; the head of the pool recurs most (a few frequent contacts)."""
        people = pool or self.world.people
        return people[int(len(people) * self.rng.random() ** 1.5)]

    def user_agent(self, device: int) -> str:
        """The browser of a person's own device (odd: a phone or tablet), now and then another one."""
        world, rng = self.world, self.rng
        if rng.random() < 0.25:
            pool = world.desktop if rng.random() < 0.58 else world.mobile
            return pool[rng.randrange(len(pool))]
        pool = world.mobile if device % 2 else world.desktop
        return pool[device // 2 % len(pool)]

    def fraction(self, at: int) -> float:
        """Where `at` lies in the simulated span, 0..1 (versions roll out over time)."""
        span = self.end_ms - self.start_ms
        return min(1.0, max(0.0, (at - self.start_ms) / span)) if span > 0 else 1.0

    def versioned(self, at: int, versions: tuple[str, ...]) -> str:
        index = int(self.fraction(at) * len(versions) - self.rng.random() * 1.5)
        return versions[min(len(versions) - 1, max(0, index))]

    def transcript(self, ended: int, language: str, bot: bool) -> tuple[list[dict[str, Any]], int]:
        """1-8 messages ending before `ended`; returns them and when the chat started."""
        rng = self.rng
        lines = _LINES[language]
        count = rng.choices((1, 2, 3, 4, 5, 6, 7, 8), (4, 8, 16, 20, 18, 14, 10, 10))[0]
        bot = bot and count > 2
        roles = ["bot", "open"] if bot else ["open"]
        agent = rng.choice(self.world.agents)[0]
        while len(roles) < count:
            if len(roles) == count - 1 and count > 3:
                roles.append("close" if rng.random() < 0.6 else "agent_close")
            elif roles[-1] in ("open", "follow"):
                if "agent_open" in roles:
                    roles.append("agent")
                else:
                    roles.append("joined" if bot and "joined" not in roles else "agent_open")
            else:
                roles.append("agent_open" if roles[-1] == "joined" else "follow")
        gaps = [self.between(4_000, 150_000) for _ in roles]
        at = ended - self.between(5_000, 60_000) - sum(gaps)
        started = at - self.between(1_000, 20_000)
        messages = []
        for index, role in enumerate(roles):
            at += gaps[index]
            who = _SENDERS.get(role, "AGENT")
            messages.append(
                {
                    "message_id": f"{rng.getrandbits(64):016x}",
                    "sent_at": _datetime(at),
                    "sender": who,
                    "agent_username": agent if who == "AGENT" else None,
                    "text": rng.choice(lines[role]),
                }
            )
        return messages, started

    # -- chats --------------------------------------------------------------------------

    def _chat(self, at: int, channel: str, source: str, language: str, bot: bool) -> dict[str, Any]:
        messages, started = self.transcript(at, language, bot)
        record = self.envelope(at, source)
        record.update(self.chat_defaults)  # what a channel does not fill keeps the schema default
        record.update(
            conversation_id=self.uuid(),
            channel=channel,
            started_at=_datetime(started),
            ended_at=_datetime(at),
            cookie_consent={"functional": False, "analytics": False, "marketing": False},
            messages=messages,
        )
        return record

    def web_chat(self, at: int) -> SimulatedEvent:
        rng, mix, world = self.rng, self.mix, self.world
        tags: list[str] = []
        consent = rng.random() < mix.contact_consent
        details = rng.random() < (mix.details_with_consent if consent else mix.details_without_consent)
        person: _Person | None = None
        if details or rng.random() < mix.known_web_visitor:
            person = self.person()
            visitor_id, network, device, language = (
                rng.choice(person.visitor_ids),
                person.network,
                person.device,
                person.language,
            )
        else:
            visitor = world.visitors[rng.randrange(len(world.visitors))]
            visitor_id, network, device, language = (
                visitor.visitor_id,
                visitor.network,
                visitor.device,
                visitor.language,
            )
        record = self._chat(at, "WEB", "web-chat", language, bot=rng.random() < 0.4)
        ip_address, network_name = world.networks[network]
        record.update(visitor_id=visitor_id, user_agent=self.user_agent(device), ip_address=ip_address)
        if consent:
            record.update(
                contact_consent=True, contact_consent_text_id=f"{self.versioned(at, _CONSENT_TEXTS)}-{language}"
            )
        if details and person is not None:
            record.update(name=person.name, email=person.email)
            if rng.random() < 0.5:
                record["phone"] = person.phone
            if person.company is not None or rng.random() < 0.15:
                record["company_name"] = person.company or world.fi.company()
                record["job_title"] = person.job_title if rng.random() < 0.8 else None
            if not consent:
                tags.append(DETAILS_WITHOUT_CONSENT)
        combo = _weighted(rng, _COOKIE_COMBOS)
        record["cookie_consent"] = {"functional": combo[0], "analytics": combo[1], "marketing": combo[2]}
        analytics_data = combo[1] or rng.random() < mix.cookie_data_without_consent
        if analytics_data:
            if not combo[1]:
                tags.append(COOKIE_DATA_WITHOUT_CONSENT)
            visits = 1 + int(rng.expovariate(1 / 4))
            record.update(
                network_name=network_name,
                visit_count=visits,
                chat_count=1 + min(visits - 1, int(rng.expovariate(1.5))),
                referrer_url=rng.choice(_REFERRERS) if rng.random() < 0.6 else None,
                page_url=_SITE + rng.choice(_PAGES),
                visit_duration_s=self.between(15, 240) + int(rng.expovariate(1 / 400)),
            )
        permission = rng.random() < mix.geolocation_permission
        record["geolocation_permission"] = permission
        if rng.random() < (mix.location_with_permission if permission else mix.location_without_permission):
            _, lat, lon, _ = _weighted(rng, ((city, city[3]) for city in _CITIES))
            record.update(
                latitude=round(lat + rng.uniform(-0.06, 0.06), 6), longitude=round(lon + rng.uniform(-0.1, 0.1), 6)
            )
            if not permission:
                tags.append(LOCATION_WITHOUT_PERMISSION)
        return SimulatedEvent(WEB_CHAT, CHAT.name, CHAT_CONVERSATION, record, tags=tuple(tags))

    def app_chat(self, at: int) -> SimulatedEvent:
        rng = self.rng
        person = self.person(self.world.workers)
        record = self._chat(at, "MYSTAFF_APP", "mystaff-app", person.language, bot=False)
        version = self.versioned(at, _APP_VERSIONS)
        template = _APP_AGENTS[person.device % 2]
        agent = template.format(
            s=self.between(16, 18),
            m=self.between(0, 6),
            a=self.between(11, 15),
            v=self.between(118, 131),
            phone=_PHONE_MODELS[person.device % len(_PHONE_MODELS)],
            app=version,
        )
        ip_address, _ = self.world.networks[person.network]
        record.update(
            person_number=person.person_number,
            app_username=person.app_username,
            app_name="myStaff",
            app_version=version,
            name=person.name,
            email=person.email if rng.random() < 0.95 else None,
            phone=person.phone if rng.random() < 0.9 else None,
            postal_address=person.postal_address if rng.random() < 0.85 else None,
            user_agent=agent,
            ip_address=ip_address,
        )
        return SimulatedEvent(APP_CHAT, CHAT.name, CHAT_CONVERSATION, record)

    # -- calls --------------------------------------------------------------------------

    def call(self, at: int) -> list[SimulatedEvent]:
        rng, mix, world = self.rng, self.mix, self.world
        tags: list[str] = []
        inbound = rng.random() >= mix.outbound
        answered = rng.random() < mix.answered
        if inbound and rng.random() < mix.withheld_caller:
            caller = "anonymous"
            tags.append(WITHHELD_CALLER)
        elif rng.random() < mix.known_caller:
            caller = self.person().phone_e164
        else:
            region = "FI" if rng.random() < 0.85 else rng.choice(("SE", "EE", "PL", "DE", "GB"))
            caller = phonenumbers.format_number(world.mobile_number(region), phonenumbers.PhoneNumberFormat.E164)
        ended = at - self.between(0, 3_000)
        if answered:
            ring = 5_000 + min(int(rng.expovariate(1 / 45_000)), 900_000)
            talk = 20_000 + min(int(rng.expovariate(1 / 200_000)), 3_000_000)
        else:
            ring, talk = 5_000 + min(int(rng.expovariate(1 / 40_000)), 600_000), 0
        started = ended - talk - ring
        answered_at = started + ring if answered else None
        agent_user, agent_number = rng.choice(world.agents) if answered else (None, None)
        call_id = self.uuid()
        cdr = self.envelope(ended, "pbx")
        cdr.update(
            call_id=call_id,
            direction="INBOUND" if inbound else "OUTBOUND",
            caller_number=caller,
            service_number=rng.choice(_SERVICE_NUMBERS) if inbound else _OUTBOUND_NUMBER,
            started_at=_datetime(started),
            answered_at=_datetime(answered_at) if answered_at is not None else None,
            ended_at=_datetime(ended),
            answered_by_number=agent_number,
            answered_by_user=agent_user,
        )
        events = [SimulatedEvent(CALL_KIND, CALL.name, CALL_DETAIL_RECORD, cdr, tags=tuple(tags))]
        if answered_at is not None and inbound and rng.random() < self.recorded:
            events.append(self.recording(call_id, caller, started, answered_at, ended))
        return events

    def recording(self, call_id: str, caller: str, started: int, answered_at: int, ended: int) -> SimulatedEvent:
        rng, mix = self.rng, self.mix
        tags: tuple[str, ...] = ()
        roll = rng.random()
        notice: int | None
        if roll < mix.recording_notice_missing:
            notice, tags = None, (RECORDING_WITHOUT_NOTICE,)
        elif roll < mix.recording_notice_missing + mix.recording_notice_late:
            notice, tags = answered_at + self.between(1_000, min(15_000, ended - answered_at)), (NOTICE_AFTER_START,)
        else:  # the announcement plays in the queue, before the call is answered
            notice = started + self.between(500, max(600, min(8_000, answered_at - started - 500)))
        recording_id = self.uuid()
        day = _datetime(ended)
        record = self.envelope(ended, "call-recorder", lag_ms=(2_000, 30_000))
        record.update(
            recording_id=recording_id,
            call_id=call_id,
            caller_number=caller,
            recording_uri=f"s3://cs-call-recordings/{day:%Y/%m/%d}/{recording_id}.opus",
            notice_played_at=_datetime(notice) if notice is not None else None,
            recording_started_at=_datetime(answered_at),
            recording_ended_at=day,
        )
        return SimulatedEvent(RECORDING, CALL.name, CALL_RECORDING, record, tags=tags)

    # -- consent ------------------------------------------------------------------------

    def consent(self, at: int) -> SimulatedEvent:
        rng = self.rng
        channel = _weighted(rng, _CONSENT_CHANNELS)
        person = self.person(self.world.workers if channel == "MYSTAFF_APP" else None)
        subject: dict[str, str | None] = {
            "email": None,
            "phone": None,
            "person_number": None,
            "app_username": None,
            "visitor_id": None,
        }
        purpose = _weighted(rng, _CONSENT_PURPOSES)
        if channel == "WEB_CHAT":
            subject.update(email=person.email, visitor_id=rng.choice(person.visitor_ids))
            if rng.random() < 0.3:
                subject["phone"] = person.phone
            evidence = f"text:{self.versioned(at, _CONSENT_TEXTS)}-{person.language};conversation:{self.uuid()}"
        elif channel == "MYSTAFF_APP":
            subject.update(person_number=person.person_number, app_username=person.app_username)
            if rng.random() < 0.6:
                subject["email"] = person.email
            evidence = f"app-consent:{self.versioned(at, _APP_VERSIONS)}"
        elif channel == "PHONE":
            subject["phone"] = person.phone_e164
            purpose = "CALL_RECORDING" if rng.random() < 0.6 else purpose
            evidence = "ivr-prompt:recording-consent-v2"
        elif channel == "CONTACT_FORM":
            subject["email"] = person.email
            if rng.random() < 0.5:
                subject["phone"] = person.phone
            evidence = "form:contact-v4"
        else:
            subject["email"] = person.email
            if rng.random() < 0.6:
                subject["phone"] = person.phone
            evidence = f"dpo-ticket:DPO-{_datetime(at).year}-{self.between(1, 9999):04d}"
        withdrawn = channel == "DPO" or rng.random() < self.mix.consent_withdrawn
        record = self.envelope(at, _CONSENT_SOURCES[channel])
        record.update(
            subject=subject,
            purpose=purpose,
            status="WITHDRAWN" if withdrawn else "GIVEN",
            channel=channel,
            evidence=evidence,
        )
        return SimulatedEvent(CONSENT_KIND, CONSENT.name, CONSENT_CHANGED, record)

    def cookie_consent(self, at: int) -> SimulatedEvent:
        rng, world = self.rng, self.world
        if rng.random() < 0.5:
            visitor_id = rng.choice(self.person().visitor_ids)
        else:
            visitor_id = world.visitors[rng.randrange(len(world.visitors))].visitor_id
        combo = _weighted(rng, _COOKIE_COMBOS)
        record = self.envelope(at, "cookie-banner")
        record.update(
            visitor_id=visitor_id,
            cookie_consent={"functional": combo[0], "analytics": combo[1], "marketing": combo[2]},
            geolocation_permission=rng.random() < self.mix.geolocation_permission,
            evidence=self.versioned(at, _BANNER_VERSIONS),
        )
        return SimulatedEvent(COOKIE_CONSENT, CONSENT.name, COOKIE_CONSENT_CHANGED, record)

    # -- malformed ----------------------------------------------------------------------

    def malformed(self, at: int) -> SimulatedEvent:
        rng = self.rng
        kind = rng.choice(MALFORMED_KINDS)
        source = rng.choices((WEB_CHAT, CALL_KIND, CONSENT_KIND, COOKIE_CONSENT), (0.45, 0.3, 0.1, 0.15))[0]
        if source == WEB_CHAT:
            valid = self.web_chat(at)
        elif source == CALL_KIND:
            valid = self.call(at)[0]
        elif source == CONSENT_KIND:
            valid = self.consent(at)
        else:
            valid = self.cookie_consent(at)
        assert valid.schema_name is not None and valid.record is not None
        encoded = self.serializers[valid.schema_name](valid.record)
        body = encoded[10:]
        if kind == NOT_AVRO:
            raw = rng.choice(
                (
                    json.dumps({"type": "chat.closed", "id": self.uuid(), "ts": _datetime(at).isoformat()}).encode(),
                    b"ERROR 503: upstream timeout while rendering event",
                    b"\x1f\x8b\x08\x00" + rng.randbytes(self.between(20, 80)),  # a gzip header, nothing after
                )
            )
        elif kind == TRUNCATED:
            raw = encoded[: 10 + self.between(1, max(1, len(body) // 2))]
            while self._decodes(raw):  # never the case for records this shape; checked anyway
                raw = raw[:-1]
        elif kind == UNKNOWN_FINGERPRINT:
            fingerprint = rng.randbytes(8)
            while default_catalog().by_fingerprint(fingerprint) is not None:
                fingerprint = rng.randbytes(8)
            raw = b"\xc3\x01" + fingerprint + body
        else:
            raw = b"\x00" + struct.pack(">I", self.between(1_000_000, 2**31 - 1)) + body
        return SimulatedEvent(
            MALFORMED, valid.topic, None, None, raw=raw, key=self.uuid(), headers=((MALFORMED_HEADER, kind.encode()),)
        )

    def _decodes(self, raw: bytes) -> bool:
        try:
            self.decoder(raw)
        except SerdeError:
            return False
        return True


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _datetime(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def generate(config: SimulationConfig) -> Iterator[SimulatedEvent]:
    """The events of one run, oldest first; the same config gives the same events."""
    return _Simulation(config).events()


def event_line(event: SimulatedEvent) -> dict[str, Any]:
    """One event as a JSON Lines object: `records produce` input (`_schema` + the record's
    fields) for records; `_malformed`, `_topic`, `_key`, `_raw_b64` for raw bytes."""
    if event.record is not None:
        return {"_schema": event.schema_name, **to_jsonable(event.record)}
    malformed = dict(event.headers).get(MALFORMED_HEADER, b"").decode()
    return {"_malformed": malformed, "_topic": event.topic, "_key": event.key, "_raw_b64": to_jsonable(event.raw)}


# ---- the send loop ----------------------------------------------------------------------


class EventSink(Protocol):
    """Where `run` puts events: `event_producer.EventProducer`, or `EncodeOnly` for a dry run."""

    def send(self, schema: str, record: Mapping[str, Any]) -> int: ...

    def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int: ...

    def poll(self) -> None: ...


@dataclass
class SimulationStats:
    """What a run generated and sent (delivery is counted by the producer)."""

    events: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)  # malformed kind -> count
    tags: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_event(self) -> float:
        return self.bytes / self.events if self.events else 0.0

    def add(self, event: SimulatedEvent, size: int) -> None:
        self.events += 1
        self.by_kind[event.kind] += 1
        self.by_topic[event.topic] += 1
        self.bytes += size
        for tag in event.tags:
            self.tags[tag] += 1
        if event.malformed:
            self.malformed[dict(event.headers).get(MALFORMED_HEADER, b"?").decode()] += 1


def run(
    events: Iterable[SimulatedEvent],
    sink: EventSink,
    *,
    rate: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
    poll_every: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> SimulationStats:
    """Send every event to `sink`, at most `rate` events/s (0: as fast as possible)."""
    stats = SimulationStats()
    started = clock()
    for event in events:
        if event.record is not None:
            assert event.schema_name is not None
            size = sink.send(event.schema_name, event.record)
        else:
            assert event.raw is not None
            size = sink.send_raw(event.topic, event.raw, key=event.key, headers=list(event.headers))
        stats.add(event, size)
        done = stats.events
        if done % poll_every == 0:
            sink.poll()
        if on_progress is not None and done % progress_every == 0:
            on_progress(done)
        if rate > 0:
            ahead = started + done / rate - clock()
            if ahead > 0.002:
                sleep(ahead)
    stats.seconds = clock() - started
    if on_progress is not None:
        on_progress(stats.events)
    return stats


class EncodeOnly:
    """A sink that computes keys and encodes like the producer but sends nothing (dry run)."""

    def __init__(self, encoder: EventEncoder) -> None:
        self.encoder = encoder

    def send(self, schema: str, record: Mapping[str, Any]) -> int:
        return len(self.encoder.encode(schema, record).value)

    def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        return len(value)

    def poll(self) -> None:
        return None
