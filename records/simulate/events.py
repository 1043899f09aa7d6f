"""The generator: one deterministic stream of `SimulatedEvent`s per configuration (web and app
chats, calls with recordings, consent and cookie-consent changes, contact forms
(`contact_forms`), malformed messages).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import phonenumbers

from pipeline.avro_json import to_jsonable
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.topics import CALL, CHAT, CONSENT
from records.simulate.contact_forms import contact_form
from records.simulate.corpus import (
    APP_AGENTS,
    APP_VERSIONS,
    BANNER_VERSIONS,
    CITIES,
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    CONSENT_SOURCES,
    CONSENT_TEXTS,
    COOKIE_COMBOS,
    LINES,
    OUTBOUND_NUMBER,
    PAGES,
    PHONE_MODELS,
    REFERRERS,
    SENDERS,
    SERVICE_NUMBERS,
    SITE,
)
from records.simulate.malformed import corrupt
from records.simulate.model import (
    APP_CHAT,
    CALL_DETAIL_RECORD,
    CALL_KIND,
    CALL_RECORDING,
    CHAT_CONVERSATION,
    CONSENT_CHANGED,
    CONSENT_KIND,
    COOKIE_CONSENT,
    COOKIE_CONSENT_CHANGED,
    COOKIE_DATA_WITHOUT_CONSENT,
    DAY,
    DETAILS_WITHOUT_CONSENT,
    FORM,
    HOUR,
    LOCATION_WITHOUT_PERMISSION,
    MALFORMED,
    MALFORMED_HEADER,
    MALFORMED_KINDS,
    MINUTE,
    NOTICE_AFTER_START,
    RECORDING,
    RECORDING_OUTSIDE_CALL,
    RECORDING_WITHOUT_NOTICE,
    UUID_CLEAR,
    UUID_SET,
    WEB_CHAT,
    WITHHELD_CALLER,
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
            WEB_CHAT: lambda at: [self.web_chat(at)],
            APP_CHAT: lambda at: [self.app_chat(at)],
            CALL_KIND: self.call,
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

    def transcript(self, ended: int, language: str, bot: bool) -> tuple[list[dict[str, Any]], int]:
        """1-8 messages ending before `ended`; returns them and when the chat started."""
        rng = self.rng
        lines = LINES[language]
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
            who = SENDERS.get(role, "AGENT")
            messages.append(
                {
                    "message_id": f"{rng.getrandbits(64):016x}",
                    "sent_at": from_millis(at),
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
            started_at=from_millis(started),
            ended_at=from_millis(at),
            cookie_consent={"functional": False, "analytics": False, "marketing": False},
            messages=messages,
        )
        return record

    def web_chat(self, at: int) -> SimulatedEvent:
        rng, mix, world = self.rng, self.mix, self.world
        tags: list[str] = []
        consent = rng.random() < mix.contact_consent
        details = rng.random() < (mix.details_with_consent if consent else mix.details_without_consent)
        person: Person | None = None
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
                contact_consent=True, contact_consent_text_id=f"{self.versioned(at, CONSENT_TEXTS)}-{language}"
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
        combo = weighted(rng, COOKIE_COMBOS)
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
                referrer_url=rng.choice(REFERRERS) if rng.random() < 0.6 else None,
                page_url=SITE + rng.choice(PAGES),
                visit_duration_s=self.between(15, 240) + int(rng.expovariate(1 / 400)),
            )
        permission = rng.random() < mix.geolocation_permission
        record["geolocation_permission"] = permission
        if rng.random() < (mix.location_with_permission if permission else mix.location_without_permission):
            _, lat, lon, _ = weighted(rng, ((city, city[3]) for city in CITIES))
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
        version = self.versioned(at, APP_VERSIONS)
        template = APP_AGENTS[person.device % 2]
        agent = template.format(
            s=self.between(16, 18),
            m=self.between(0, 6),
            a=self.between(11, 15),
            v=self.between(118, 131),
            phone=PHONE_MODELS[person.device % len(PHONE_MODELS)],
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
            service_number=rng.choice(SERVICE_NUMBERS) if inbound else OUTBOUND_NUMBER,
            started_at=from_millis(started),
            answered_at=from_millis(answered_at) if answered_at is not None else None,
            ended_at=from_millis(ended),
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
        elif roll < mix.recording_notice_missing + mix.recording_notice_late + mix.recording_outside_call:
            # announced, but recorded outside the call: from before the answer or past the hang-up
            shift, tags = self.between(1_000, 8_000), (RECORDING_OUTSIDE_CALL,)
            if roll < mix.recording_notice_missing + mix.recording_notice_late + mix.recording_outside_call / 2:
                answered_at -= shift  # the recording starts `shift` ms before the answer
            else:
                ended += shift  # and ends `shift` ms after the hang-up
            notice = answered_at - 500
        else:  # the announcement plays in the queue, before the call is answered
            notice = started + self.between(500, max(600, min(8_000, answered_at - started - 500)))
        recording_id = self.uuid()
        day = from_millis(ended)
        record = self.envelope(ended, "call-recorder", lag_ms=(2_000, 30_000))
        record.update(
            recording_id=recording_id,
            call_id=call_id,
            caller_number=caller,
            recording_uri=f"s3://cs-call-recordings/{day:%Y/%m/%d}/{recording_id}.opus",
            notice_played_at=from_millis(notice) if notice is not None else None,
            recording_started_at=from_millis(answered_at),
            recording_ended_at=day,
        )
        return SimulatedEvent(RECORDING, CALL.name, CALL_RECORDING, record, tags=tags)

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
            valid = self.web_chat(at)
        elif source == CALL_KIND:
            valid = self.call(at)[0]
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
