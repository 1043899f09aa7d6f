"""`records worker streams` needs the DPO's public key (to verify requests) and its own
command signing key (to sign what it tells the sink). Without either it refuses to start
with one line naming the setting; with `--demo` it generates the missing pair locally,
private half 0600, and starts with it. The worker's loop itself (`run_worker`) is replaced
for the start: these tests need no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import streams.worker_process
from pipeline.dsr import generate_keypair, load_public_keys, load_signer
from records.cli import app as records_cli

PEPPER = "ab" * 32


def _refused(env: dict[str, str]) -> list[str]:
    """What `records worker streams` writes to stderr when it refuses to start (exit 1)."""
    records = str(Path(sys.executable).with_name("records"))
    refused = subprocess.run([records, "worker", "streams"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    return refused.stderr.strip().splitlines()


def _started_with_demo(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], unset: tuple[str, ...]) -> dict[str, Any]:
    """The keyword arguments `records worker streams --demo` would run the worker with, in
    `env` with the `unset` settings removed."""
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(streams.worker_process, "run_worker", lambda *_args, **kwargs: started.append(kwargs))
    for name in (*unset, "RECORDS_PEPPER_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(records_cli, ["worker", "streams", "--demo"])
    assert result.exit_code == 0, result.output
    [kwargs] = started
    return kwargs


def test_the_streams_worker_refuses_to_start_without_a_dpo_key_unless_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"RECORDS_DATA_DIR": str(tmp_path), "RECORDS_PEPPER": PEPPER, "PATH": "/usr/bin:/bin"}
    assert _refused(env) == [
        f"error: no DPO public key at {tmp_path / 'secrets' / 'dpo_ed25519.pub.pem'}: set RECORDS_DPO_PUBLIC_KEYS"
    ]

    started = _started_with_demo(monkeypatch, env, unset=("RECORDS_DPO_PUBLIC_KEYS", "RECORDS_DPO_PRIVATE_KEY"))
    private = tmp_path / "secrets" / "dpo_ed25519.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert list(started["trusted"].keys) == [load_signer(private).key_id]  # the demo DPO's key is the trusted one


def test_the_streams_worker_refuses_to_start_without_a_command_key_unless_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dpo_private, dpo_public = tmp_path / "dpo.pem", tmp_path / "dpo.pub.pem"
    generate_keypair(dpo_private, dpo_public)
    env = {
        "RECORDS_DATA_DIR": str(tmp_path),
        "RECORDS_PEPPER": PEPPER,
        "RECORDS_DPO_PUBLIC_KEYS": str(dpo_public),
        "PATH": "/usr/bin:/bin",
    }
    missing = tmp_path / "secrets" / "command_ed25519.pem"
    assert _refused(env) == [
        f"error: no command signing key at {missing}: "
        "set RECORDS_COMMAND_KEY (or run with --demo to generate one locally)"
    ]

    started = _started_with_demo(monkeypatch, env, unset=("RECORDS_COMMAND_KEY", "RECORDS_COMMAND_PUBLIC_KEYS"))
    assert missing.stat().st_mode & 0o777 == 0o600
    public = tmp_path / "secrets" / "command_ed25519.pub.pem"
    trusted = load_public_keys((public,), holder="command", setting="RECORDS_COMMAND_PUBLIC_KEYS")
    assert list(trusted.keys) == [started["command_signer"].key_id]  # the sink's default trusts the demo worker's key
