from __future__ import annotations

import tomllib
from typing import Any

import pytest

from pipeline.exceptions import ConfigError
from pipeline.policy import POLICY_FILE, default_policy, parse_policy
from pipeline.retention_period import RetentionPeriod
from pipeline.schemas import default_catalog


def _raw() -> dict[str, Any]:
    return tomllib.loads(POLICY_FILE.read_text(encoding="utf-8"))


def test_notice_retention_limits_are_the_policy() -> None:
    policy = default_policy()
    assert policy.record("chat_conversation").retention_days == 180
    assert policy.record("chat_message").retention_days == 180
    assert policy.record("call").retention_days == 730
    assert policy.record("call_recording").retention_days == 90


def test_every_record_type_names_a_schema_with_its_fields() -> None:
    catalog = default_catalog()
    for record in default_policy().records.values():
        schema = catalog.get(record.schema)
        assert record.time_field in schema.field_names, record.record_type
        missing = set(record.fields) - set(schema.field_names)
        assert not missing, f"{record.record_type}: policy fields not in {schema.name}: {missing}"


def test_consent_based_fields_name_their_consent() -> None:
    raw = _raw()
    raw["fields"]["chat_conversation"]["email"].pop("needs")
    with pytest.raises(ConfigError, match="must say which consent"):
        parse_policy(raw)


def test_unknown_needs_and_bases_are_rejected() -> None:
    raw = _raw()
    raw["fields"]["chat_conversation"]["city"]["needs"] = "cookie.everything"
    with pytest.raises(ConfigError, match="needs must be one of"):
        parse_policy(raw)
    raw = _raw()
    raw["fields"]["call"]["caller_number"]["basis"] = "because"
    with pytest.raises(ConfigError, match="basis must be one of"):
        parse_policy(raw)


def test_changing_a_retention_period_is_one_line() -> None:
    raw = _raw()
    raw["records"]["call_recording"]["retention"] = "30 days"
    assert parse_policy(raw).record("call_recording").period == RetentionPeriod(30, "DAY")


def test_direct_identifiers_are_marked() -> None:
    identifiers = set(default_policy().record("chat_conversation").identifier_fields)
    assert {"name", "email", "phone", "person_number", "app_username", "postal_address", "ip_address"} <= identifiers
    assert {"latitude", "longitude", "visitor_id"} <= identifiers
