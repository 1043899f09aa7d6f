"""The access log's rotation: bounded on disk, private, nothing lost within `keep` files."""

from __future__ import annotations

from pathlib import Path

from pipeline.access_log import AccessEntry, AccessLog, read_entries


def entry(n: int) -> AccessEntry:
    at = f"2026-11-30T10:00:{n:02d}Z"
    return AccessEntry(at, "ana", "analyst", "accepted", "", ("analyst.calls",), n, None, f"q{n}", 1)


def test_the_log_rotates_keeps_the_newest_files_and_reads_them_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "access.jsonl"
    log = AccessLog(path, max_bytes=400, keep=2)
    for n in range(40):
        log.append(entry(n))

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["access.jsonl", "access.jsonl.1", "access.jsonl.2"]
    assert all(p.stat().st_size <= 400 for p in path.parent.iterdir())
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in path.parent.iterdir())
    ids = [e.query_id for e in read_entries(path)]
    # the newest entries survive, in order, with nothing missing between them
    assert ids == [f"q{n}" for n in range(40 - len(ids), 40)]
    assert 3 <= len(ids) < 40


def test_a_small_log_is_not_rotated(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    log = AccessLog(path)
    for n in range(3):
        log.append(entry(n))
    assert [p.name for p in tmp_path.iterdir()] == ["access.jsonl"]
    assert [e.rows for e in read_entries(path)] == [0, 1, 2]
