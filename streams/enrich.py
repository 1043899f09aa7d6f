"""Enrichment: what the streams stage derives from a raw event. Pure functions with
per-value caches (user agents, network names and phone numbers repeat).

- browser, OS and device type from the User-Agent with ua-parser 1.0 (its regexes are
  maintained with the uap-core project; `ua-parser[regex]` runs them in Rust);
- the ISP or subscriber organisation from the network (reverse-DNS) name: its
  registrable domain by the Public Suffix List shipped in `publicsuffixlist`, e.g.
  `dsl-213-216-12-9.elisa-laajakaista.fi` -> `elisa-laajakaista.fi`;
- a coarse city from the network address through a `CityProvider`. The default,
  `NullCityProvider`, returns no city: without RECORDS_GEOIP_CITY_DB the `city` field
  stays null. With it set, `MaxMindCityProvider` looks the address up offline in that
  MaxMind-format (.mmdb) city database; nothing leaves the machine;
- E.164 phone numbers (`pipeline.subject_keys.normalise_phone`) and lower-cased emails;
- the retention deadline of a row: its policy `time_field` + `retention` (calendar).

Whether a derived value may be stored is not decided here: `enforce_consent` strips
what the policy does not allow, derived fields included.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import ua_parser
from publicsuffixlist import PublicSuffixList

from pipeline.exceptions import ConfigError
from pipeline.policy import RecordPolicy
from pipeline.subject_keys import normalise_phone

PHONE = "phone"
TABLET = "tablet"
COMPUTER = "computer"

_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Debian", "Fedora", "Chrome OS", "FreeBSD", "OpenBSD", "NetBSD"}
)
_MOBILE_OS = frozenset({"Android", "iOS", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "HarmonyOS"})
_TABLET_HINTS = ("ipad", "tablet", "kindle", "playbook", "nexus 7", "nexus 9", "nexus 10")


class Device(NamedTuple):
    browser: str | None
    os: str | None
    device_type: str | None


_NO_DEVICE = Device(None, None, None)


@lru_cache(maxsize=16384)
def parse_user_agent(user_agent: str | None) -> Device:
    """Browser family + major version, OS family and phone/tablet/computer (None when unknown)."""
    if not user_agent:
        return _NO_DEVICE
    result = ua_parser.parse(user_agent)
    agent, os, device = result.user_agent, result.os, result.device
    browser = None
    if agent is not None and agent.family != "Other":
        browser = f"{agent.family} {agent.major}" if agent.major else agent.family
    os_family = os.family if os is not None and os.family != "Other" else None
    return Device(browser, os_family, _device_type(user_agent, os_family, device))


def _device_type(user_agent: str, os_family: str | None, device: Any) -> str | None:
    family = (device.family or "") if device is not None else ""
    brand = (device.brand or "") if device is not None else ""
    if family == "Spider":
        return None  # a crawler is no one's device
    hints = f"{family} {brand}".lower()
    if any(hint in hints for hint in _TABLET_HINTS):
        return TABLET
    if os_family == "Android":
        # Android phones announce "Mobile"; Android tablets do not.
        return PHONE if "Mobile" in user_agent else TABLET
    if os_family in _MOBILE_OS or family == "iPhone" or "Mobile" in user_agent:
        return PHONE
    if os_family in _DESKTOP_OS or family == "Mac":
        return COMPUTER
    return None


_PSL = PublicSuffixList()


@lru_cache(maxsize=16384)
def isp_org(network_name: str | None) -> str | None:
    """The registrable domain of a reverse-DNS name; None for addresses and bare suffixes."""
    if not network_name:
        return None
    name = network_name.strip().rstrip(".").lower()
    if not name or " " in name:
        return None
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None  # no reverse-DNS name: an address says nothing about the organisation
    return _PSL.privatesuffix(name)


def normalise_email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip().lower()
    return email or None


def e164(phone: str | None) -> str | None:
    """E.164 form, or None when the number cannot be parsed."""
    if phone is None or not phone.strip():
        return None
    return normalise_phone(phone.strip())


def expires_at(policy: RecordPolicy, row: Mapping[str, Any]) -> datetime:
    """Retention deadline of a row: the policy's time field + retention period."""
    moment = row[policy.time_field]
    if not isinstance(moment, datetime):
        raise TypeError(f"{policy.record_type}.{policy.time_field} must be a timestamp")
    return policy.period.add_to(moment)


class CityProvider(Protocol):
    """Coarse city of a network address, offline. Returns None when unknown."""

    def city(self, ip_address: str) -> str | None: ...

    def close(self) -> None: ...


class NullCityProvider:
    """The default: no city database is configured, so no city is ever inferred."""

    def city(self, ip_address: str) -> str | None:
        return None

    def close(self) -> None:
        return None


class MaxMindCityProvider:
    """City names (English) from a MaxMind-format city database, e.g. GeoLite2-City.mmdb."""

    def __init__(self, path: Path) -> None:
        import maxminddb
        from maxminddb.errors import InvalidDatabaseError

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, InvalidDatabaseError) as exc:
            raise ConfigError(f"cannot open the city database RECORDS_GEOIP_CITY_DB: {exc}") from None
        self._cached = lru_cache(maxsize=65536)(self._lookup)

    def city(self, ip_address: str) -> str | None:
        return self._cached(ip_address)

    def _lookup(self, ip_address: str) -> str | None:
        try:
            found = self._reader.get(ip_address.strip())
        except ValueError:  # not an address
            return None
        if not isinstance(found, Mapping):
            return None
        city = found.get("city")
        names = city.get("names") if isinstance(city, Mapping) else None
        name = names.get("en") if isinstance(names, Mapping) else None
        return name if isinstance(name, str) and name else None

    def close(self) -> None:
        self._reader.close()


def city_provider(geoip_city_db: Path | None) -> CityProvider:
    """The provider the settings ask for (RECORDS_GEOIP_CITY_DB), or the null one."""
    if geoip_city_db is None:
        return NullCityProvider()
    return MaxMindCityProvider(geoip_city_db)
