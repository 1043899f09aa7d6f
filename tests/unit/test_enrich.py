from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.exceptions import ConfigError
from pipeline.policy import default_policy
from streams.enrich import (
    MaxMindCityProvider,
    NullCityProvider,
    city_provider,
    e164,
    expires_at,
    isp_org,
    normalise_email,
    parse_user_agent,
)
from tests.support.raw_events import USER_AGENTS


@pytest.mark.parametrize(("user_agent", "expected"), USER_AGENTS)
def test_browser_os_and_device_type_from_the_user_agent(user_agent: str, expected: tuple[str | None, ...]) -> None:
    assert tuple(parse_user_agent(user_agent)) == expected


def test_no_user_agent_gives_nothing() -> None:
    assert tuple(parse_user_agent(None)) == (None, None, None)


@pytest.mark.parametrize(
    ("network_name", "expected"),
    [
        ("dsl-213-216-12-9.elisa-laajakaista.fi", "elisa-laajakaista.fi"),
        ("gw1.Office.StaffPoint.FI.", "staffpoint.fi"),
        ("host.example.co.uk", "example.co.uk"),
        ("192.0.2.7", None),  # an address is not a name
        ("2001:db8::1", None),
        ("fi", None),  # a bare public suffix
        ("localhost", None),
        ("", None),
        (None, None),
    ],
)
def test_isp_org_is_the_registrable_domain_of_the_network_name(network_name: str | None, expected: str | None) -> None:
    assert isp_org(network_name) == expected


def test_identifiers_are_normalised() -> None:
    assert e164("040 123 4567") == "+358401234567"
    assert e164("+46 8 123 456 78") == "+46812345678"
    assert e164("anonymous") is None
    assert e164("  ") is None
    assert normalise_email("  Maija.M@Example.FI ") == "maija.m@example.fi"
    assert normalise_email(" ") is None


def test_retention_deadline_is_the_policy_time_field_plus_its_period() -> None:
    policy = default_policy()
    moment = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    for record in policy.records.values():
        assert expires_at(record, {record.time_field: moment}) == record.period.add_to(moment)
    with pytest.raises(TypeError, match="started_at"):
        expires_at(policy.record("chat_conversation"), {"started_at": None})


def test_the_default_city_provider_infers_no_city() -> None:
    provider = city_provider(None)
    assert isinstance(provider, NullCityProvider)
    assert provider.city("192.0.2.7") is None


def _city_db(path: Path) -> Path:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"city": {"names": {"en": "Tampere", "fi": "Tampere"}}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "FI"}})  # no city
    writer.to_db_file(str(path))
    return path


def test_a_maxmind_city_database_gives_the_city(tmp_path: Path) -> None:
    provider = city_provider(_city_db(tmp_path / "city.mmdb"))
    assert isinstance(provider, MaxMindCityProvider)
    try:
        assert provider.city("192.0.2.7") == "Tampere"
        assert provider.city("198.51.100.1") is None
        assert provider.city("203.0.113.1") is None
        assert provider.city("not an address") is None
    finally:
        provider.close()


def test_an_unreadable_city_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(ConfigError, match="RECORDS_GEOIP_CITY_DB"):
        city_provider(bad)
