"""Who owns an embedded chDB directory, and where it serves queries: the owner file
`<chdb dir>.owner.json` ({"pid", "host", "port", ...}) next to the directory.

In embedded mode one OS process owns the chDB directory (the sink); it writes this file
while it serves the read-only endpoint (pipeline/clickhouse_http.py), and
`pipeline.clickhouse.connect` reads it to hand out an HTTP client to the owner instead of
failing on the engine's lock."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.access_users import remove_owner_credential


@dataclass(frozen=True)
class Owner:
    """Who owns an embedded chDB directory and where it serves queries."""

    pid: int
    host: str
    port: int
    path: str
    started_at: str

    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def owner_file(chdb_path: Path) -> Path:
    """`<chdb dir>.owner.json`, next to the directory (the engine owns what is inside)."""
    return chdb_path.with_name(chdb_path.name + ".owner.json")


def write_owner(chdb_path: Path, host: str, port: int) -> Owner:
    owner = Owner(os.getpid(), host, port, str(chdb_path), datetime.now(UTC).isoformat(timespec="seconds"))
    target = owner_file(chdb_path)
    partial = target.with_name(target.name + f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(owner)) + "\n", encoding="utf-8")
    partial.replace(target)
    return owner


def read_owner(chdb_path: Path) -> Owner | None:
    """The owner file's content when it names a live process; None otherwise."""
    try:
        raw = json.loads(owner_file(chdb_path).read_text(encoding="utf-8"))
        owner = Owner(int(raw["pid"]), str(raw["host"]), int(raw["port"]), str(raw["path"]), str(raw["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return owner


def remove_owner(chdb_path: Path) -> None:
    """Remove the owner file if it is this process's."""
    current = read_owner(chdb_path)
    if current is not None and current.pid == os.getpid():
        owner_file(chdb_path).unlink(missing_ok=True)
        remove_owner_credential(chdb_path)
