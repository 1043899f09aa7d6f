"""py-spy attached to a worker for the window a figure times (`records bench --only
sink|streams --profile FILE`): raw collapsed stacks, idle samples and thread names
included (`python -m bench.profile_summary FILE [--thread NAME]` summarises them)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.exceptions import RecordsError


def py_spy() -> str:
    """The py-spy executable next to this interpreter, or on PATH; RecordsError if none."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise RecordsError("--profile needs py-spy: pip install -e '.[bench]'")
    return found


def profiler_started(pid: int, out: Path, *, native: bool) -> subprocess.Popen[bytes]:
    """py-spy sampling process `pid` until `profiler_stopped`; `native`: C frames too."""
    # --idle: the time the worker waits (on Kafka, on the engine) shows too
    command = [py_spy(), "record", "-f", "raw", "--idle", "--threads", "-o", str(out), "-p", str(pid)]
    return subprocess.Popen(
        [*command, *(["--native"] if native else [])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def profiler_stopped(profiler: subprocess.Popen[bytes]) -> None:
    """Interrupt py-spy, which writes its output then; RecordsError if it failed."""
    if profiler.poll() is None:
        profiler.send_signal(signal.SIGINT)
    try:
        _, err = profiler.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.communicate()
        return
    if profiler.returncode not in (0, -signal.SIGINT):
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise RecordsError(f"benchmark: py-spy failed: {' '.join(tail)}")


@contextmanager
def profiling(pid: int, out: Path | None, *, native: bool = False) -> Iterator[None]:
    """py-spy on process `pid` over the body of the `with` block, written to `out`
    (nothing when `out` is None)."""
    if out is None:
        yield
        return
    profiler = profiler_started(pid, out, native=native)
    try:
        yield
    finally:
        profiler_stopped(profiler)
