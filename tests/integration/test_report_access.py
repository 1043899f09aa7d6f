"""The report's lines for notice §13 (personal users only, no anonymous access, an access
log) from the live endpoint the sink serves, on the real engine."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.access_roles import Role
from pipeline.access_users import UserStore
from pipeline.config import Secret, Settings
from pipeline.policy import default_policy
from retention_jobs.access_audit import access_evidence
from retention_jobs.report import Report, evaluate
from retention_jobs.report_collect import collect_evidence
from retention_jobs.report_evidence import KafkaEvidence
from sink.sink_process import apply_schema
from tests.support.endpoint import served_store

ACCESS_LINES = ("no_anonymous_access", "personal_users", "access_log")


@pytest.fixture
def serving(ch_client: Client, chdb_settings: Settings) -> Iterator[str]:
    """The store served like the sink serves it; yields the endpoint's URL."""
    apply_schema(ch_client)
    with served_store(chdb_settings) as owner:
        yield f"http://127.0.0.1:{owner.port}"


def report(ch_client: Client, settings: Settings) -> Report:
    policy = default_policy()
    now = datetime.now(UTC)
    evidence = collect_evidence(ch_client, policy, now, storage="test", kafka=KafkaEvidence(error="not asked"))
    return evaluate(policy, replace(evidence, access=access_evidence(settings)))


def analyst_query(url: str) -> None:
    token = base64.b64encode(b"alice:alice-pass-1").decode()
    request = urllib.request.Request(
        url, data=b"SELECT count() FROM analyst.calls", method="POST", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.read() == b"0\n"


def test_the_access_lines_pass_once_an_analyst_has_a_user_and_used_it(
    ch_client: Client, chdb_settings: Settings, serving: str
) -> None:
    before = report(ch_client, chdb_settings)
    assert before.line("no_anonymous_access").passed
    assert "was refused: HTTP 401" in before.line("no_anonymous_access").evidence
    assert not before.line("personal_users").passed
    assert not before.line("access_log").passed

    UserStore(chdb_settings.users_file).add("alice", Role.analyst, "alice-pass-1", datetime.now(UTC).isoformat())
    analyst_query(serving)
    after = report(ch_client, chdb_settings)

    assert [after.line(i).status for i in ACCESS_LINES] == ["pass", "pass", "pass"]
    assert after.line("personal_users").evidence == "1 personal user(s): analyst 1"
    assert "1 queries run by 1 user(s), last 20" in after.line("access_log").evidence
    assert {line.notice for line in after.lines if line.id in ACCESS_LINES} == {"§13"}


def test_a_log_others_can_read_or_an_endpoint_answering_anyone_fails(
    ch_client: Client, chdb_settings: Settings, serving: str
) -> None:
    UserStore(chdb_settings.users_file).add("alice", Role.analyst, "alice-pass-1", datetime.now(UTC).isoformat())
    analyst_query(serving)
    chdb_settings.access_log_file.chmod(0o644)

    opened = report(ch_client, chdb_settings)
    assert not opened.line("access_log").passed
    assert opened.line("access_log").evidence.endswith("file readable by others")

    access = access_evidence(chdb_settings)
    assert access is not None
    answered = replace(opened.evidence, access=replace(access, anonymous_refused=False))
    assert not evaluate(default_policy(), answered).line("no_anonymous_access").passed


def test_a_server_keeps_its_own_users_so_no_access_lines(chdb_settings: Settings) -> None:
    server = replace(chdb_settings, clickhouse_url=Secret("http://someone:pw@127.0.0.1:1/records"))
    assert access_evidence(server) is None
