"""Start-up options of the embedded engine (chDB), passed once when a process opens its
directory (pipeline/clickhouse.py); a ClickHouse server (CLICKHOUSE_URL) keeps its own
configuration.

Why: an erasure's `ALTER TABLE ... DELETE` is a mutation of every part of the table,
one background task per part (`IN PARTITION` does not change that: every part still
gets the mutation's version), and almost all of an erasure's time went to how the
engine hands those tasks to its pool of 2 threads, not to their work (a part without a
row of the subject takes milliseconds):
- a table's scheduler queues a mutation's part task only while the pool's queue (pool
  size x `background_merges_mutations_concurrency_ratio`) has at least
  `number_of_free_entries_in_pool_to_execute_mutation` (20) free entries, or holds at
  most one task. With the default queue of 4, and with 16, that is never: part tasks went
  in one or two at a time;
- between two such turns the scheduler sleeps `background_processing_pool_thread_sleep_
  seconds_if_nothing_to_do` (0.1 s, growing by 1.1x per turn without a task) plus a
  random 0-1 s (`..._task_sleep_seconds_when_no_work_random_part`, meant to spread many
  tables' wake-ups on a big server).

What changes, and what does not:
- no random part in the scheduler's sleep (one process owns the directory: nothing to
  spread), and a 10 ms sleep instead of 100 ms (it still grows while there is nothing to
  do, so an idle table's scheduler backs off as before);
- a queue of 128 tasks (ratio 64) on the same 2 threads, so 108 part tasks of a mutation
  are queued at once (128 - 20). The threads do the same work; queued merges and
  mutations wait their turn as before.
- the scheduler's sleep while it finds nothing to do is capped at 1 s instead of 600 s.
  It grows 1.1x per idle turn, and a mutation whose parts are held by a merge when it is
  issued finds nothing to do either: the merge finishing does not wake the scheduler, so
  the rest of the mutation waited for its next turn. In `records bench --quick` runs of
  2026-11-30 an erasure's sink step took 54 s once and over 120 s once (the bench gave
  up), the erasure mutation done on every part but six level-1 parts of one table (TTL
  merges' results, block numbers below the mutation's), then finished on its own later.
  An idle table's scheduler now wakes once a second.
The mutations themselves are unchanged: the parts are rewritten (sink/mutations_together.py
waits until they are) before an erasure's receipt is written.
Measured on a copy of the benchmark's store (1.07M rows, 56-60 parts in the calls and
consent tables, 10-16 in the others), one table's mutation deleting nothing: ~0.43 s
with the queue of 16, ~0.19-0.31 s with 128; six erasures together-run one after the
other, 9.9-13.0 s before and 6.7-8.6 s after, in three alternating runs on a loaded
machine. Earlier (queue 4 with the random sleep, ~70-110 parts): 7.6-11.6 s per erasure.

Memory: the engine's caches default to server sizes (mark cache, primary index cache and
skip-index mark cache 5 GiB each), which inside a worker process means no bound at all:
they fill as parts are read and are emptied only by eviction at that size. They are
capped here (CACHE_CAPS_BYTES) so the sink's memory has a stated ceiling
(bench/state_sizes.py states the bound). The store's marks are small (16 bytes per
column per 8,192-row granule: ~1 MB for a few million rows), so the caps never evict a
working set of this pipeline's size; they only stop an engine that keeps growing. The
uncompressed cache is already off (0) and the query-condition cache is 100 MB by default.
"""

from __future__ import annotations

from types import MappingProxyType

MIB = 1 << 20
# server setting -> its cap in bytes (see the module docstring, "Memory")
CACHE_CAPS_BYTES = MappingProxyType(
    {
        "mark_cache_size": 128 * MIB,
        "primary_index_cache_size": 128 * MIB,
        "index_mark_cache_size": 32 * MIB,
    }
)

ENGINE_OPTIONS = MappingProxyType(
    {
        **{name: str(size) for name, size in CACHE_CAPS_BYTES.items()},
        "background_processing_pool_task_sleep_seconds_when_no_work_random_part": "0",
        "background_processing_pool_thread_sleep_seconds_if_nothing_to_do": "0.01",
        "background_merges_mutations_concurrency_ratio": "64",
        "background_processing_pool_task_sleep_seconds_when_no_work_max": "1",
    }
)
