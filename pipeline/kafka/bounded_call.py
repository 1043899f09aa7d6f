"""A blocking client call with a deadline.

librdkafka has waits without one: a synchronous offset commit waits for its result with
no timeout, and closing a consumer waits until its group leaves. Known coordinator bugs
(e.g. a cached coordinator that never comes back after a broker restart) leave both
waiting for good, and with them the thread that called. `bounded` runs such a call on a
daemon thread and gives up waiting after `timeout` seconds; the call itself cannot be
cancelled, so the caller must treat the client as lost (and replace it).

Never from inside a callback of the same client (a rebalance callback runs inside its
consume or poll call): confluent-kafka-python (>= 2.16) serves a consumer one thread at a
time, so the daemon thread's call waits for the call serving the callback to return,
which waits for the daemon thread -- a deadlock until `timeout` (sink/batch_offsets.py,
`hand_over_offsets`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from pipeline.exceptions import KafkaClientError

T = TypeVar("T")

# The code of the error raised when a call did not return in time.
WEDGED = "_WEDGED"


def bounded(call: Callable[[], T], timeout: float, what: str) -> T:
    """`call()`'s result or exception; KafkaClientError(code WEDGED) when it has not
    returned within `timeout` seconds (it keeps running on its daemon thread)."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name=f"kafka-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise KafkaClientError(f"{what} did not return within {timeout:g} s", WEDGED)
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
