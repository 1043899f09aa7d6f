"""The pipeline a DPO's requests go through, end to end: `records worker streams` and
`records worker sink` as subprocesses on the shared broker, and `records dsr ...` run as
the DPO runs it, with the test DPO key pair (tests/support/worker_secrets.py).

Both workers run under consumer groups of their own, committed at the end of their input
topics first, so they read only the calling test's messages. A pytest plugin (registered in
tests/conftest.py): the `dpo_line` fixture is such a pipeline for one test.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.kafka.admin import KafkaAdmin
from pipeline.topic_access import SINK
from tests.support.cli import cli_env, run_records
from tests.support.kafka_offsets import start_group_at_end
from tests.support.processes import SinkProcess, WorkerProcess, running_streams
from tests.support.worker_secrets import write_dpo_keys


def unique_number() -> int:
    """A seven-digit number for identifiers unique to one run (emails, phone numbers, ids)."""
    return secrets.randbelow(9_000_000) + 1_000_000


def wait_for(condition: Callable[[], object], timeout: float, failure: Callable[[], str]) -> None:
    """Poll `condition()` every 0.5 s until it is truthy; after `timeout` seconds fail the
    calling test with `failure()` as the message."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure()
        time.sleep(0.5)


@dataclass(frozen=True)
class Issued:
    """A request the DPO issued and its receipt, as `records dsr status --wait` printed it."""

    request_id: str
    status: subprocess.CompletedProcess[str]

    @property
    def receipt(self) -> dict[str, Any]:
        receipt: dict[str, Any] = json.loads(self.status.stdout)
        return receipt


@dataclass(frozen=True)
class DpoPipeline:
    """A running streams worker and sink, the sink's store as `client`, and the DPO's CLI."""

    streams: WorkerProcess
    sink: SinkProcess
    client: Client
    dpo_env: dict[str, str]

    def sink_log_tail(self) -> str:
        return self.sink.log.read_text()[-3000:]

    def issue(self, *args: str, reason: str, verified_by: str) -> Issued:
        """`records dsr *args` with `reason` and the identity check `verified_by`, then
        `records dsr status --wait 120`; fails the test if either exits non-zero."""
        issued = run_records(
            "dsr", *args, "--reason", reason, "--identity-verified-by", verified_by, env=self.dpo_env, timeout=180
        )
        assert issued.returncode == 0, issued.stderr
        request_id = issued.stdout.strip().splitlines()[-1]
        status = run_records("dsr", "status", request_id, "--wait", "120", env=self.dpo_env, timeout=180)
        assert status.returncode == 0, f"{status.stdout}\n{status.stderr}\n{self.sink_log_tail()}"
        return Issued(request_id, status)


def dpo_env(bootstrap: str, private_key: Path, public_key: Path) -> dict[str, str]:
    """The DPO's CLI on `bootstrap` with the test key pair (not the caller's ClickHouse or passphrase)."""
    return cli_env(
        without=("CLICKHOUSE_URL", "RECORDS_DPO_KEY_PASSPHRASE"),
        KAFKA_BOOTSTRAP=bootstrap,
        RECORDS_DPO_PRIVATE_KEY=str(private_key),
        RECORDS_DPO_PUBLIC_KEYS=str(public_key),
    )


@contextlib.contextmanager
def dpo_pipeline(bootstrap: str, admin: KafkaAdmin, chdb_path: Path, work: Path, name: str) -> Iterator[DpoPipeline]:
    """A streams worker (app id with `name` in it) and a sink (group `name-sink-...`) on the
    store at `chdb_path`, both trusting the test DPO key and the sink trusting the worker's
    command key; the sink is stopped (SIGTERM) and the worker's changelogs deleted after."""
    private_key, public_key = write_dpo_keys(work)
    with running_streams(bootstrap, admin, work, name) as streams:
        group = f"{name}-sink-{uuid.uuid4().hex[:8]}"
        start_group_at_end(bootstrap, group, SINK.reads)
        trusted = {
            "RECORDS_DPO_PUBLIC_KEYS": str(public_key),  # the sink checks the DPO's signatures too
            "RECORDS_COMMAND_PUBLIC_KEYS": str(streams.command_public_key),  # and the stage's
        }
        sink = SinkProcess(chdb_path, bootstrap, group, "", work / "sink.log", extra_env=trusted)
        try:
            client = sink.client(sink.owner())
            yield DpoPipeline(streams, sink, client, dpo_env(bootstrap, private_key, public_key))
        finally:
            sink.kill(signal.SIGTERM)


@pytest.fixture
def dpo_line(
    request: pytest.FixtureRequest, kafka_bootstrap: str, kafka_admin: KafkaAdmin, chdb_path: Path, tmp_path: Path
) -> Iterator[DpoPipeline]:
    """`dpo_pipeline` for one test, its workers named after the test module (`test_dsr_e2e`: `dsr-e2e`)."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    with dpo_pipeline(kafka_bootstrap, kafka_admin, chdb_path, tmp_path, name) as line:
        yield line
