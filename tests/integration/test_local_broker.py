"""`records up` / `down` / `status` as a user runs them, with a broker of their own (not
the session's) in a temporary data directory."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.cli import run_records
from tests.support.ports import free_port_pair

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kafka


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RECORDS_DATA_DIR": str(tmp_path), "RECORDS_CACHE_DIR": str(REPO / ".cache")}


def _brokers_in(state_dir: Path) -> list[int]:
    """Pids of every broker process whose files are under `state_dir`."""
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


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped by init."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_twice_is_harmless_and_down_leaves_no_broker(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port_pair()
    try:
        first = run_records("up", "--port", str(port), env=env, cwd=REPO)
        assert first.returncode == 0, first.stderr
        assert f"broker up on 127.0.0.1:{port} in " in first.stdout
        [pid] = _brokers_in(tmp_path)

        second = run_records("up", "--port", str(port), env=env, cwd=REPO)
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("already running")
        assert _brokers_in(tmp_path) == [pid]
        assert f"running on 127.0.0.1:{port} (pid {pid}" in run_records("status", env=env, cwd=REPO).stdout
        assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0, "the broker logs to its state directory"
    finally:
        down = run_records("down", env=env, cwd=REPO)
    assert down.returncode == 0 and down.stdout.startswith("broker stopped in ")
    assert _brokers_in(tmp_path) == []
    assert not _running(pid)

    again = run_records("down", env=env, cwd=REPO)
    assert again.returncode == 0 and again.stdout.strip() == "broker not running"
    assert "not running" in run_records("status", env=env, cwd=REPO).stdout


def test_a_port_in_use_is_one_clear_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_records("up", "--port", str(port), env=env, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use by another program"


def test_missing_java_is_one_clear_line(env: dict[str, str]) -> None:
    result = run_records("up", "--port", str(free_port_pair()), env={**env, "PATH": "/nonexistent"}, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: `java` is not installed or not on PATH")
