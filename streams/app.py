"""The faust-streaming worker: wires the pure core (`rows`, `enforce_consent`, `enrich`,
`consent_state`) to Kafka topics. Nothing here decides policy.

One consumer group, id `STREAMS_APP_ID`, reads:
- the four record topics, routed past faust's streams (`streams.fast_drain.route_batches`:
  the records of each fetch, up to `batch_size`, in one call): cs.consent.v1 writes the
  consent table and emits the ledger rows; cs.chat.v1, cs.call.v1 and cs.contact-form.v1
  look the subject keys up in the consent table and build the rows;
- cs.dsr.v1, with the `dsr` agent: verifies data-subject requests and executes their
  Kafka side (`streams.dsr_stage`), then forwards them to the sink on cs.dsr.commands.v1.
Before building anything, an event that predates an erasure of one of its subjects is
dropped (`streams.erased_keys`): counted, not dead-lettered. A batch of records is
decoded and encoded with parsed schemas and built with `streams.rows`; every output
message is queued on a confluent-kafka (librdkafka) producer and each record is
acknowledged only after every delivery report of its batch is in
(`streams.delivery_window`, which builds the next batch meanwhile): at-least-once, and
row ids make a replay idempotent downstream. faust's own producer writes the tables'
changelogs and the DSR stage's output. The app consumes through `streams.fast_drain`
(fetched messages handed over one fetch at a time, not one task group per message; and
two repairs to faust's rebalance path without which a restarted worker could stall: see
that module). faust's own drain is not an option: it has the stall.

The consent table is a faust GlobalTable with `use_partitioner=True`: chats and calls are
keyed by conversation/call id, not by subject, so the subject keys a record needs live
on any partition; a global table gives every worker all of them. The partitioner (not
the source partition) places each key in the changelog `cs-streams-consent-changelog`
(compacted, 3 partitions as in pipeline/topics.py), which is also what allows writes
from inside a batch. `recovery_buffer_size=1` applies other workers' writes at once.
The store is `memory://`: on start the worker replays the changelog, which is the state.
The erased-keys table (`erasures`, subject key -> erased_at) and the seen-requests table
(`dsr-seen`, request id -> first message) are global tables built the same way; a timer
(`seen_sweep_every`) drops the seen ids past the request max age (`streams.dsr_stage`).

Bad input never stops the worker: an undecodable message, a schema that does not belong
to its topic, or an invalid event goes to cs.dlq.v1 with its original key, bytes and
headers plus `pipeline.dead_letter` headers; a recording without prior notice goes to
cs.quarantine.v1 the same way.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
from faust.types import Message
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.config import KafkaConnection, Settings
from pipeline.dead_letter import DeadLetter
from pipeline.dsr import TrustedKeys
from pipeline.dsr_contract import CommandSigner
from pipeline.exceptions import ConfigError
from pipeline.kafka.producer import KafkaProducer
from pipeline.policy import Policy, default_policy
from pipeline.schemas import SchemaError
from pipeline.serde import Decoded, Serde, SerdeError
from pipeline.subject_keys import SubjectKeyer
from streams import enrich, erased_keys, metrics
from streams.consent_state import SubjectConsent, from_stored, merge, stored_after, to_millis
from streams.delivery_window import DeliveryWindow
from streams.dsr_stage import DsrStage, DsrTables
from streams.exceptions import InvalidEvent
from streams.fast_drain import route_batches, use_fast_drain
from streams.outgoing import Outgoing
from streams.prompt_tables import PromptTableManager
from streams.rows import Outcome, Row, RowBuilder
from streams.subject_directory import SubjectDirectory
from streams.table_reads import lookup

log = logging.getLogger(__name__)

STAGE = "streams"
INPUT_TOPICS = topics.STREAMS_INPUTS
OUTPUT_TOPICS = topics.STREAMS_OUTPUTS
DSR_TOPICS = (topics.DSR, topics.DSR_COMMANDS, topics.DSR_RECEIPTS)
# librdkafka settings of the record output's producer (see StreamsWorker.__init__)
OUTPUT_PRODUCER: dict[str, Any] = {"partitioner": "murmur2_random"}


@dataclass(frozen=True)
class WorkerOptions:
    app_id: str = topics.STREAMS_APP_ID
    batch_size: int = 1000  # records per fetch, and so per batch (faust's broker_max_poll_records)
    batches_in_flight: int = 2  # batches whose delivery reports are awaited at a time (streams.delivery_window)
    erased_keys_expiry_every_s: float = 3600.0  # how often expired erased-keys entries are deleted
    seen_sweep_every: float = 600.0  # seconds between sweeps of the seen-requests table
    # How long the group waits for a member that stopped heartbeating (kill -9, a lost
    # host) before its partitions move: the bound on a restarted worker's pause. faust's
    # default is 60 s; 10 s as for the sink (sink/clickhouse_sink.py).
    session_timeout_s: float = 10.0
    delivery_timeout_s: float = 120.0  # a batch's output not delivered by then: exit, the batch is replayed


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def broker_credentials(kafka: KafkaConnection) -> Any:
    """faust credentials for the configured security protocol (None for PLAINTEXT)."""
    protocol = (kafka.security_protocol or "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=kafka.ssl_ca_location)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise ConfigError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are needed for SASL")
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get(),
            ssl_context=ssl_context,
            mechanism=kafka.sasl_mechanism or "PLAIN",
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    raise ConfigError(f"KAFKA_SECURITY_PROTOCOL {protocol} is not supported by the streams worker")


class StreamsWorker:
    """The faust app with its table and agents, and the state they share."""

    def __init__(
        self,
        settings: Settings,
        keyer: SubjectKeyer,
        *,
        serde: Serde,
        registry: CollectorRegistry,
        options: WorkerOptions | None = None,
        policy: Policy | None = None,
        cities: enrich.CityProvider | None = None,
        trusted: TrustedKeys | None = None,
        command_signer: CommandSigner,
        directory: SubjectDirectory | None = None,
    ) -> None:
        """`trusted`: the DPO public keys data-subject requests must be signed with (none:
        every request is rejected). `command_signer`: the stage's key signing the commands
        it forwards to the sink. `directory`: where SubjectRecords are looked up (default:
        cs.subjects.v1 on the settings' cluster)."""
        self.settings = settings
        self.options = options = options or WorkerOptions()
        self.metrics = metrics.StreamsMetrics.create(registry)
        policy = policy or default_policy()
        self.builder = RowBuilder(keyer, policy, cities)
        self.serde = serde
        self.deserialize = serde.decode
        # The record agents' output goes through librdkafka, not faust's aiokafka producer:
        # produce() only queues (no future and no task per message) and each batch counts
        # its delivery reports (streams.delivery_window). murmur2_random is the Java
        # client's (and aiokafka's) partitioner, so a key lands on the partition it always
        # did; that matters for the compacted topics (cs.subjects.v1).
        self.output = KafkaProducer(settings.kafka, extra=OUTPUT_PRODUCER)
        self.app = faust.App(
            options.app_id,
            broker=_broker_urls(settings.kafka.bootstrap),
            broker_credentials=broker_credentials(settings.kafka),
            store="memory://",
            datadir=str(settings.data_dir / "faust"),
            web_enabled=False,
            topic_partitions=topics.CHAT.partitions,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=options.session_timeout_s,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            broker_max_poll_records=options.batch_size,
            stream_buffer_maxsize=4 * options.batch_size,
            worker_redirect_stdouts=False,
            TableManager=PromptTableManager,  # no 1 s pause before the tables start (streams.prompt_tables)
        )
        use_fast_drain(self.app)
        self.consent_table = self._global_table(
            topics.CONSENT_TABLE,
            topics.CONSENT_CHANGELOG,
            "Consent state per subject key (streams.consent_state.SubjectConsent as JSON).",
            value_type=bytes,  # streams.consent_state.to_stored: no decode when it reads its own writes back
        )
        self.erasures = self._global_table(
            topics.ERASURES_TABLE,
            topics.ERASURES_CHANGELOG,
            "Erased-keys table: subject key -> erased_at, epoch ms (streams.erased_keys).",
        )
        self.dsr_seen = self._global_table(
            topics.DSR_SEEN_TABLE,
            topics.DSR_SEEN_CHANGELOG,
            "Data-subject request ids read, with the message that carried each first.",
        )
        self._expected_schemas = {spec.name: set(spec.value_schemas) for spec in INPUT_TOPICS}
        self.window = DeliveryWindow(
            self.output, depth=options.batches_in_flight, timeout_s=options.delivery_timeout_s, fail=_exit_undelivered
        )
        route_batches(self.app, [spec.name for spec in INPUT_TOPICS], self._on_records)
        self.dsr = DsrStage(
            self.app,
            self.builder,
            DsrTables(consent=self.consent_table, erasures=self.erasures, seen=self.dsr_seen),
            self.metrics,
            trusted=trusted or TrustedKeys({}),
            directory=directory or SubjectDirectory(settings.kafka, decode=serde.decode),
            serde=serde,
            command_signer=command_signer,
            max_age=policy.request_max_age,
            encode=self._encode,
            clock=_now,
        )
        requests = self.app.topic(topics.DSR.name, key_serializer="raw", value_serializer="raw")
        self.app.agent(requests, name="dsr")(self.dsr.run)
        self._erased_keys_retention_ms = int(topics.erased_keys_retention(policy).total_seconds() * 1000)
        self.app.timer(interval=options.erased_keys_expiry_every_s, name="erased-keys-expiry")(self.expire_erasures)
        self.app.timer(options.seen_sweep_every, name="dsr-seen-sweep")(self.dsr.sweep_seen)
        self.app.task(self.start_subject_index)

    async def start_subject_index(self) -> None:
        """Start building the subject index at start-up, not at the first data-subject
        request (streams/subject_directory.py)."""
        self.dsr.directory.start()

    async def expire_erasures(self) -> int:
        """Delete the erased-keys entries past the policy's retention (streams.erased_keys);
        the number deleted. Every worker holds the whole global table; a key deleted by two
        workers is only tombstoned twice."""
        keys = erased_keys.expired(list(self.erasures.items()), to_millis(_now()), self._erased_keys_retention_ms)
        for key in keys:
            self.erasures.pop(key, None)
        if keys:
            log.info("erased-keys table: %d entr(ies) past retention deleted", len(keys))
        return len(keys)

    def _global_table(
        self, name: str, spec: topics.TopicSpec, description: str, *, value_type: type | None = None
    ) -> Any:
        """A GlobalTable keyed by bytes whose changelog is `spec` (see the module docstring);
        values JSON, or raw with `value_type=bytes`."""
        return self.app.GlobalTable(
            name,
            partitions=spec.partitions,
            key_type=bytes,
            value_type=value_type,
            use_partitioner=True,
            # With use_partitioner every changelog partition is both active and standby, and
            # faust buffers changes of active partitions up to recovery_buffer_size before
            # applying them: 1 makes another worker's write visible here at once.
            recovery_buffer_size=1,
            extra_topic_configs={k: v for k, v in spec.config.items() if k != "cleanup.policy"},
            help=description,
        )

    # ---- consent table --------------------------------------------------------------

    def consent_of(self, keys: Sequence[str]) -> SubjectConsent:
        """The merged tracker state of a record's subject keys."""
        table = self.consent_table
        return merge(from_stored(lookup(table, key.encode())) for key in keys)

    def erased_at(self, key: str) -> int | None:
        """The erased-keys table's time for a subject key (epoch ms), if it was erased."""
        value = lookup(self.erasures, key.encode())
        return None if value is None else int(value)

    def _update_consent(self, outcome: Outcome) -> None:
        for key, change in outcome.consent_changes:
            raw_key = key.encode()
            updated = stored_after(lookup(self.consent_table, raw_key), change)
            if updated is not None:
                self.consent_table[raw_key] = updated
                self.metrics.consent_updates.inc()

    # ---- records ---------------------------------------------------------------------

    async def _on_records(self, messages: list[Message]) -> None:
        """Process the records of a fetch and hand their output to the delivery window;
        each record is acknowledged once its batch's output is in Kafka (at-least-once)."""
        started = time.perf_counter()
        batch = _Batch(_now())
        for message in messages:
            self._process(message, batch)
        ack = self.app.consumer.ack

        def delivered() -> None:
            for message in messages:
                ack(message)
            self._count(batch)
            self.metrics.batch_seconds.labels("records").observe(time.perf_counter() - started)

        await self.window.send(batch.sends, delivered)

    def _process(self, message: Message, batch: _Batch) -> None:
        """Decode, build and encode one message; any failure sends it to the DLQ."""
        schema = "-"
        try:
            decoded = self._decode(message.topic, message.value)
            schema = decoded.schema_name
            keys, moment = self.builder.erasure_scope(schema, decoded.value)
            moment = erased_keys.taken_in(moment, message.timestamp)
            if erased_keys.is_erased(self.erased_at, keys, moment):
                batch.tally[("in", message.topic, schema)] += 1
                batch.tally[("erased", message.topic, schema)] += 1
                return
            outcome = self.builder.build(schema, decoded.value, self.consent_of, batch.now)
            encoded = [(row, self._encode(row)) for row in outcome.rows]
        except (SerdeError, SchemaError, InvalidEvent) as exc:
            self._dead_letter(message, schema, type(exc).__name__, str(exc), batch)
            return
        except Exception as exc:  # a bug must not stop the stream; its message may hold values
            log.error(
                "unexpected %s processing %s from %s[%d]@%d\n%s",
                type(exc).__name__,
                schema,
                message.topic,
                message.partition,
                message.offset,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            error = f"internal error ({type(exc).__name__}) processing {schema}"
            self._dead_letter(message, schema, type(exc).__name__, error, batch)
            return
        batch.tally[("in", message.topic, schema)] += 1
        if outcome.quarantine is not None:
            self._forward(
                topics.QUARANTINE.name, message, outcome.quarantine.requirement, outcome.quarantine.error, batch
            )
            batch.tally[("quarantined", outcome.quarantine.requirement)] += 1
            return
        self._update_consent(outcome)
        for row, value in encoded:
            batch.sends.append(Outgoing(row.topic, row.key.encode(), value, tuple(row.headers)))
            batch.tally[("out", row.topic, row.schema or "tombstone")] += 1
        for strip in outcome.stripped:
            batch.tally[("stripped", strip.record_type, strip.field, strip.reason)] += 1

    def _count(self, batch: _Batch) -> None:
        counters = {
            "in": self.metrics.events_in,
            "out": self.metrics.events_out,
            "stripped": self.metrics.stripped,
            "quarantined": self.metrics.quarantined,
            "dead_lettered": self.metrics.dead_lettered,
            "erased": self.metrics.erased_dropped,
        }
        for (kind, *labels), count in batch.tally.items():
            counters[kind].labels(*labels).inc(count)

    def _decode(self, topic: str, value: bytes | None) -> Decoded:
        decoded = self.deserialize(value)
        if decoded.schema_name not in self._expected_schemas[topic]:
            raise InvalidEvent(f"{decoded.schema_name} does not belong on {topic}")
        return decoded

    def _encode(self, row: Row) -> bytes | None:
        if row.value is None or row.schema is None:
            return None
        return self.serde.encoder(row.schema)(row.value)

    def _dead_letter(self, message: Message, schema: str, error_class: str, error: str, batch: _Batch) -> None:
        topic = message.topic
        self._forward(topics.DLQ.name, message, error_class, error, batch)
        batch.tally[("in", topic, schema)] += 1
        batch.tally[("dead_lettered", topic, error_class)] += 1

    @staticmethod
    def _forward(topic: str, message: Message, error_class: str, error: str, batch: _Batch) -> None:
        """The original message, untouched, with dead-letter headers saying why and from where."""
        letter = DeadLetter(message.topic, message.partition, message.offset, error_class, error, STAGE)
        headers = message.headers or ()
        original = list(headers.items() if isinstance(headers, Mapping) else headers)
        batch.sends.append(Outgoing(topic, message.key, message.value, tuple(letter.headers(original))))


@dataclass
class _Batch:
    """What one batch produces: messages to send and metric increments."""

    now: datetime
    sends: list[Outgoing] = field(default_factory=list)
    tally: Counter[tuple[str, ...]] = field(default_factory=Counter)


def _exit_undelivered(reason: str) -> NoReturn:
    """A batch's output did not reach Kafka: exit at once. faust would commit the batch's
    offsets on the way down; an immediate exit keeps it for a replay."""
    log.critical("cannot deliver the output of a batch of records (%s): exiting", reason)
    logging.shutdown()
    os._exit(70)


def _now() -> datetime:
    """The ingestion time of a batch, at millisecond precision (what Avro stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
