"""The streams worker as a process (`records worker streams`): checks that the topics it
needs exist, creates this app id's changelogs, builds the `StreamsWorker` and runs it
under faust's worker until SIGINT/SIGTERM, with its metrics endpoint. The worker itself
(agents, tables, batches) is `streams.app`."""

from __future__ import annotations

import logging

import faust
from prometheus_client import CollectorRegistry

from pipeline import gc_tuning, topics
from pipeline.config import KafkaConnection, Settings
from pipeline.dsr import TrustedKeys
from pipeline.dsr_contract import CommandSigner
from pipeline.exceptions import ConfigError
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from streams import enrich, metrics
from streams.app import DSR_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS, StreamsWorker, WorkerOptions

log = logging.getLogger(__name__)


class FaustWorker(faust.Worker):
    """faust's worker with the root logger at the level asked for.

    mode's logging setup (faust-streaming 0.15, mode-streaming 0.4) leaves the root
    logger at DEBUG whatever `loglevel` says, so every library's `log.debug` builds a
    LogRecord: aiokafka logs one per message sent (~2-3% of the stage's CPU, measured
    with py-spy). Only the level changes; handlers and formats stay faust's."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level or logging.WARNING)

    # mode's worker answers SIGUSR1 by writing every thread's and task's stack with their
    # local variables to stderr (personal data of the batch in hand, into the log), and
    # SIGUSR2 by starting pdb on the worker's stdin. Neither belongs in a production worker:
    # both signals are acknowledged in the log and otherwise ignored (`py-spy dump` shows
    # stacks without locals and without writing to the log).
    def _on_sigusr1(self) -> None:
        log.warning("SIGUSR1 ignored: the stack dump with local variables is off (use py-spy dump)")

    def _on_sigusr2(self) -> None:
        log.warning("SIGUSR2 ignored: the debugger is off in the worker")


def missing_topics(kafka: KafkaConnection) -> list[str]:
    """Topics the worker reads or writes that the cluster does not have."""
    existing = KafkaAdmin(kafka, timeout=10).list_topics()
    return [spec.name for spec in (*INPUT_TOPICS, *OUTPUT_TOPICS, *DSR_TOPICS) if spec.name not in existing]


def _ensure_changelogs(kafka: KafkaConnection, app_id: str) -> None:
    """Create this app id's changelog topics if they are missing, before faust starts: a
    changelog faust creates itself can stay unknown to its metadata for a while, and a
    table write then fails inside the agent (a request acked but never executed). For the
    default app id `records topics ensure` has created them already."""
    admin = KafkaAdmin(kafka, timeout=10)
    existing = admin.list_topics()
    missing = [spec for spec in topics.changelogs_for(app_id) if spec.name not in existing]
    if missing:
        admin.create_topics(missing)
        log.info("created changelog topic(s) %s", ", ".join(spec.name for spec in missing))


def run_worker(
    settings: Settings,
    keyer: SubjectKeyer,
    *,
    serde: Serde,
    trusted: TrustedKeys,
    command_signer: CommandSigner,
    options: WorkerOptions | None = None,
    loglevel: str = "info",
) -> None:
    """Run the streams worker until SIGINT/SIGTERM. Blocks. `trusted`: the DPO public keys;
    `command_signer`: the key signing the commands to the sink."""
    options = options or WorkerOptions()
    missing = missing_topics(settings.kafka)
    if missing:
        raise ConfigError(f"topics missing: {', '.join(missing)}; run `records topics ensure` first")
    _ensure_changelogs(settings.kafka, options.app_id)
    registry = CollectorRegistry()
    cities = enrich.city_provider(settings.geoip_city_db)
    worker = StreamsWorker(
        settings,
        keyer,
        serde=serde,
        registry=registry,
        options=options,
        cities=cities,
        trusted=trusted,
        command_signer=command_signer,
    )
    metrics.serve(registry, settings.streams_metrics_port)
    log.info(
        "streams worker %s: metrics on port %s, city provider %s, %d trusted DPO key(s), command key %s",
        options.app_id,
        settings.streams_metrics_port or "off",
        type(cities).__name__,
        len(trusted.keys),
        command_signer.key_id,
    )
    gc_tuning.tune()  # fewer, cheaper collections per message (pipeline/gc_tuning.py)
    try:
        FaustWorker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        cities.close()
