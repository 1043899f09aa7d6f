"""Local state is private to the account that runs the pipeline: directories 0700, files
0600. The data directory holds the pepper, the DPO keys, chDB parts, Kafka segments and
logs, exports and reports, all of it personal data or secrets, so nothing under it may be
readable by another local user.

Two layers, both needed:
- every `records` process sets its umask to 077 at start (`private_umask`, called by the
  CLI entry point), so whatever it or a library creates (chDB parts, faust state, logs) is
  private; child processes it starts (the Kafka broker's JVM) inherit it, and the broker
  is also launched with an explicit umask;
- the places that create state create it private explicitly (`private_dir`,
  `private_file`) and tighten what an older version left (`restrict_tree`), so a library
  caller with a permissive umask gets private state too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> int:
    """Set the process umask to 077; returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create `path` (and missing parents) as 0700 directories. An existing `path` is set to
    0700 too unless `tighten_existing` is False (a directory the user named, e.g. where a
    report goes). Parents that already existed are left as they are (they may be shared)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for created in (*missing, path) if tighten_existing else missing:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(created, DIR_MODE)
    return path


def private_file(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 0600 (also when the file existed); a missing parent
    is created 0700, an existing one is left as it is."""
    private_dir(path.parent, tighten_existing=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, FILE_MODE)
    return path


def restrict_tree(root: Path) -> int:
    """Remove group and other permissions from everything under `root` (itself included);
    the number of entries changed. Symlinks are not followed."""
    changed = 0
    if not root.exists():
        return 0
    for directory, dirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in (*dirs, *files))):
            try:
                mode = os.lstat(name).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.chmod(name, stat.S_IMODE(mode) & ~0o077)
                changed += 1
    return changed
