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

Two repairs to faust's rebalance path, without which a restarted worker could stall for
good (found by tests/faults/test_kill_streams.py, about one run in ten):
- `seek_to_committed` seeks every stream partition, also those committed at offset 0 or
  never (changelog partitions stay where the tables' recovery put them):
  aiokafka's `AIOKafkaConsumer.seek_to_committed` only seeks where the committed offset is
  above 0, so such a partition kept the position its fetcher had reached. The records in
  between had been delivered into the streams' queues, which faust clears when the
  rebalance ends (`app.flow_control.resume()`): they were never processed, never acked,
  and the partition's offset could never be committed again.
- While the app is rebalancing (`app.rebalancing`, from the revocation until the recovery
  has resumed the streams) records of stream partitions are not delivered: they would land
  in queues that are about to be cleared. Their partitions are sought back to their
  committed offsets and fetched again once the rebalance is over. Changelog records still
  flow (they are the tables' recovery).

Batch routes (`route_batches`): the records of the topics routed to a handler skip
faust's conductor, events and streams altogether. Each fetch hands the handler that
topic's messages in one list, in offset order per partition, after adding them to the
consumer's unacknowledged set (faust's revocation waits for that set to empty before it
commits); the handler acknowledges each message (`Consumer.ack`) once it is done with
it, and faust commits, as ever, only acknowledged offsets. A handler must not await
before it has made sure every message it was handed will be acknowledged or the process
ends: the delivery is cancelled when a rebalance stops the flow. What faust's streams did
per message (an Event, a queue, a reference count, a sensor call, an ack on the next
iteration) was about a fifth of the streams stage's main thread (py-spy, issue 15).

It replaces one private method of faust-streaming 0.15.3's aiokafka driver, so
pyproject.toml pins faust-streaming to that exact version: a new faust release must be
read against this module (`faust/transport/consumer.py`, `Consumer._drain_messages`)
before the pin moves. `FastDrainTransport` is the aiokafka transport with this consumer;
`use_fast_drain(app)` installs it on an app before its consumer exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message

# Pinned in pyproject.toml; checked by `use_fast_drain` so a silent upgrade fails loudly.
FAUST_VERSION = "0.15.3"
# Deliveries between two yields to the event loop (faust's own value).
_YIELD_EVERY = 100
# Pause after holding a fetch back during a rebalance, before fetching again.
_HELD_BACK_PAUSE_S = 0.05
# Seeking a held-back partition back: attempts, and the pause between them.
_SEEK_ATTEMPTS = 20
_SEEK_RETRY_S = 0.25

log = logging.getLogger(__name__)

# Takes the messages of one fetch for the topics routed to it (`route_batches`).
BatchHandler = Callable[[list[Message]], Awaitable[None]]


async def seek_exactly_to_committed(
    consumer: AIOKafkaConsumer, *partitions: TopicPartition, earliest: bool
) -> dict[TopicPartition, int | None]:
    """Seek `partitions` (default: all assigned) to their committed offsets, as
    `AIOKafkaConsumer.seek_to_committed` does, and also where that method does not seek: a
    partition committed at offset 0 is sought to 0, and one with no committed offset to its
    beginning when `earliest` (the `auto_offset_reset` policy; otherwise it is left where
    it is). Returns the committed offsets (None: none). Runs on the consumer's own loop."""
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed(*partitions)
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    never = [tp for tp, offset in committed.items() if offset is None]
    if never and earliest:
        await consumer.seek_to_beginning(*never)
    return committed


def split_for_rebalance(
    batch: Sequence[tuple[TP, Message]], changelog_topics: Collection[str]
) -> tuple[list[tuple[TP, Message]], set[TP]]:
    """A fetch that returned while the app is rebalancing: the changelog records, which are
    delivered (the tables' recovery), and the stream partitions whose records are held back."""
    deliver = [(tp, message) for tp, message in batch if tp.topic in changelog_topics]
    held = {tp for tp, _ in batch if tp.topic not in changelog_topics}
    return deliver, held


class FastDrainConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer; fetched messages reach the agents one fetch at a time."""

    _held_back_in: int | None = None  # the generation whose rebalance last held a fetch back

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
                    if self.app.rebalancing:
                        batch, held = split_for_rebalance(batch, self.app.tables.changelog_topics)
                        if held:
                            await self._seek_back(held)
                    if batch:
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

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned stream partition to its committed offset, 0 and none included
        (`seek_exactly_to_committed`); faust's `perform_seek` calls this at the end of
        every rebalance. Changelog partitions are left where the tables' recovery put them
        (they are never committed: sought to their beginning, a table would replay its whole
        changelog and pass through old states again); they map to None, as aiokafka has it."""
        changelogs = self.app.tables.changelog_topics
        assigned = self.assignment()
        streams = [tp for tp in assigned if tp.topic not in changelogs]
        committed = dict(await self._seek_to_committed(*streams)) if streams else {}
        for tp in assigned:
            if tp.topic in changelogs:
                committed.setdefault(tp, None)  # type: ignore[arg-type]
        return committed

    async def _seek_to_committed(self, *partitions: TP) -> Mapping[TP, int]:
        thread = self._thread
        earliest = self.app.conf.consumer_auto_offset_reset == "earliest"
        exact = [TopicPartition(tp.topic, tp.partition) for tp in partitions]  # aiokafka's type, not faust's TP
        committed = await thread.call_thread(
            seek_exactly_to_committed, thread._ensure_consumer(), *exact, earliest=earliest
        )
        return cast(Mapping[TP, int], committed)

    async def _seek_to_committed_retrying(self, partitions: Sequence[TP]) -> Mapping[TP, int]:
        """`_seek_to_committed` of `partitions`, retried while the broker answers with an
        error (a rebalance can make the committed-offset fetch fail for a moment). Nothing is
        sought, and {} returned, once they are no longer assigned. Raises the last error
        after `_SEEK_ATTEMPTS` attempts: skipping the seek would lose the held records."""
        for attempt in range(1, _SEEK_ATTEMPTS + 1):
            try:
                return await self._seek_to_committed(*partitions)
            except IllegalStateError:
                return {}  # revoked meanwhile: the next owner starts at the committed offsets
            except KafkaError as exc:
                if attempt == _SEEK_ATTEMPTS:
                    raise
                log.warning("seeking back to committed offsets failed (%s); retrying", type(exc).__name__)
                await self.sleep(_SEEK_RETRY_S)
        return {}

    async def _seek_back(self, held: set[TP]) -> None:
        """Seek the stream partitions held back during a rebalance to their committed
        offsets, so what was fetched is fetched again after it. Partitions no longer
        assigned are left to their next owner."""
        assigned = self.assignment()
        partitions = sorted(tp for tp in held if tp in assigned)
        if partitions:
            committed = await self._seek_to_committed_retrying(partitions)
            for tp, offset in committed.items():
                self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
            generation = self.app.consumer_generation_id
            if generation != self._held_back_in:  # once per rebalance: it repeats until it ends
                self._held_back_in = generation
                log.info("rebalancing: stream partitions sought back to their committed offsets until it ends")
        await self.sleep(_HELD_BACK_PAUSE_S)

    async def _deliver(self, batch: Sequence[tuple[TP, Message]]) -> None:
        """Hand each message to the conductor in order, as faust's drain loop does, except
        those of routed topics: each route's handler gets them in one list at the end."""
        callback = self.callback
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        routes = cast(FastDrainTransport, self.transport).routes
        routed: dict[BatchHandler, list[Message]] = {}
        for count, (tp, message) in enumerate(batch, 1):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # already delivered (faust drops it the same way)
            if read and offset - read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, offset)  # compacted away: acked as a gap
            handler = routes.get(message.topic)
            if handler is None:
                await callback(message)
            else:
                routed.setdefault(handler, []).append(message)
            read_offsets[tp] = offset
        track = self._unacked_messages.add
        for handler, messages in routed.items():
            for message in messages:  # no await between this and the handler
                track(message)
            await handler(messages)


class FastDrainTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport whose consumer is `FastDrainConsumer`; `routes` maps a
    topic name to the handler of its records (`route_batches`)."""

    Consumer = FastDrainConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes: dict[str, BatchHandler] = {}


def route_batches(app: faust.App, topic_names: Iterable[str], handler: BatchHandler) -> None:
    """Subscribe `app` to `topic_names` and hand their records to `handler` a fetch at a
    time (see the module docstring for the handler's contract). The app must use the fast
    drain (`use_fast_drain`) and have no agent on these topics."""
    transport = app.transport
    if not isinstance(transport, FastDrainTransport):
        raise RuntimeError("route_batches needs use_fast_drain(app) first")
    for name in topic_names:
        transport.routes[name] = handler
        # iterating a topic is what subscribes an agent's consumer to it (faust's
        # Topic.__aiter__ adds it to the conductor); its own queue stays empty
        aiter(app.topic(name, key_serializer="raw", value_serializer="raw"))


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
