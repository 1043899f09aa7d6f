"""deploy/compose/compose.yaml, read as Docker Compose would (no Docker here): official
images, workers built from deploy/Dockerfile, and worker settings that are the
documented ones (pipeline/config.py and the README's Configuration table) and that
`load_settings` accepts with the values compose gives them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

import pipeline.config
from pipeline.config import load_settings
from records.cli import app as records_cli

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
SAMPLE = {"CLICKHOUSE_PASSWORD": "s3cret"}  # what the operator exports before `docker compose up`


def _interpolate(value: str) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` with SAMPLE as the environment."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in SAMPLE:
            return SAMPLE[name]
        if op == ":-":
            return arg or ""
        raise AssertionError(f"compose needs {name} set: {arg}")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _workers() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    return {
        name: svc for name, svc in services.items() if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {name: _interpolate(str(value)) for name, value in service.get("environment", {}).items()}


def _documented_in(table_text: str, names: str) -> set[str]:
    out: set[str] = set()
    for row in table_text.splitlines():
        if row.startswith("|") and not row.startswith("| ---"):
            out.update(re.findall(names, row.split("|")[1]))
    return out


def config_settings() -> set[str]:
    """The variables pipeline/config.py documents (its module docstring's table)."""
    return _documented_in(pipeline.config.__doc__ or "", r"[A-Z][A-Z0-9_]+(?:<NAME>)?")


def readme_settings() -> set[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return _documented_in(section, r"`([A-Z][A-Z0-9_]+(?:<NAME>)?)`")


def _documented(name: str, documented: set[str]) -> bool:
    return name in documented or any(d.endswith("<NAME>") and name.startswith(d[: -len("<NAME>")]) for d in documented)


def test_the_images_are_the_official_ones_pinned() -> None:
    services = _compose()["services"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+", services["clickhouse"]["image"])
    for name, worker in _workers().items():
        assert (COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file(), name


def test_workers_are_the_streams_sink_retention_and_init() -> None:
    assert set(_workers()) == {"init", "streams", "sink", "retention"}


@pytest.mark.parametrize("service", ["init", "streams", "sink", "retention"])
def test_worker_settings_are_documented_and_accepted(service: str) -> None:
    env = _env(_workers()[service])
    assert env, service
    for name in env:
        assert _documented(name, config_settings()), f"{service}: {name} is not documented in pipeline/config.py"
        assert _documented(name, readme_settings()), f"{service}: {name} is not in the README's Configuration"
    settings = load_settings(env)
    assert settings.kafka.bootstrap == "kafka:9092"
    assert not settings.embedded_clickhouse


def test_the_documentation_tables_agree() -> None:
    assert config_settings() == readme_settings()


def test_workers_point_at_the_compose_services() -> None:
    services = _compose()["services"]
    kafka = services["kafka"]["environment"]
    clickhouse = {k: _interpolate(str(v)) for k, v in services["clickhouse"]["environment"].items()}
    for name, worker in _workers().items():
        env = _env(worker)
        assert f"PLAINTEXT://{env['KAFKA_BOOTSTRAP']}" in kafka["KAFKA_ADVERTISED_LISTENERS"], name
        url = urlsplit(env["CLICKHOUSE_URL"])
        assert (url.hostname, url.port) == ("clickhouse", 8123), name
        assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
        assert url.path == f"/{clickhouse['CLICKHOUSE_DB']}", name


KEY_FILES = ("RECORDS_PEPPER_FILE", "RECORDS_DPO_PUBLIC_KEYS", "RECORDS_COMMAND_KEY", "RECORDS_COMMAND_PUBLIC_KEYS")


def test_secrets_and_metrics_ports_line_up() -> None:
    compose = _compose()
    for name, worker in _workers().items():
        env = _env(worker)
        attached = set(worker.get("secrets", []))
        assert attached <= set(compose["secrets"]), name
        for variable in KEY_FILES:
            if variable in env and name in ("streams", "sink"):
                secret = env[variable].removeprefix("/run/secrets/")
                assert secret in attached, (name, variable)
        for variable in ("RECORDS_STREAMS_METRICS_PORT", "RECORDS_SINK_METRICS_PORT"):
            if variable in env:
                assert env[variable] in worker["expose"], (name, variable)
    streams, sink = _env(_workers()["streams"]), _env(_workers()["sink"])
    assert "RECORDS_PEPPER_FILE" in streams and "RECORDS_PEPPER" not in streams  # the pepper as a file
    assert "RECORDS_PEPPER_FILE" not in sink and "pepper" not in _workers()["sink"]["secrets"]  # the sink needs none
    # the keys both workers load at start-up (records/wiring.py): streams signs commands, the sink checks them
    assert streams["RECORDS_COMMAND_KEY"].startswith("/run/secrets/") and "RECORDS_COMMAND_KEY" not in sink
    assert sink["RECORDS_COMMAND_PUBLIC_KEYS"].startswith("/run/secrets/") and "RECORDS_DPO_PUBLIC_KEYS" in sink
    assert "command_key" not in _workers()["sink"]["secrets"]  # the private half stays with streams


def test_worker_commands_exist_in_the_cli() -> None:
    for name, worker in _workers().items():
        command = worker["command"]
        lines = command[2].split("&&") if command[:2] == ["sh", "-c"] else [" ".join(command)]
        for line in lines:
            words = re.sub(r"^.*?do ", "", line).split(";")[0].split()
            assert words[0] == "records", (name, line)
            path = [w for w in words[1:] if not w.startswith("-") and w not in ("info",)]
            result = CliRunner().invoke(records_cli, [*path, "--help"])
            assert result.exit_code == 0, (name, path, result.output)
