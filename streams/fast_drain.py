"""faust's consumer with a per-fetch drain instead of a per-message one.

Why: faust's `Consumer._drain_messages` hands every fetched message to the conductor
through `Service.wait_first(callback(message), suspend_flow.wait())`, so that a rebalance
(`stop_flow()` sets `suspend_flow`) can cancel a delivery that is blocked on a full agent
buffer. `wait_first` creates four tasks per message (the callback, the suspend event, the
service's stopped and crashed events), waits on them and cancels three: measured with
py-spy, that machinery costs the streams stage more than its Avro decoding (issue 15).

What changes: `FastDrainConsumer._drain_messages` fetches a batch (`getmany`, unchanged:
it still honours `flow_active` and the consumer generation), then delivers the whole batch
in one `wait_first(deliver(batch), suspend_flow.wait())`: four tasks per fetch instead of
per message. The contract is faust's:
- a rebalance that stops the flow cancels the delivery; the rest of the fetch is dropped,
  as faust drops it, and the partitions are sought back to their committed offsets on
  assignment;
- a fetch that returns while a rebalance is under way is not delivered (`_may_deliver`);
- read offsets, gaps in compacted partitions (`_add_gap`) and `commit_every` are tracked
  as faust tracks them (the `commit_every` check runs before each fetch, outside the
  cancellable delivery, so a rebalance never cancels a commit);
- acknowledgement is untouched: an offset is committed only after the agent acked its
  event (the streams worker acks a batch after its delivery reports, streams/app.py).

It replaces one private method of faust-streaming 0.15.3's aiokafka driver, so
pyproject.toml pins faust-streaming to that exact version: a new faust release must be
read against this module (`faust/transport/consumer.py`, `Consumer._drain_messages`)
before the pin moves. `FastDrainTransport` is the aiokafka transport with this consumer;
`use_fast_drain(app)` installs it on an app before its consumer exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message

# Pinned in pyproject.toml; checked by `use_fast_drain` so a silent upgrade fails loudly.
FAUST_VERSION = "0.15.3"
# Deliveries between two yields to the event loop (faust's own value).
_YIELD_EVERY = 100


class FastDrainConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer; fetched messages reach the agents one fetch at a time."""

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                self.diag.set_flag(CONSUMER_FETCHING)
                batch = [pair async for pair in cast(AsyncIterator[tuple[TP, Message]], self.getmany(timeout=1.0))]
                # released to the loop even when getmany returned at once (faust does the same)
                await self.sleep(0)
                if batch and self._may_deliver():
                    await self.wait_first(self._deliver(batch), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _may_deliver(self) -> bool:
        """False while a rebalance is under way (the flow stopped): the fetch is dropped, and
        the recovery that ends the rebalance seeks the partitions back to their committed
        offsets, so it is fetched again (as faust's getmany drops a fetch then)."""
        return not self.should_stop and self.flow_active and not self.suspend_flow.is_set()

    async def _deliver(self, batch: Sequence[tuple[TP, Message]]) -> None:
        """Hand each message to the conductor in order, as faust's drain loop does."""
        callback = self.callback
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        for count, (tp, message) in enumerate(batch, 1):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # already delivered (faust drops it the same way)
            if read and offset - read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, offset)  # compacted away: acked as a gap
            await callback(message)
            read_offsets[tp] = offset


class FastDrainTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport whose consumer is `FastDrainConsumer`."""

    Consumer = FastDrainConsumer


def use_fast_drain(app: faust.App) -> None:
    """Make `app` consume through `FastDrainConsumer`. Call right after creating the app
    (before `app.topic`, which creates the transport). Raises RuntimeError when the
    installed faust-streaming is not the version this module was written against."""
    from importlib.metadata import version

    installed = version("faust-streaming")
    if installed != FAUST_VERSION:
        raise RuntimeError(
            f"streams.fast_drain replaces a private method of faust-streaming {FAUST_VERSION}, "
            f"but {installed} is installed: re-read Consumer._drain_messages before moving the pin"
        )
    app.transport = FastDrainTransport(app.conf.broker_consumer, app)
