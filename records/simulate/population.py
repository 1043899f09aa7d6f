"""The people of one run: persons (faker, several locales) and anonymous web visitors, built
once per run so that one subject recurs across chats, calls and consent changes.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers
from faker import Faker

from records.simulate.corpus import (
    ASCII,
    CUSTOMER_TITLES,
    DESKTOP_AGENTS,
    HANDHELD_AGENTS,
    LOCALES,
    MOBILE,
    PHONE_MODELS,
    TABLET_MODELS,
)
from records.simulate.model import SimulationConfig


@dataclass(frozen=True, slots=True)
class Person:
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


def weighted(rng: random.Random, items: Iterable[tuple[Any, float]]) -> Any:
    pairs = list(items)
    return rng.choices([item for item, _ in pairs], [weight for _, weight in pairs])[0]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(ASCII))
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in ".-"))


class World:
    """Pools built once per run: people, visitors, networks, devices, agents."""

    def __init__(self, config: SimulationConfig, rng: random.Random) -> None:
        self.rng = rng
        fakers = {}
        for locale, *_ in LOCALES:
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
        country, prefixes, digits = MOBILE[region]
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
        local = weighted(
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

    def _person(self, fakers: Mapping[str, Faker], person_number: int) -> Person:
        rng = self.rng
        locale, _, regions, domains, language = weighted(rng, ((entry, entry[1]) for entry in LOCALES))
        fake = fakers[locale]
        first, last = fake.first_name(), fake.last_name()
        number = self.mobile_number(weighted(rng, regions))
        role = weighted(rng, (("worker", 0.45), ("contact", 0.35), ("other", 0.2)))
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
        return Person(
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
            job_title=rng.choice(CUSTOMER_TITLES) if role == "contact" else None,
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
                phone=rng.choice(PHONE_MODELS),
                tablet=rng.choice(TABLET_MODELS),
                app="",
            )

        def pool(templates: tuple[tuple[str, float], ...], size: int) -> list[str]:
            return [fill(weighted(rng, templates)) for _ in range(size)]

        return pool(DESKTOP_AGENTS, 120), pool(HANDHELD_AGENTS, 120)

    def _agent(self, index: int) -> tuple[str, str]:
        first, last = self.fi.first_name(), self.fi.last_name()
        return f"{_ascii(first)}.{_ascii(last)}", f"+35820634{1400 + index:04d}"
