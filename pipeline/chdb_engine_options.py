"""Start-up options of the embedded engine (chDB), passed once when a process opens its
directory (pipeline/clickhouse.py); a ClickHouse server (CLICKHOUSE_URL) keeps its own
configuration.

Why: an erasure's `ALTER TABLE ... DELETE` is a mutation of every part of the table,
one background task per part, and the engine hands those tasks to its pool in small
bursts. Each table's scheduler queues tasks until the pool's queue is full (pool size x
`background_merges_mutations_concurrency_ratio`: 2 x 2 = 4 by default), then sleeps
0.1 s plus a random 0-1 s (`..._task_sleep_seconds_when_no_work_random_part`, meant to
spread many tables' wake-ups on a big server) before it queues the next few. A part that
holds no row of the subject takes milliseconds, so an erasure spent almost all its time
in those sleeps: 7-12 s for ~70 parts on this 2-core machine with the pool idle, 8-23 s
in the benchmark's sink (README, "Measured here").

What changes, and what does not:
- no random part in the scheduler's sleep (one process owns the directory: nothing to
  spread), so the next burst is queued after ~0.1 s;
- a queue of 16 tasks (ratio 8) on the same 2 threads, so a burst covers 16 parts. The
  threads do the same work; a merge or mutation that is queued waits as before.
The mutations themselves are unchanged: the parts are rewritten (sink/mutations_together.py
waits until they are) before an erasure's receipt is written.
Measured with ~70-110 parts across 24 partitions, 20k-400k rows, pool idle: 7.6-11.6 s
before, 1.2 s with both options.
"""

from __future__ import annotations

from types import MappingProxyType

ENGINE_OPTIONS = MappingProxyType(
    {
        "background_processing_pool_task_sleep_seconds_when_no_work_random_part": "0",
        "background_merges_mutations_concurrency_ratio": "8",
    }
)
