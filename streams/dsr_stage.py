"""The `dsr` agent: reads cs.dsr.v1 one message at a time and carries out what
`streams.subject_requests` decides, in an order that never lets the storage side run
ahead of Kafka:

1. decode; look the request id up in the seen-requests table; `judge` it;
2. record the id in the seen-requests table (when no message carried it before);
3. rejected: the original message to cs.dlq.v1 with dead-letter headers (`dlq.error` =
   the DsrRejected message, `dlq.error.class` DsrRejected, stage "streams"), and a
   REJECTED receipt on cs.dsr.receipts.v1 when this message owns its id's receipt;
   counted by reason; nothing else happens;
4. accepted: erased-keys entries and consent-table deletions first (from then on this
   worker drops the subject's older events), and wait until Kafka has them; the wait runs
   alongside step 5, and both end before anything of step 6 is sent;
5. read the current SubjectRecords holding the request's keys (erasure, rectification);
6. consent-table changes, then the rows (tombstones, corrected SubjectRecords, consent
   ledger rows), and wait until Kafka has all of it, table changelogs included;
7. only then the command on cs.dsr.commands.v1 (key request id, the original bytes, and
   the envelope with the subject keys, the verification time and the per-store counts,
   signed with the stage's command key: pipeline/dsr_contract.py), and wait for it.
   faust acknowledges the offset after that.
Every `sweep_every` seconds (`sweep_seen`) the seen-requests table forgets the ids whose
first verification is past the policy's request_max_age and a margin (tombstones on its
changelog), so it stays bounded: a message carrying such an id is rejected by age.
A failure to write to Kafka or to read cs.subjects.v1 ends the process (as a failed batch
does in `streams.app`): after the restart the message is read again, recognised as the
same message rather than a replay, and executed again with its first verification time;
every step is idempotent. An unexpected error while working out a verified request (a
bug) sends it to the DLQ with a FAILED receipt instead of crash-looping on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, cast

import faust
from faust.tables.manager import TableManager

from pipeline import topics
from pipeline.dead_letter import DeadLetter
from pipeline.dsr import REQUEST_SCHEMA, TrustedKeys
from pipeline.dsr_contract import CommandSigner, Receipt, ReceiptStatus
from pipeline.serde import Serde, SerdeError
from streams import erased_keys
from streams.consent_state import SubjectConsent, apply, from_stored, merge, to_millis, to_stored
from streams.metrics import StreamsMetrics
from streams.outgoing import Outgoing
from streams.row_types import Row
from streams.rows import RowBuilder
from streams.subject_directory import SubjectDirectory
from streams.subject_requests import (
    KafkaWork,
    Seen,
    Verdict,
    command_envelope,
    expired_requests,
    judge,
    plan,
    request_id_of,
    with_subjects,
)

log = logging.getLogger(__name__)

STAGE = "streams"
EXIT_DELIVERY_FAILED = 70


@dataclass(frozen=True)
class DsrTables:
    """The faust tables the stage reads and writes (keys are bytes; values JSON, the consent
    table's as bytes)."""

    consent: Any  # subject key -> streams.consent_state.to_stored(SubjectConsent)
    erasures: Any  # subject key -> erased_at (epoch ms)
    seen: Any  # request id -> Seen.to_json()


class DsrStage:
    def __init__(
        self,
        app: faust.App,
        builder: RowBuilder,
        tables: DsrTables,
        metrics: StreamsMetrics,
        *,
        trusted: TrustedKeys,
        command_signer: CommandSigner,
        directory: SubjectDirectory,
        max_age: timedelta,
        encode: Callable[[Row], bytes | None],
        clock: Callable[[], datetime],
        serde: Serde,
    ) -> None:
        self.app = app
        self.builder = builder
        self.tables = tables
        self.metrics = metrics
        self.trusted = trusted
        self.command_signer = command_signer
        self.directory = directory
        self.max_age = max_age
        self.encode = encode
        self.clock = clock
        self._deserialize = serde.decode
        self._receipt = serde.encoder("DsrReceipt")
        self._consent_log = tables.consent.changelog_topic_name
        self._erasure_log = tables.erasures.changelog_topic_name

    async def run(self, stream: faust.StreamT) -> None:
        async for event in cast(faust.Stream, stream).events():
            await self.handle(event)

    async def sweep_seen(self) -> None:
        """Forget the request ids the seen-requests table no longer needs (see the module
        docstring); skipped while the table is still being recovered."""
        if self.app.in_recovery or not cast(TableManager, self.app.tables).recovery.completed.is_set():
            return
        table = self.tables.seen
        expired = expired_requests(list(table.items()), now=self.clock(), max_age=self.max_age)
        for key in expired:
            del table[key]
        if expired:
            await self._deliver([])
            self.metrics.dsr_seen_expired.inc(len(expired))
            log.info("seen-requests table: %d expired request id(s) forgotten", len(expired))

    async def handle(self, event: faust.EventT) -> None:
        message = event.message
        now = self.clock()
        request = self._decode(message.value)
        request_id = request_id_of(request, message.key)
        seen_key = request_id.encode() if request_id else None
        seen = Seen.from_json(self.tables.seen.get(seen_key)) if seen_key else None
        verdict = judge(
            request,
            request_id,
            position=(message.partition, message.offset),
            seen=seen,
            trusted=self.trusted,
            now=now,
            max_age=self.max_age,
        )
        if seen_key is not None and seen is None:
            self.tables.seen[seen_key] = verdict.seen(message.partition, message.offset).to_json()
        self.metrics.events_in.labels(message.topic, REQUEST_SCHEMA if request else "-").inc()
        if verdict.rejection is not None or request is None:
            await self._refuse(event, request, verdict, now)
            return
        request_type = str(request["request_type"])
        try:
            work = plan(request, self.builder, at=verdict.at, now=now)
            await self._execute(event, request, verdict, work, now)
        except Exception as exc:  # a bug: I/O failures never get here (they exit)
            log.error(
                "unexpected %s executing data-subject request %s (%s)\n%s",
                type(exc).__name__,
                request_id,
                request_type,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            await self._fail(event, request, verdict, f"internal error ({type(exc).__name__})", now)
            return
        self.metrics.dsr_executed.labels(request_type).inc()

    # ---- refusing ---------------------------------------------------------------------

    async def _refuse(
        self, event: faust.EventT, request: Mapping[str, Any] | None, verdict: Verdict, now: datetime
    ) -> None:
        rejection = verdict.rejection
        assert rejection is not None
        log.warning("data-subject request %s rejected: %s", verdict.request_id or "-", rejection.reason.name)
        await self._dead_letter(event, request, verdict, "DsrRejected", str(rejection), ReceiptStatus.REJECTED, now)
        self.metrics.dsr_rejected.labels(rejection.reason.name).inc()

    async def _fail(
        self, event: faust.EventT, request: Mapping[str, Any], verdict: Verdict, error: str, now: datetime
    ) -> None:
        await self._dead_letter(event, request, verdict, "DsrFailed", error, ReceiptStatus.FAILED, now)
        self.metrics.dsr_failed.labels(str(request["request_type"])).inc()

    async def _dead_letter(
        self,
        event: faust.EventT,
        request: Mapping[str, Any] | None,
        verdict: Verdict,
        error_class: str,
        error: str,
        status: ReceiptStatus,
        now: datetime,
    ) -> None:
        """The original message to the DLQ; a receipt if this message owns its id's receipt."""
        message = event.message
        letter = DeadLetter(message.topic, message.partition, message.offset, error_class, error, STAGE)
        headers = message.headers or ()
        original = list(headers.items() if isinstance(headers, Mapping) else headers)
        sends: list[Outgoing] = [Outgoing(topics.DLQ.name, message.key, message.value, tuple(letter.headers(original)))]
        if verdict.first and verdict.request_id is not None:
            receipt = Receipt.for_request(request, verdict.request_id, status, detail=error, now=now)
            value = self._receipt(receipt.to_value())
            sends.append(Outgoing(topics.DSR_RECEIPTS.name, verdict.request_id.encode(), value))
        await self._deliver(sends)
        self.metrics.dead_lettered.labels(message.topic, error_class).inc()

    # ---- executing --------------------------------------------------------------------

    async def _execute(
        self, event: faust.EventT, request: Mapping[str, Any], verdict: Verdict, work: KafkaWork, now: datetime
    ) -> None:
        counts: dict[str, int] = {}

        def count(store: str, n: int = 1) -> None:
            counts[store] = counts.get(store, 0) + n

        # 4. The erased-keys table first: from here on this worker drops the subject's older events.
        erased_at = to_millis(verdict.at)
        for key in work.erasures:
            raw = key.encode()
            current = self.tables.erasures.get(raw)
            updated = erased_keys.merge(current, erased_at)
            if updated != current:
                self.tables.erasures[raw] = updated
            count(self._erasure_log)  # the key is in the erased-keys table for this erasure
        for key in work.consent_deletes:
            count(self._consent_log, 0)
            if key.encode() in self.tables.consent:
                del self.tables.consent[key.encode()]
                count(self._consent_log)
        settle = bool(work.erasures or work.consent_deletes)
        # 5. What cs.subjects.v1 holds about the subject now, looked up while Kafka takes
        # those table writes (both done before anything of step 6 is sent).
        if work.lookup_subjects:
            if settle:
                _, found = await asyncio.gather(self._deliver([]), self._lookup(work.subject_keys))
            else:
                found = await self._lookup(work.subject_keys)
            with_subjects(work, request, found, self.builder, now=now)
            count(topics.SUBJECTS.name, 0)
        elif settle:
            await self._deliver([])
        # 6. Consent table, then the rows; wait for all of it.
        for key, change in work.consent_changes:
            state = self._consent(key)
            count(self._consent_log, self._write_consent(key, state, apply(state, change)))
        for new_key, old_keys in work.consent_copies.items():
            state = self._consent(new_key)
            inherited = merge([state, *(self._consent(k) for k in old_keys)])
            count(self._consent_log, self._write_consent(new_key, state, inherited))
        sends: list[Outgoing] = []
        for row in work.rows:
            sends.append(Outgoing(row.topic, row.key.encode(), self.encode(row), tuple(row.headers)))
            count(row.topic)
            self.metrics.events_out.labels(row.topic, row.schema or "tombstone").inc()
        await self._deliver(sends)
        # 7. The storage side's command, only now, in an envelope signed with the command key.
        message = event.message
        assert verdict.request_id is not None and message.value is not None
        envelope = command_envelope(request, message.value, work, counts, verdict.at)
        headers = tuple(self.command_signer.headers(envelope))
        command = Outgoing(topics.DSR_COMMANDS.name, verdict.request_id.encode(), message.value, headers)
        await self._deliver([command])
        self.metrics.events_out.labels(topics.DSR_COMMANDS.name, REQUEST_SCHEMA).inc()
        log.info(
            "data-subject request %s (%s) executed: %s", verdict.request_id, request["request_type"], counts or "{}"
        )

    def _consent(self, key: str) -> SubjectConsent:
        return from_stored(self.tables.consent.get(key.encode()))

    def _write_consent(self, key: str, before: SubjectConsent, after: SubjectConsent) -> int:
        """Write `after` when it differs from `before`; the number of table writes."""
        if after == before:
            return 0
        self.tables.consent[key.encode()] = to_stored(after)
        self.metrics.consent_updates.inc()
        return 1

    # ---- I/O --------------------------------------------------------------------------

    def _decode(self, value: bytes | None) -> dict[str, Any] | None:
        try:
            decoded = self._deserialize(value)
        except SerdeError:
            return None
        return decoded.value if decoded.schema_name == REQUEST_SCHEMA else None

    async def _lookup(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        try:
            return await asyncio.to_thread(self.directory.find, keys)
        except Exception as exc:
            _exit(f"cannot read {self.directory.topic}", exc)

    async def _deliver(self, sends: Sequence[Outgoing]) -> None:
        """Hand `sends` to the producer, then wait until Kafka has them and every table write."""
        producer = self.app.producer
        try:
            pending = [
                await producer.send(
                    out.topic, out.key, out.value, partition=None, timestamp=None, headers=list(out.headers)
                )
                for out in sends
            ]
            if pending:
                await asyncio.gather(*pending)
            await producer.flush()
        except Exception as exc:
            _exit("cannot deliver the work of a data-subject request", exc)


def _exit(what: str, exc: BaseException) -> NoReturn:
    """faust would ack the message on the way down: only an immediate exit keeps it for a retry."""
    log.critical("%s (%s): exiting", what, type(exc).__name__)
    logging.shutdown()
    os._exit(EXIT_DELIVERY_FAILED)
