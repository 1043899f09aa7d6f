"""Access-request exports on disk (files with every row of one person, written by the
sink's ACCESS handler, sink/dsr_export.py): where they live, when they expire, and
which belong to a subject. Owned here so the sink and the retention run agree.

- `<RECORDS_DATA_DIR>/exports/<request id>.json`, mode 0600 in a 0700 directory;
- an export older than the policy's `exports.retention_days` (by its file time) is
  removed by `expire_exports`, which `records retention run` and the sink's periodic
  job call; half-written temporary files (`.<name>.tmp`) older than that go too;
- an erasure removes the person's earlier exports (`remove_subject_exports`): an export
  belongs to every subject key found in its rows' `subject_keys`. An export without rows
  holds no personal data and is left to expire.
Nothing here logs a file's content; counts only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

EXPORT_DIR = "exports"


def exports_dir(data_dir: Path) -> Path:
    return data_dir / EXPORT_DIR


@dataclass(frozen=True)
class ExportSweep:
    """What one expiry pass found: files removed (or, checking only, due) and kept."""

    removed: int
    kept: int


def _files(directory: Path) -> Iterator[Path]:
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if path.is_file() and (path.suffix == ".json" or path.name.endswith(".tmp")):
            yield path


def expire_exports(directory: Path, retention: timedelta, now: datetime, *, delete: bool = True) -> ExportSweep:
    """Remove the exports (and stale temporary files) older than `retention` at `now`."""
    cutoff = (now - retention).timestamp()
    removed = kept = 0
    for path in _files(directory):
        try:
            expired = path.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if not expired:
            kept += 1
            continue
        if delete:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed += 1
    return ExportSweep(removed, kept)


@dataclass(frozen=True)
class ExportsState:
    """The export files on disk now, for the compliance report (counts only)."""

    held: int  # exports and temporary files present
    past_expiry: int  # of those, older than the retention: a breach unless removed
    not_private: int  # files readable or writable by others than the owner
    directory_private: bool  # the directory is 0700 (or absent)


def exports_state(directory: Path, retention: timedelta, now: datetime) -> ExportsState:
    """Count the exports under `directory`: how many, how many past `retention`, how many
    not private (what `records report` judges the expiry commitment by)."""
    due = expire_exports(directory, retention, now, delete=False)
    not_private = 0
    for path in _files(directory):
        with contextlib.suppress(FileNotFoundError):
            not_private += 1 if path.stat().st_mode & 0o077 else 0
    private_dir = not directory.exists() or directory.stat().st_mode & 0o077 == 0
    return ExportsState(due.removed + due.kept, due.removed, not_private, private_dir)


def subject_keys_of(document: Any) -> set[str]:
    """Every subject key in the rows of an export document."""
    found: set[str] = set()
    records = document.get("records") if isinstance(document, dict) else None
    for record in (records or {}).values():
        for row in record.get("rows", ()) if isinstance(record, dict) else ():
            keys = row.get("subject_keys") if isinstance(row, dict) else None
            if isinstance(keys, list):
                found.update(k for k in keys if isinstance(k, str))
    return found


def remove_subject_exports(directory: Path, keys: Collection[str]) -> int:
    """Remove every export whose rows carry one of `keys`; the number removed. An export
    that cannot be read as JSON is removed too: it cannot be shown not to be the subject's."""
    wanted = set(keys)
    removed = 0
    for path in _files(directory):
        if path.suffix != ".json":
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            document = None
        if document is None or subject_keys_of(document) & wanted:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed += 1
    return removed
