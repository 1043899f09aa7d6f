"""Pure file-system helpers of private local state (issue 11, finding 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.private_files import private_dir, private_file, restrict_tree


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dirs_and_files_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        os.chmod(shared, 0o755)
        made = private_dir(shared / "a" / "b")
        written = private_file(shared / "reports" / "r.html", "<p>")
    finally:
        os.umask(old)
    assert _mode(made) == _mode(made.parent) == 0o700
    assert _mode(shared) == 0o755  # an existing parent is left alone
    assert _mode(written) == 0o600 and _mode(written.parent) == 0o700


def test_restrict_tree_removes_group_and_other_bits_of_older_state(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "kafka").mkdir(parents=True)
    segment = root / "kafka" / "00000.log"
    segment.write_text("x")
    os.chmod(segment, 0o644)
    os.chmod(root / "kafka", 0o755)
    assert restrict_tree(root) >= 2
    assert _mode(segment) == 0o600 and _mode(root / "kafka") == 0o700
    assert restrict_tree(root) == 0
