"""Chats of the simulated traffic: web chats (a visitor or a recurring person, with the
consents, cookie-derived data and location the mix asks for, and now and then data the
streams stage must strip) and myStaff app chats of workers, each with a transcript."""

from __future__ import annotations

from typing import Any

from pipeline.topics import CHAT
from records.simulate.context import SimulationContext
from records.simulate.corpus import (
    APP_AGENTS,
    APP_VERSIONS,
    CITIES,
    CONSENT_TEXTS,
    COOKIE_COMBOS,
    LINES,
    PAGES,
    PHONE_MODELS,
    REFERRERS,
    SENDERS,
    SITE,
)
from records.simulate.model import (
    APP_CHAT,
    CHAT_CONVERSATION,
    COOKIE_DATA_WITHOUT_CONSENT,
    DETAILS_WITHOUT_CONSENT,
    LOCATION_WITHOUT_PERMISSION,
    WEB_CHAT,
    SimulatedEvent,
    from_millis,
)
from records.simulate.population import Person, weighted


def _transcript(sim: SimulationContext, ended: int, language: str, bot: bool) -> tuple[list[dict[str, Any]], int]:
    """1-8 messages ending before `ended`; returns them and when the chat started."""
    rng = sim.rng
    lines = LINES[language]
    count = rng.choices((1, 2, 3, 4, 5, 6, 7, 8), (4, 8, 16, 20, 18, 14, 10, 10))[0]
    bot = bot and count > 2
    roles = ["bot", "open"] if bot else ["open"]
    agent = rng.choice(sim.world.agents)[0]
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
    gaps = [sim.between(4_000, 150_000) for _ in roles]
    at = ended - sim.between(5_000, 60_000) - sum(gaps)
    started = at - sim.between(1_000, 20_000)
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


def _chat_record(
    sim: SimulationContext, at: int, channel: str, source: str, language: str, bot: bool
) -> dict[str, Any]:
    messages, started = _transcript(sim, at, language, bot)
    record = sim.envelope(at, source)
    record.update(sim.chat_defaults)  # what a channel does not fill keeps the schema default
    record.update(
        conversation_id=sim.uuid(),
        channel=channel,
        started_at=from_millis(started),
        ended_at=from_millis(at),
        cookie_consent={"functional": False, "analytics": False, "marketing": False},
        messages=messages,
    )
    return record


def web_chat(sim: SimulationContext, at: int) -> SimulatedEvent:
    rng, mix, world = sim.rng, sim.mix, sim.world
    tags: list[str] = []
    consent = rng.random() < mix.contact_consent
    details = rng.random() < (mix.details_with_consent if consent else mix.details_without_consent)
    person: Person | None = None
    if details or rng.random() < mix.known_web_visitor:
        person = sim.person()
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
    record = _chat_record(sim, at, "WEB", "web-chat", language, bot=rng.random() < 0.4)
    ip_address, network_name = world.networks[network]
    record.update(visitor_id=visitor_id, user_agent=sim.user_agent(device), ip_address=ip_address)
    if consent:
        record.update(contact_consent=True, contact_consent_text_id=f"{sim.versioned(at, CONSENT_TEXTS)}-{language}")
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
            visit_duration_s=sim.between(15, 240) + int(rng.expovariate(1 / 400)),
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


def app_chat(sim: SimulationContext, at: int) -> SimulatedEvent:
    rng = sim.rng
    person = sim.person(sim.world.workers)
    record = _chat_record(sim, at, "MYSTAFF_APP", "mystaff-app", person.language, bot=False)
    version = sim.versioned(at, APP_VERSIONS)
    template = APP_AGENTS[person.device % 2]
    agent = template.format(
        s=sim.between(16, 18),
        m=sim.between(0, 6),
        a=sim.between(11, 15),
        v=sim.between(118, 131),
        phone=PHONE_MODELS[person.device % len(PHONE_MODELS)],
        app=version,
    )
    ip_address, _ = sim.world.networks[person.network]
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
