"""Garbage-collector settings for the long-running workers (`records worker streams` and
`records worker sink`), applied once their start-up objects exist.

Both workers allocate many short-lived container objects per message (decoded records,
rows, confluent-kafka `Message` objects: the sink holds up to ~150k of them in one batch).
With CPython's default thresholds (700, 10, 10) a young collection runs whenever 700
more container objects were allocated than freed, and each one that promotes survivors
brings the next full collection closer;
a full collection walks every tracked object in the process: the imported frameworks
(faust, mode, aiokafka, clickhouse-connect), the tables' dicts and the batch in hand.

`tune()` first freezes what exists at the call (modules, the app, its clients: alive for
the whole process, never garbage) so that no collection walks it again, then collects
the young generation at 100,000 instead of 700. Reference cycles are still
collected, later; the workers' memory bounds in README are measured with this setting.
Measured with `records bench --only streams --quick` and `--only sink --quick`, alternating
runs with and without it: the streams worker +6-12% events/s in three pairs; the sink
faster in four of five pairs (-6% to +44%: the sink's figure is noisy on this machine).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 100_000
MIDDLE_THRESHOLD = 50
OLD_THRESHOLD = 1_000


def tune() -> None:
    """Freeze the objects alive now and raise the collection thresholds (see the module
    docstring). Call once, after start-up, before the first message."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
