"""`records up` / `down` / `status` as a user runs them, against a broker of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.local_kafka import free_port

REPO = Path(__file__).resolve().parents[2]


def _records(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RECORDS_DATA_DIR": str(tmp_path), "RECORDS_CACHE_DIR": str(REPO / ".cache")}


def _java_pids_of(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(state_dir) in cmdline:
                pids.append(int(proc.name))
    return pids


def test_up_twice_is_harmless_and_down_leaves_no_java(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    first = _records(env, "up", "--port", str(port))
    assert first.returncode == 0, first.stderr
    assert f"broker up on 127.0.0.1:{port}" in first.stdout
    second = _records(env, "up", "--port", str(port))
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    status = _records(env, "status")
    assert f"running on 127.0.0.1:{port}" in status.stdout
    assert len(_java_pids_of(tmp_path)) == 1

    down = _records(env, "down")
    assert down.returncode == 0 and "broker stopped" in down.stdout
    assert _java_pids_of(tmp_path) == []
    again = _records(env, "down")
    assert again.returncode == 0 and "not running" in again.stdout
    assert "not running" in _records(env, "status").stdout


def test_port_in_use_is_one_clear_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _records(env, "up", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use by another program"


def test_missing_java_is_one_clear_line(env: dict[str, str]) -> None:
    result = _records({**env, "PATH": "/nonexistent"}, "up", "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: `java` is not installed")
