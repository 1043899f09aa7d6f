"""The endpoint's access log: who read what, as JSON lines in `<data dir>/audit/access.jsonl`.

One line per request that reached the query stage, accepted or refused:
`{"at", "user", "role", "outcome": "accepted"|"refused", "reason", "tables", "rows",
"format", "query_id", "elapsed_ms"}`. `reason` is the refusal's error name and a fixed
text, `tables` the tables the engine resolved (`database.table`). The query text and its
literals are never written: they can hold a phone number. A directory it creates is 0700, the file 0600,
appended under a lock; the DPO reads it with `records users access-log`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class AccessEntry:
    at: str
    user: str
    role: str
    outcome: str
    reason: str
    tables: tuple[str, ...]
    rows: int | None
    format: str | None
    query_id: str
    elapsed_ms: int


class AccessLog:
    """Appends entries to the log file; safe across the endpoint's request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: AccessEntry) -> None:
        line = json.dumps({**asdict(entry), "tables": list(entry.tables)}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)


def read_entries(path: Path) -> Iterator[AccessEntry]:
    """The entries of the log at `path`, oldest first; none when it does not exist."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        if not line.strip():
            continue
        raw = json.loads(line)
        yield AccessEntry(**{**raw, "tables": tuple(raw.get("tables") or ())})
