"""Access exports do not outlive their purpose (issue 11, finding 4), on the real engine
(chDB): an erasure removes the subject's earlier exports, and `records retention run`
removes exports older than the policy's `exports.retention_days`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings, load_settings
from pipeline.policy import default_policy
from pipeline.serde import Serde
from sink.dsr_commands import DsrExecutor
from sink.dsr_export import collect, document, export_path, write_export
from sink.dsr_storage import subject_tables
from sink.sink_process import apply_schema
from tests.support.cli import chdb_env, run_records
from tests.support.sink_store import erasure_command, model, store
from tests.support.stored_records import record

ANNA = ["a" * 64, "b" * 64]
BERT = ["c" * 64]


def _export(client: Client, settings: Settings, keys: list[str]) -> Path:
    """What the sink's ACCESS handler writes for a subject."""
    tables = subject_tables(table_models())
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    content = document(
        default_policy(),
        tables,
        collect(client, tables, keys),
        request_id=request_id,
        issued_at=now,
        generated_at=now,
    )
    return write_export(export_path(settings.data_dir, request_id), content)


def test_an_erasure_removes_the_subject_s_earlier_exports(ch_client: Client, chdb_settings: Settings) -> None:
    apply_schema(ch_client)
    now = datetime.now(UTC).replace(microsecond=0)
    calls = model("calls")
    for n, keys in enumerate((ANNA, BERT)):
        value = record(calls.schema, n, subject_keys=keys, ingested_at=now - timedelta(minutes=5))
        store(ch_client, calls, [value])
    anna_by_phone = _export(ch_client, chdb_settings, ANNA[1:])
    anna_by_email = _export(ch_client, chdb_settings, ANNA[:1])
    bert = _export(ch_client, chdb_settings, BERT)
    assert anna_by_phone.exists() and anna_by_email.exists()

    [outcome] = DsrExecutor(chdb_settings, serde=Serde()).erase(ch_client, [erasure_command(ANNA, now)]).values()

    assert not anna_by_phone.exists() and not anna_by_email.exists()
    assert bert.exists()
    assert outcome.store_counts["exports"] == 2


def test_retention_run_removes_exports_older_than_the_policy_allows(chdb_settings: Settings, tmp_path: Path) -> None:
    with connect(chdb_settings) as client:
        apply_schema(client)
    exports = chdb_settings.data_dir / "exports"
    exports.mkdir(parents=True, mode=0o700)
    old, fresh = exports / f"{uuid.uuid4()}.json", exports / f"{uuid.uuid4()}.json"
    for path in (old, fresh):
        path.write_text('{"records": {}}', encoding="utf-8")
    limit = default_policy().export_retention
    stale = time.time() - limit.total_seconds() - 3600
    os.utime(old, (stale, stale))
    env = {
        **os.environ,
        "RECORDS_DATA_DIR": str(chdb_settings.data_dir),
        "RECORDS_CHDB_PATH": str(chdb_settings.chdb_path),
    }
    assert load_settings(env).data_dir == chdb_settings.data_dir

    done = subprocess.run(
        [str(Path(sys.executable).with_name("records")), "retention", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"exports older than {limit.days} d: 1 removed, 1 kept" in done.stdout
    assert not old.exists() and fresh.exists()


def test_the_report_fails_the_exports_line_until_an_expired_export_is_removed(chdb_settings: Settings) -> None:
    with connect(chdb_settings) as client:
        apply_schema(client)
    exports = chdb_settings.data_dir / "exports"
    exports.mkdir(parents=True, mode=0o700)
    old = exports / f"{uuid.uuid4()}.json"
    old.write_text('{"records": {}}', encoding="utf-8")
    old.chmod(0o600)
    stale = time.time() - default_policy().export_retention.total_seconds() - 3600
    os.utime(old, (stale, stale))
    env = chdb_env(chdb_settings.chdb_path, KAFKA_BOOTSTRAP="127.0.0.1:1")  # Kafka lines fail; not these

    def exports_line() -> dict[str, object]:
        report = json.loads(run_records("report", "--json", env=env).stdout)
        return next(line for line in report["lines"] if line["id"] == "exports_expire")

    before = exports_line()
    assert not before["passed"] and "1 export file(s) held, 1 older than 30 d" in str(before["evidence"])
    assert run_records("retention", "run", env=env).returncode == 0
    after = exports_line()
    assert after["passed"] and str(after["evidence"]).startswith("0 export file(s) held")
