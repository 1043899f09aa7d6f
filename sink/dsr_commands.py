"""Data-subject requests executed by the sink, which owns the store (`records worker sink`
subscribes to cs.dsr.commands.v1 with this handler; the SQL is sink/dsr_storage.py).

The sink hands one batch's commands to `DsrExecutor.handle`, in offset order, under the
engine lock, after the batch's rows are stored and before its offsets are committed
(sink/clickhouse_sink.py, step 4). One call:
1. open: a value that is not a DataSubjectRequest goes to the dead-letter topic with its
   original bytes and headers. So does a command whose envelope (pipeline/dsr_contract.py)
   is missing, malformed, signed with a command key this process does not trust
   (RECORDS_COMMAND_PUBLIC_KEYS), not bound to the request bytes it carries, or older
   than RECORDS_COMMAND_MAX_AGE_HOURS: the DLQ headers name the check, the refusal is
   counted by reason (records_sink_dsr_commands_refused), nothing executes and no
   receipt is written (a forgery reusing a real request id must not overwrite its receipt);
2. redelivery: a request the sink itself recorded as COMPLETED in records.dsr_executed is
   not executed again. The same command again (same request bytes and verification time:
   the streams stage forwarded it again, or a crash came before the receipt reached
   Kafka) gets its stored receipt produced again; a different command for it is refused
   as replayed (step 1's DLQ). Receipts arriving on cs.dsr.receipts.v1 play no part here:
   anyone who can write to that topic could otherwise stop an erasure;
3. verify the DPO's request again (defence in depth): its Ed25519 signature with the DPO
   keys this process trusts (RECORDS_DPO_PUBLIC_KEYS), and its age at the verification
   time the streams stage signed (the policy's request_max_age). A failure gets a REJECTED
   receipt;
4. execute (sink/dsr_execution.py), in offset order, with the subject keys, verification
   time and counts of the signed envelope only; consecutive erasures run together: one count query and at most
   one mutation per table for all of them, the tables' mutations issued together and
   waited for once (sink/mutations_together.py: the parts are rewritten before the call
   returns, as with `mutations_sync = 2`), so concurrent erasures never pile up mutations;
5. receipt (counts and times, no personal data): recorded with the executed command in
   records.dsr_executed at once, so a redelivered command finds it, then produced to
   cs.dsr.receipts.v1 (key: request id) and flushed before the batch commits. The
   receipts table (records.dsr_receipts) is filled from that topic only, once per
   receipt, like the streams stage's receipts.

Failures of ClickHouse or Kafka raise, so the sink retries the batch from this step
(every step is idempotent; row counts taken before a deletion are kept for the retry, and
in the store, so a restart after a kill reports them too: sink/erasure_progress.py).
A request that cannot be executed as it is gets a FAILED receipt and never blocks the
sink. Log lines name request ids, types and counts, never an identifier or a key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from confluent_kafka import KafkaException

from pipeline import topics
from pipeline.clickhouse_ddl import table_models
from pipeline.config import Settings
from pipeline.dead_letter import DeadLetter
from pipeline.dsr import (
    RECEIPT_SCHEMA,
    REQUEST_SCHEMA,
    DsrRejected,
    RequestType,
    TrustedKeys,
    to_millis,
    utcnow,
    verify_request,
)
from pipeline.dsr_contract import (
    CommandRejected,
    CommandRejectReason,
    Receipt,
    check_request_matches,
    open_command,
)
from pipeline.exceptions import RecordsError
from pipeline.kafka.producer import KafkaProducer
from pipeline.policy import Policy, default_policy
from pipeline.serde import Serde, SerdeError
from sink.batch import KafkaMessage, header_pairs
from sink.batch_writer import CommandHandler
from sink.dsr_execution import (
    COMPLETED,
    FAILED,
    LARGE_QUERY,
    REJECTED,
    ExecutionResult,
    erase_together,
    execute_by_type,
)
from sink.dsr_shards import ShardCounts, subject_rows_per_shard
from sink.dsr_storage import (
    EXECUTED,
    EXECUTED_COLUMNS,
    DsrCommand,
    executed_query,
    executed_row,
    subject_tables,
)
from sink.erasure_guard import ErasureGuard
from sink.erasure_progress import pause_before_receipts
from sink.exceptions import KafkaSinkError
from sink.metrics import SinkMetrics
from sink.rows_insert import insert_rows

log = logging.getLogger(__name__)

STAGE = "sink.dsr"
REDELIVERED = "REDELIVERED"  # metrics only: a command whose receipt was already stored
_MUTATION = {"mutations_sync": "2", "max_query_size": str(16 * 1024 * 1024)}
_QUERY = {"max_query_size": str(16 * 1024 * 1024)}
_INSERT = {"input_format_avro_allow_missing_fields": "1"}
# Failures of the store or of Kafka: the sink retries the whole batch (sink/clickhouse_sink.py).
_RETRIED = (RecordsError, DriverError, KafkaException)


@dataclass(frozen=True)
class DsrTopics:
    """Where commands come from and receipts and dead letters go."""

    commands: str = topics.DSR_COMMANDS.name
    receipts: str = topics.DSR_RECEIPTS.name
    dlq: str = topics.DLQ.name

    def with_suffix(self, suffix: str) -> DsrTopics:
        """The same topics renamed (isolated runs: tests, benchmarks), as SinkOptions does."""
        if not suffix:
            return self
        return DsrTopics(self.commands + suffix, self.receipts + suffix, self.dlq + suffix)


class DsrExecutor:
    """Executes verified data-subject requests on the store; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        serde: Serde,
        dsr_topics: DsrTopics | None = None,
        policy: Policy | None = None,
        trusted: TrustedKeys | None = None,
        command_keys: TrustedKeys | None = None,
        metrics: SinkMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.topics = dsr_topics or DsrTopics()
        self.policy = policy or default_policy()
        catalog = serde.catalog
        self.models = table_models(self.policy, catalog)
        self.tables = subject_tables(self.models)
        self.guard = ErasureGuard(self.models)
        self.metrics = metrics
        self._clock = clock
        # Read at start-up by records/wiring.py (never from settings here); none given: the
        # executor trusts no key, so it refuses every command and rejects every request.
        self.trusted = trusted if trusted is not None else TrustedKeys({})
        self.command_keys = command_keys if command_keys is not None else TrustedKeys({})
        self._decode_value = serde.decode
        self._encode_receipt = serde.encoder(RECEIPT_SCHEMA)
        self._producer: KafkaProducer | None = None
        # request id -> store -> rows counted before its deletion; kept until the receipt
        # is stored, so a retried batch does not report 0 for tables already erased.
        self._counted: dict[str, dict[str, int]] = {}
        self._shard_counted: dict[str, ShardCounts] = {}  # the same per shard, on a cluster

    def handler(self) -> CommandHandler:
        """The sink's handler of the commands topic."""
        return CommandHandler(self.topics.commands, self.handle, bind=self.bind)

    def bind(self, metrics: SinkMetrics) -> None:
        """Count into the sink's metrics bundle (called by the sink it is plugged into)."""
        self.metrics = metrics

    def close(self) -> None:
        """Flush what is still queued (every receipt was flushed before its batch committed)."""
        if self._producer is not None:
            try:
                self._producer.flush(10)
            except RecordsError as exc:
                log.warning("DSR producer not flushed on close: %s", exc)
            self._producer = None

    # ---- one batch ----------------------------------------------------------------------

    def handle(self, client: Client, messages: Sequence[KafkaMessage]) -> None:
        """Execute a batch's commands (idempotent; see the module docstring)."""
        producer = self._require_producer()
        failed_before = producer.stats.failed
        commands: list[tuple[KafkaMessage, DsrCommand]] = []
        seen: set[str] = set()
        for message in messages:
            command = self._open(message)
            if command is not None and command.request_id not in seen:
                seen.add(command.request_id)
                commands.append((message, command))
        executed = self._executed(client, [c.request_id for _, c in commands])
        receipts: list[Receipt] = []
        executable: list[DsrCommand] = []
        for message, command in commands:
            if command.request_id in executed:
                stored, identity = executed[command.request_id]
                if identity != _identity(command):
                    self._refuse(message, CommandRejected(CommandRejectReason.REPLAYED))
                    continue
                log.info(
                    "DSR %s (%s) was executed before: its receipt is produced again", command.request_id, _type(command)
                )
                receipts.append(stored)
                self._count(_type(command), REDELIVERED)
                continue
            failure = self._verify(command)
            if failure is None:
                executable.append(command)
            else:
                receipts.append(self._finish(client, command, failure))
        for run in _runs(executable):
            try:
                if run[0].request_type is RequestType.ERASURE:
                    results = self.erase(client, run)
                else:
                    results = {run[0].request_id: self.execute(client, run[0])}
            except _RETRIED:
                raise  # the store or Kafka failed: the sink retries the batch
            except Exception as exc:  # a bug: a FAILED receipt rather than a sink crash-looping on it
                log.error("DSR %s: unexpected %s", ", ".join(c.request_id for c in run), type(exc).__name__)
                results = {
                    c.request_id: ExecutionResult(FAILED, {}, f"internal error ({type(exc).__name__})") for c in run
                }
            for command in run:
                receipts.append(self._finish(client, command, results[command.request_id]))
        if any(r.request_type == RequestType.ERASURE for r in receipts):
            pause_before_receipts(self.settings.fault_erasure_pause_s, len(receipts))
        for receipt in receipts:
            producer.produce(
                self.topics.receipts, self._encode_receipt(receipt.to_value()), key=receipt.request_id.encode()
            )
        producer.flush(30)
        if producer.stats.failed > failed_before:
            raise KafkaSinkError(f"DSR receipts or dead letters not acknowledged: {producer.stats.describe_errors()}")

    def _open(self, message: KafkaMessage) -> DsrCommand | None:
        """The verified command of a message; None for a tombstone, and for a value that is
        not a request or a command that fails its envelope's checks (both dead-lettered)."""
        value = message.value()
        if value is None:
            return None
        try:
            decoded = self._decode_value(value)
            if decoded.schema_name != REQUEST_SCHEMA:
                raise SerdeError(f"{decoded.schema_name} is not a {REQUEST_SCHEMA}")
        except SerdeError as exc:
            self._dead_letter(message, exc)
            return None
        try:
            envelope = open_command(
                header_pairs(message),
                value,
                self.command_keys,
                now=self._clock(),
                max_age=self.settings.command_max_age,
            )
            check_request_matches(envelope, decoded.value)
        except CommandRejected as exc:
            self._refuse(message, exc)
            return None
        return DsrCommand(decoded.value, envelope)

    # ---- checks -------------------------------------------------------------------------

    def _executed(self, client: Client, request_ids: Sequence[str]) -> dict[str, tuple[Receipt, tuple[str, int]]]:
        """What the sink recorded as COMPLETED, by request id: the receipt and the identity
        (request digest, verification time) of the command it executed."""
        if not request_ids:
            return {}
        result = client.query(executed_query(request_ids), settings=LARGE_QUERY)
        out: dict[str, tuple[Receipt, tuple[str, int]]] = {}
        for row in result.result_rows:
            stored = dict(zip(result.column_names, row, strict=True))
            receipt = Receipt.from_value(stored)
            out[receipt.request_id] = (receipt, (str(stored["request_sha256"]), to_millis(stored["verified_at"])))
        return out

    def _verify(self, command: DsrCommand) -> ExecutionResult | None:
        """None when the command may be executed; else the result that says why not."""
        if command.request_type is None:
            return ExecutionResult(FAILED, {}, "unsupported request type")
        try:
            # The DPO's signature, and the request's age when the streams stage verified it
            # (signed in the envelope, whose own age step 1 bounded).
            verify_request(
                command.request,
                self.trusted,
                now=command.envelope.verified_at,
                max_age=self.policy.request_max_age,
                seen=False,
            )
        except DsrRejected as exc:
            log.warning("DSR %s rejected by the sink: %s", command.request_id, exc.reason.value)
            return ExecutionResult(REJECTED, {}, f"rejected by the sink: {exc}")
        return None

    # ---- execution ----------------------------------------------------------------------

    def execute(self, client: Client, command: DsrCommand) -> ExecutionResult:
        """Execute one request other than an erasure; on a cluster a completed one's result
        also says where the subject's rows are, per shard (sink/dsr_shards.py)."""
        result = self._execute(client, command)
        cluster = self.settings.clickhouse_cluster
        if cluster and result.status == COMPLETED:
            shards = subject_rows_per_shard(client, self.tables, command.keys, cluster)
            result = replace(result, shard_counts=shards)
        return result

    def _execute(self, client: Client, command: DsrCommand) -> ExecutionResult:
        return execute_by_type(
            client, command, settings=self.settings, policy=self.policy, tables=self.tables, clock=self._clock
        )

    def erase(self, client: Client, run: Sequence[DsrCommand]) -> dict[str, ExecutionResult]:
        """Erase every subject of `run` together (sink/dsr_execution.py); the row counts
        taken before the deletions are kept here until their receipts are stored."""
        return erase_together(
            client,
            run,
            settings=self.settings,
            tables=self.tables,
            counted=self._counted,
            shard_counted=self._shard_counted,
        )

    # ---- receipts, dead letters, metrics --------------------------------------------------

    def _finish(self, client: Client, command: DsrCommand, result: ExecutionResult) -> Receipt:
        """The request's receipt, recorded with the command in records.dsr_executed (what a
        redelivery is checked against); counted in the metrics."""
        completed_at = self._clock()
        receipt = Receipt.of(
            command.request_id,
            command.request_type,
            result.status,
            requested_at=command.issued_at,
            completed_at=completed_at,
            store_counts=result.store_counts,
            detail=result.detail,
            shard_counts=result.shard_counts,
            identity_verified_by=command.request.get("identity_verified_by"),
        )
        insert_rows(client, EXECUTED, EXECUTED_COLUMNS, [executed_row(receipt, command.envelope)])
        self._counted.pop(command.request_id, None)
        self._shard_counted.pop(command.request_id, None)
        kind = _type(command)
        self._count(kind, result.status)
        if self.metrics is not None and result.status == COMPLETED:
            # From the DPO's issue to the receipt: what the DPO waits (records_sink_dsr_seconds).
            self.metrics.dsr_latency.labels(kind).observe(max(0.0, (completed_at - command.issued_at).total_seconds()))
        log.info("DSR %s (%s): %s", command.request_id, kind, result.status)
        return receipt

    def _refuse(self, message: KafkaMessage, refusal: CommandRejected) -> None:
        """A command that must not execute: to the DLQ with the reason, counted by reason."""
        self._dead_letter(message, refusal)
        if self.metrics is not None:
            self.metrics.dsr_commands_refused.labels(refusal.reason.name).inc()

    def _dead_letter(self, message: KafkaMessage, error: Exception) -> None:
        letter = DeadLetter.of(message, error, STAGE)
        self._require_producer().produce(
            self.topics.dlq, message.value(), key=message.key(), headers=letter.headers(header_pairs(message))
        )
        if self.metrics is not None:
            self.metrics.dead_lettered.labels(letter.source_topic, letter.error_class).inc()
        log.warning(
            "DSR command at %s[%d]@%d to the DLQ: %s", letter.source_topic, letter.partition, letter.offset, error
        )

    def _count(self, kind: str, status: str) -> None:
        if self.metrics is not None:
            self.metrics.dsr_requests.labels(kind, status).inc()

    def _require_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(self.settings.kafka, extra={"client.id": "cs-clickhouse-sink-dsr"})
        return self._producer


def _runs(commands: Sequence[DsrCommand]) -> list[list[DsrCommand]]:
    """Consecutive erasures as one run, every other request alone: the DPO's order holds,
    and a backlog of erasures costs one mutation per table."""
    runs: list[list[DsrCommand]] = []
    for command in commands:
        erasure = command.request_type is RequestType.ERASURE
        if erasure and runs and runs[-1][0].request_type is RequestType.ERASURE:
            runs[-1].append(command)
        else:
            runs.append([command])
    return runs


def _identity(command: DsrCommand) -> tuple[str, int]:
    """What makes two commands of a request the same command: the request bytes and the
    verification time (the counts may differ when the streams stage re-ran its part)."""
    return command.envelope.request_sha256, to_millis(command.envelope.verified_at)


def _type(command: DsrCommand) -> str:
    kind = command.request_type
    return kind.value if kind is not None else "UNKNOWN"
