"""The `records` CLI as a user runs it: a new process, its output captured as text.

`run_records` is the one runner; the environment builders below say what a run sees.
Each builder starts from this process's environment, so a caller's KAFKA_BOOTSTRAP or
RECORDS_CACHE_DIR reaches the command unless a builder replaces it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from pipeline.config import Settings

REPO = Path(__file__).resolve().parents[2]
# The CLI's entry point, started with this interpreter (the tests' virtual environment).
RECORDS = (sys.executable, "-c", "from records.cli import main; main()")


def run_records(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    check: bool = False,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `records *args` to its end with `env` (this process's environment if None),
    `stdin` as its input and `cwd` as its working directory (this process's if None).

    With `check`, a non-zero exit fails the calling test with the command's stderr; a run
    that outlives `timeout` seconds fails it too.
    """
    command = [*RECORDS, *args]
    done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"records {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def cli_env(*, without: Iterable[str] = (), without_prefixes: tuple[str, ...] = (), **values: str) -> dict[str, str]:
    """This process's environment without the variables named in `without` or starting with
    one of `without_prefixes`, with `values` set on top."""
    dropped = set(without)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not (without_prefixes and k.startswith(without_prefixes))
    }
    return {**env, **values}


def chdb_env(chdb_path: Path, **values: str) -> dict[str, str]:
    """The embedded store at `chdb_path` (never a ClickHouse server), its data directory
    beside it, and `values`."""
    store = {"RECORDS_CHDB_PATH": str(chdb_path), "RECORDS_DATA_DIR": str(chdb_path.parent / "data")}
    return {**cli_env(without=("CLICKHOUSE_URL",)), **store, **values}


def producer_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The broker of `settings` and a data directory of the test's own: no pepper and no
    schema registry of the caller's, so the demo pepper and the plain wire format apply."""
    return cli_env(
        without_prefixes=("RECORDS_PEPPER", "SCHEMA_REGISTRY"),
        KAFKA_BOOTSTRAP=settings.kafka.bootstrap,
        RECORDS_DATA_DIR=str(data_dir),
    )
