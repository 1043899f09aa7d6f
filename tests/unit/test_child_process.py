"""records/child_process.py: a child is asked to stop (SIGTERM) and killed only when it
does not stop within the bound."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from records.child_process import terminate


def _child(code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # its handlers are in place
    return child


def test_a_child_that_stops_on_sigterm_gets_no_sigkill() -> None:
    child = _child("import time\nprint('ready', flush=True)\ntime.sleep(120)")
    assert terminate(child, 30) == -signal.SIGTERM


def test_a_child_ignoring_sigterm_is_killed_after_the_bound() -> None:
    ignore = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    child = _child(ignore + "print('ready', flush=True)\ntime.sleep(120)")
    started = time.monotonic()
    assert terminate(child, 0.5) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5


def test_an_exited_child_keeps_its_exit_code() -> None:
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.wait(60)
    assert terminate(child, 30) == 3
