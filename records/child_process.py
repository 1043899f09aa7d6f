"""Stopping a child process the way every long-running `records` child is stopped (the
demo's workers, the benchmark's, the tests'): SIGTERM so it can commit and close, and
SIGKILL only when it has not exited within a bound."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def terminate(process: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM `process` (unless it has exited already), SIGKILL it if it is still running
    `timeout` seconds later; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
