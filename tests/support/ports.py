"""Free ports on 127.0.0.1 for what a test starts itself (never the fixed defaults
9092/8123/9464/9465, which another engineer's run may hold)."""

from __future__ import annotations

import socket

from records.local_kafka import free_port


def free_port_pair() -> int:
    """A free port P whose successor is free too (`records up --port P` puts the
    controller on P + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")
