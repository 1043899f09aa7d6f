"""The generator: one deterministic stream of `SimulatedEvent`s per configuration (web and app
chats, calls with recordings, consent and cookie-consent changes, contact forms
(`contact_forms`), malformed messages).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.avro_json import to_jsonable
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.topics import CONSENT
from records.simulate.calls import call
from records.simulate.chats import app_chat, web_chat
from records.simulate.contact_forms import contact_form
from records.simulate.corpus import (
    APP_VERSIONS,
    BANNER_VERSIONS,
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    CONSENT_SOURCES,
    CONSENT_TEXTS,
    COOKIE_COMBOS,
)
from records.simulate.malformed import corrupt
from records.simulate.model import (
    APP_CHAT,
    CALL_DETAIL_RECORD,
    CALL_KIND,
    CHAT_CONVERSATION,
    CONSENT_CHANGED,
    CONSENT_KIND,
    COOKIE_CONSENT,
    COOKIE_CONSENT_CHANGED,
    DAY,
    FORM,
    HOUR,
    MALFORMED,
    MALFORMED_HEADER,
    MALFORMED_KINDS,
    MINUTE,
    RECORDING,
    UUID_CLEAR,
    UUID_SET,
    WEB_CHAT,
    SimulatedEvent,
    SimulationConfig,
    from_millis,
    to_millis,
)
from records.simulate.population import Person, World, weighted

# ---- the generator ---------------------------------------------------------------------


class _Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.mix = config.mix
        self.rng = random.Random(config.seed)
        self.world = World(config, self.rng)
        now_ms = to_millis(config.now)
        # Scenario anchors leave room for a long call before and upload lags after.
        self.start_ms = now_ms - int(config.span_days * DAY) + 2 * HOUR
        self.end_ms = now_ms - 2 * MINUTE
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
        bits = self.rng.getrandbits(128) & UUID_CLEAR | UUID_SET
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def between(self, low: int, high: int) -> int:
        """An int in [low, high]; random.randint's speed matters in this loop."""
        return low + int(self.rng.random() * (high - low + 1))

    def events(self) -> Iterator[SimulatedEvent]:
        rng = self.rng
        builders: dict[str, Callable[[int], list[SimulatedEvent]]] = {
            WEB_CHAT: lambda at: [web_chat(self, at)],
            APP_CHAT: lambda at: [app_chat(self, at)],
            CALL_KIND: lambda at: call(self, at),
            CONSENT_KIND: lambda at: [self.consent(at)],
            COOKIE_CONSENT: lambda at: [self.cookie_consent(at)],
            MALFORMED: lambda at: [self.malformed(at)],
            FORM: lambda at: [contact_form(self, at)],
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
            "event_time": from_millis(event_time),
            "produced_at": from_millis(event_time + self.between(*lag_ms)),
            "source_system": source,
            "schema_version": 1,
        }

    def person(self, pool: list[Person] | None = None) -> Person:
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

    # -- consent ------------------------------------------------------------------------

    def consent(self, at: int) -> SimulatedEvent:
        rng = self.rng
        channel = weighted(rng, CONSENT_CHANNELS)
        person = self.person(self.world.workers if channel == "MYSTAFF_APP" else None)
        subject: dict[str, str | None] = {
            "email": None,
            "phone": None,
            "person_number": None,
            "app_username": None,
            "visitor_id": None,
        }
        purpose = weighted(rng, CONSENT_PURPOSES)
        if channel == "WEB_CHAT":
            subject.update(email=person.email, visitor_id=rng.choice(person.visitor_ids))
            if rng.random() < 0.3:
                subject["phone"] = person.phone
            evidence = f"text:{self.versioned(at, CONSENT_TEXTS)}-{person.language};conversation:{self.uuid()}"
        elif channel == "MYSTAFF_APP":
            subject.update(person_number=person.person_number, app_username=person.app_username)
            if rng.random() < 0.6:
                subject["email"] = person.email
            evidence = f"app-consent:{self.versioned(at, APP_VERSIONS)}"
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
            evidence = f"dpo-ticket:DPO-{from_millis(at).year}-{self.between(1, 9999):04d}"
        withdrawn = channel == "DPO" or rng.random() < self.mix.consent_withdrawn
        record = self.envelope(at, CONSENT_SOURCES[channel])
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
        combo = weighted(rng, COOKIE_COMBOS)
        record = self.envelope(at, "cookie-banner")
        record.update(
            visitor_id=visitor_id,
            cookie_consent={"functional": combo[0], "analytics": combo[1], "marketing": combo[2]},
            geolocation_permission=rng.random() < self.mix.geolocation_permission,
            evidence=self.versioned(at, BANNER_VERSIONS),
        )
        return SimulatedEvent(COOKIE_CONSENT, CONSENT.name, COOKIE_CONSENT_CHANGED, record)

    # -- malformed ----------------------------------------------------------------------

    def malformed(self, at: int) -> SimulatedEvent:
        rng = self.rng
        kind = rng.choice(MALFORMED_KINDS)
        source = rng.choices((WEB_CHAT, CALL_KIND, CONSENT_KIND, COOKIE_CONSENT), (0.45, 0.3, 0.1, 0.15))[0]
        if source == WEB_CHAT:
            valid = web_chat(self, at)
        elif source == CALL_KIND:
            valid = call(self, at)[0]
        elif source == CONSENT_KIND:
            valid = self.consent(at)
        else:
            valid = self.cookie_consent(at)
        assert valid.schema_name is not None and valid.record is not None
        encoded = self.serializers[valid.schema_name](valid.record)
        raw = corrupt(encoded, kind, at, rng, self.between, self.uuid, self._decodes)
        return SimulatedEvent(
            MALFORMED, valid.topic, None, None, raw=raw, key=self.uuid(), headers=((MALFORMED_HEADER, kind.encode()),)
        )

    def _decodes(self, raw: bytes) -> bool:
        try:
            self.decoder(raw)
        except SerdeError:
            return False
        return True


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
