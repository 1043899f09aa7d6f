"""`records worker sink` reads the keys its DSR executor verifies with when it starts,
through records/wiring.py, as the streams worker does: the DPO's public keys
(RECORDS_DPO_PUBLIC_KEYS) and the streams stage's command public keys
(RECORDS_COMMAND_PUBLIC_KEYS). A missing or unreadable one stops it before it consumes
anything, with one line naming the setting; it never starts and finds out at the first
command. The sink's loop itself (`run_sink`) is replaced here: these tests need no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sink.sink_process
from pipeline.dsr import generate_keypair
from pipeline.exceptions import ConfigError
from records.cli import app as records_cli
from records.local_kafka import free_port
from sink.dsr_commands import DsrExecutor

SINK = ["worker", "sink", "--no-http", "--retention-every", "0"]


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[DsrExecutor]:
    """The DSR executors `records worker sink` would have run with (run_sink replaced), in
    an environment with a data directory of the test's own and no key settings."""
    runs: list[DsrExecutor] = []

    def run_sink(*_args: Any, commands: Any, **_kwargs: Any) -> None:
        runs.extend(handler.handle.__self__ for handler in commands)

    monkeypatch.setattr(sink.sink_process, "run_sink", run_sink)
    for name in ("RECORDS_DPO_PUBLIC_KEYS", "RECORDS_COMMAND_PUBLIC_KEYS", "CLICKHOUSE_URL", "RECORDS_CHDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECORDS_DATA_DIR", str(tmp_path / "data"))
    return runs


def _keys(directory: Path, holder: str) -> tuple[Path, str]:
    """A fresh key pair under `directory`: the public key's path and its key id."""
    directory.mkdir(parents=True, exist_ok=True)
    kid = generate_keypair(directory / f"{holder}.pem", directory / f"{holder}.pub.pem")
    return directory / f"{holder}.pub.pem", kid


def test_the_sink_starts_with_the_dpo_and_command_keys_the_settings_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[DsrExecutor]
) -> None:
    dpo, dpo_kid = _keys(tmp_path / "keys", "dpo")
    command, command_kid = _keys(tmp_path / "keys", "command")
    monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(dpo))
    monkeypatch.setenv("RECORDS_COMMAND_PUBLIC_KEYS", str(command))
    result = CliRunner().invoke(records_cli, SINK)
    assert result.exit_code == 0, result.output
    [executor] = started
    assert list(executor.trusted.keys) == [dpo_kid]
    assert list(executor.command_keys.keys) == [command_kid]


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ((), "no DPO public key at {data}/secrets/dpo_ed25519.pub.pem: set RECORDS_DPO_PUBLIC_KEYS"),
        (
            ("dpo",),
            "no command public key at {data}/secrets/command_ed25519.pub.pem: set RECORDS_COMMAND_PUBLIC_KEYS",
        ),
    ],
    ids=["no-dpo-key", "no-command-key"],
)
def test_without_a_key_the_sink_does_not_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    started: list[DsrExecutor],
    configured: tuple[str, ...],
    message: str,
) -> None:
    if "dpo" in configured:
        dpo, _ = _keys(tmp_path / "keys", "dpo")
        monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(dpo))
    result = CliRunner().invoke(records_cli, SINK)
    assert started == []
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == message.format(data=tmp_path / "data")


def test_an_unreadable_command_key_stops_the_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[DsrExecutor]
) -> None:
    dpo, _ = _keys(tmp_path / "keys", "dpo")
    garbled = tmp_path / "keys" / "command.pub.pem"
    garbled.write_text("not a key\n")
    monkeypatch.setenv("RECORDS_DPO_PUBLIC_KEYS", str(dpo))
    monkeypatch.setenv("RECORDS_COMMAND_PUBLIC_KEYS", str(garbled))
    result = CliRunner().invoke(records_cli, SINK)
    assert started == []
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "command.pub.pem is not a PEM public key"


def test_the_refusal_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """As a user sees it: a real `records worker sink` process, no key configured. Its
    broker address is a free port where nothing listens: it must stop before using it."""
    env = {
        "RECORDS_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "RECORDS_SINK_METRICS_PORT": "0",
        "PATH": "/usr/bin:/bin",
    }
    records = str(Path(sys.executable).with_name("records"))
    refused = subprocess.run([records, *SINK], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: no DPO public key at {tmp_path / 'secrets' / 'dpo_ed25519.pub.pem'}: set RECORDS_DPO_PUBLIC_KEYS"
    ]
