"""The endpoint's access log: who read what, as JSON lines in `<data dir>/audit/access.jsonl`.

One line per request that reached the query stage, accepted or refused:
`{"at", "user", "role", "outcome": "accepted"|"refused", "reason", "tables", "rows",
"format", "query_id", "elapsed_ms"}`. `reason` is the refusal's error name and a fixed
text, `tables` the tables the engine resolved (`database.table`). The query text and its
literals are never written: they can hold a phone number. A directory it creates is 0700, the file 0600,
appended under a lock; the DPO reads it with `records users access-log`.

Rotation: before a line would take the file past `max_bytes`, the file becomes
`access.jsonl.1` (`.1` becomes `.2`, and so on; the oldest beyond `keep` is deleted), so
the log holds at most about `(keep + 1) * max_bytes` on disk. `read_entries` reads the
rotated files too, oldest first. Rotated files keep mode 0600 (a rename keeps the inode).
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

    def __init__(self, path: Path, *, max_bytes: int = 16 * 1024 * 1024, keep: int = 5) -> None:
        if max_bytes < 1 or keep < 1:
            raise ValueError("access log: max_bytes and keep must be at least 1")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()

    def append(self, entry: AccessEntry) -> None:
        line = json.dumps({**asdict(entry), "tables": list(entry.tables)}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._rotate_before(len(line.encode()))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)

    def _rotate_before(self, size: int) -> None:
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        rotated = rotated_paths(self.path, self.keep)
        rotated[-1].unlink(missing_ok=True)
        for older, newer in zip(reversed(rotated[1:]), reversed(rotated[:-1]), strict=True):
            if newer.exists():
                newer.rename(older)
        self.path.rename(rotated[0])


def rotated_paths(path: Path, count: int) -> list[Path]:
    """`path.1` .. `path.<count>`, newest first."""
    return [path.with_name(f"{path.name}.{n}") for n in range(1, count + 1)]


def read_entries(path: Path) -> Iterator[AccessEntry]:
    """The entries of the log at `path` and its rotated files, oldest first; none when
    there is no log."""
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    for part in (*rotated, path):
        yield from _entries(part)


def _entries(path: Path) -> Iterator[AccessEntry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        if not line.strip():
            continue
        raw = json.loads(line)
        yield AccessEntry(**{**raw, "tables": tuple(raw.get("tables") or ())})
