"""CLICKHOUSE_URL parsing and secret hygiene of the ClickHouse factory; no engine needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.clickhouse import connect, describe_target, parse_server_url
from pipeline.config import load_settings
from pipeline.exceptions import ClickHouseError

PASSWORD = "s3cr3t-p@ss"
URL = "https://analyst:s3cr3t-p%40ss@ch.example.com/records"


def test_url_becomes_connection_kwargs() -> None:
    target = parse_server_url(URL)

    assert target.client_kwargs() == {
        "host": "ch.example.com",
        "port": 8443,
        "username": "analyst",
        "password": PASSWORD,
        "database": "records",
        "secure": True,
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://ch:8123", ("ch", 8123, "default", "", None, False)),
        ("http://u:p@10.0.0.5/", ("10.0.0.5", 8123, "u", "p", None, False)),
        ("http://u:p@ch:9000/db", ("ch", 9000, "u", "p", "db", False)),
        ("https://u@ch", ("ch", 8443, "u", "", None, True)),
    ],
)
def test_url_defaults(url: str, expected: tuple[object, ...]) -> None:
    kwargs = parse_server_url(url).client_kwargs()

    assert tuple(kwargs[key] for key in ("host", "port", "username", "password", "database", "secure")) == expected


def test_description_and_repr_never_show_credentials() -> None:
    settings = load_settings(env={"CLICKHOUSE_URL": URL})
    target = parse_server_url(URL)

    assert describe_target(settings) == "server ch.example.com:8443/records"
    for text in (describe_target(settings), target.describe()):
        assert "analyst" not in text
    for text in (describe_target(settings), target.describe(), repr(target), repr(settings)):
        assert "s3cr3t" not in text


def test_invalid_port_error_does_not_echo_the_url() -> None:
    with pytest.raises(ClickHouseError) as caught:
        parse_server_url("http://u:hunter2@ch:notaport/db")

    assert "hunter2" not in str(caught.value)
    assert "for host ch has an invalid port" in str(caught.value)


def test_unreachable_server_error_names_host_and_port_only() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(env={"CLICKHOUSE_URL": f"http://analyst:{PASSWORD}@127.0.0.1:{port}/records"})

    with pytest.raises(ClickHouseError) as caught:
        connect(settings)

    message = str(caught.value)
    assert message.startswith(f"cannot reach ClickHouse server 127.0.0.1:{port}/records")
    assert "\n" not in message
    assert "s3cr3t" not in message
    assert "analyst" not in message


def test_path_is_refused_in_server_mode(tmp_path: Path) -> None:
    settings = load_settings(env={"CLICKHOUSE_URL": URL})

    with pytest.raises(ClickHouseError, match="embedded chDB only"):
        connect(settings, path=tmp_path)
