"""Golden files: generated expected outputs kept in tests/golden/ as `<name>.golden`
(e.g. `clickhouse_cluster_ddl.sql.golden`), compared byte for byte.

They are written by the tests, never by hand: after an intended change run the test with
`RECORDS_UPDATE_GOLDEN=1` set, which rewrites the file before comparing, and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def golden_path(name: str) -> Path:
    """The golden file for output `name` (e.g. `clickhouse_cluster_ddl.sql`)."""
    return GOLDEN_DIR / f"{name}.golden"


def assert_golden(name: str, text: str) -> None:
    """Assert that `text` equals the golden file of `name`; with RECORDS_UPDATE_GOLDEN set,
    write `text` to it first."""
    path = golden_path(name)
    if os.environ.get("RECORDS_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs (regenerate if intended, and review)"
