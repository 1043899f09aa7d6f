"""faust's table manager without the one-second pause at the start of every worker.

faust-streaming 0.15.3's `TableManager.on_start` sleeps 1.0 s before it sets up the
tables' changelog channels and starts their recovery, which leaves room for tables
declared late, while the app is starting. The conductor subscribes the consumer only
once that is done, so every worker start, and every restart after a crash, waited that
second before its first record: about 40% of the streams worker's start-up on
`records bench` (2.5 s; the faust log shows "Waiting for tables to be registered..."
for exactly 1.0 s). The streams worker declares all its tables in `StreamsWorker.__init__`,
before the app starts, and faust refuses a table added after the channels are set up
("Too late to add tables at this point"), so the pause buys it nothing.

`PromptTableManager.on_start` is faust's method without the pause. It relies on the same
pinned faust version as streams/fast_drain.py (`FAUST_VERSION`, checked there when the
app is built): re-read `faust/tables/manager.py` before the pin moves.
"""

from __future__ import annotations

from faust.tables import TableManager


class PromptTableManager(TableManager):
    """faust's TableManager, starting its tables' channels and recovery at once."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
