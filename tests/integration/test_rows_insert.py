"""sink/rows_insert.py on the real engine (chDB), in a child interpreter so that what this
test process imported does not count: the sink's small inserts store every column type
they carry (times to the millisecond, Bool, Enum, Map of Map, NULL) and never load pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, sys
from datetime import datetime, timedelta, timezone
from pipeline.clickhouse import connect
from pipeline.config import load_settings
from sink.dsr_storage import EXECUTED, EXECUTED_COLUMNS, RESTRICTION_COLUMNS, RESTRICTIONS
from sink.rows_insert import insert_rows
from sink.sink_process import apply_schema

root = sys.argv[1]
client = connect(load_settings(env={"RECORDS_DATA_DIR": root + "/data", "RECORDS_CHDB_PATH": root + "/chdb"}))
apply_schema(client)
at = datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
naive = datetime(2026, 11, 30, 21, 0, 0, 5000)
restriction = ("key-'1\\\\", "RESTRICTION", True, "req-1", at)
executed = {
    "request_id": "req-2", "request_type": "ERASURE", "status": "COMPLETED", "requested_at": naive,
    "completed_at": at, "store_counts": {"records.calls": 3}, "detail": None, "schema_version": 2,
    "shard_counts": {"records.calls": {"shard-1": 3}}, "identity_verified_by": None,
    "request_sha256": "ab" * 32, "verified_at": at,
}
counts = [
    insert_rows(client, RESTRICTIONS, RESTRICTION_COLUMNS, [restriction]),
    insert_rows(client, EXECUTED, EXECUTED_COLUMNS, [[executed[c] for c in EXECUTED_COLUMNS]]),
    insert_rows(client, RESTRICTIONS, RESTRICTION_COLUMNS, []),
]
got_restriction = client.query(
    f"SELECT subject_key, kind, active, request_id, toString(updated_at) FROM {RESTRICTIONS}"
).result_rows
got_executed = client.query(
    f"SELECT request_type, toString(requested_at), toString(completed_at), store_counts, detail, shard_counts "
    f"FROM {EXECUTED}"
).result_rows
client.close()
print(json.dumps({
    "counts": counts,
    "restriction": [list(r) for r in got_restriction],
    "executed": [list(r) for r in got_executed],
    "pandas": "pandas" in sys.modules,
}))
"""


def test_small_inserts_store_every_column_type_without_loading_pandas(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["counts"] == [1, 1, 0]
    # 23:59:58.123456 at UTC+2 is 21:59:58.123 UTC; a naive time is taken as UTC
    assert result["restriction"] == [["key-'1\\", "RESTRICTION", True, "req-1", "2026-11-30 21:59:58.123"]]
    assert result["executed"] == [
        [
            "ERASURE",
            "2026-11-30 21:00:00.005",
            "2026-11-30 21:59:58.123",
            {"records.calls": 3},
            None,
            {"records.calls": {"shard-1": 3}},
        ]
    ]
    assert result["pandas"] is False
