"""`records worker ...`: the long-running processes. `streams` runs the faust-streaming
stage (consent tracking, enrichment, enforcement); the ClickHouse sink joins this group
as `records worker sink`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import typer

from pipeline import topics
from records.wiring import Wiring

worker_app = typer.Typer(help="Run a pipeline worker (blocks until Ctrl-C / SIGTERM).", no_args_is_help=True)

LogLevel = Annotated[str, typer.Option("--loglevel", "-l", help="debug, info, warning or error.")]


@worker_app.command("streams")
def streams(
    loglevel: LogLevel = "info",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Local demo only: generate a pepper, a DPO key pair and a command key pair under the data "
            "dir if none is set.",
        ),
    ] = False,
    app_id: Annotated[
        str,
        typer.Option(
            "--app-id",
            help="faust app id = consumer group and changelog prefix; change only to run an isolated copy.",
            hidden=True,
        ),
    ] = topics.STREAMS_APP_ID,
    seen_sweep_every: Annotated[
        float,
        typer.Option(
            "--seen-sweep-every", min=0.1, help="Seconds between sweeps of the seen-requests table.", hidden=True
        ),
    ] = 600.0,
) -> None:
    """Consume cs.chat.v1, cs.call.v1, cs.consent.v1 and cs.contact-form.v1; emit the enriched, enforced rows.
    Verify and execute the data-subject requests of cs.dsr.v1.

    Needs the subject-key pepper (RECORDS_PEPPER_FILE or RECORDS_PEPPER), the DPO's public
    key(s) (RECORDS_DPO_PUBLIC_KEYS), the key signing the commands it forwards to the sink
    (RECORDS_COMMAND_KEY; the sink trusts its public half, RECORDS_COMMAND_PUBLIC_KEYS) and
    the topics (`records topics ensure`). Prometheus metrics on
    RECORDS_STREAMS_METRICS_PORT (9464).
    """
    from streams.app import WorkerOptions
    from streams.worker_process import run_worker

    wiring = Wiring()
    keyer = wiring.keyer(allow_demo=demo)
    trusted = wiring.trusted_dpo_keys(demo=demo)  # none configured or readable: one-line error, exit 1
    signer = wiring.command_signer(demo=demo)
    run_worker(
        wiring.settings,
        keyer,
        serde=wiring.serde,
        trusted=trusted,
        command_signer=signer,
        options=WorkerOptions(app_id=app_id, seen_sweep_every=seen_sweep_every),
        loglevel=loglevel,
    )


@worker_app.command("sink")
def sink(
    loglevel: LogLevel = "info",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Messages per insert batch.")] = 200_000,
    batch_max_s: Annotated[
        float, typer.Option("--batch-max-s", min=0.01, help="Longest wait before a batch is written (seconds).")
    ] = 1.0,
    batch_max_mb: Annotated[
        int | None,
        typer.Option(
            "--batch-max-mb",
            min=1,
            max=1024,
            help="Largest batch in MB of message values (default 64). The sink's memory follows it: README, "
            "Measured here.",
        ),
    ] = None,
    http_port: Annotated[
        int,
        typer.Option("--http-port", min=0, max=65535, help="Embedded mode: read-only HTTP endpoint port (0: any)."),
    ] = 8123,
    no_http: Annotated[bool, typer.Option("--no-http", help="Embedded mode: serve no HTTP endpoint.")] = False,
    retention_every_s: Annotated[
        float, typer.Option("--retention-every", min=0, help="Embedded mode: enforce retention every N s (0: off).")
    ] = 3600.0,
    recording_check_every_s: Annotated[
        float,
        typer.Option(
            "--recording-check-every", min=0, help="Check new call recordings against their calls every N s (0: off)."
        ),
    ] = 10.0,
    group_id: Annotated[str, typer.Option("--group-id", help="Consumer group.", hidden=True)] = "cs-clickhouse-sink",
    topic_suffix: Annotated[
        str, typer.Option("--topic-suffix", help="Read <topic><suffix> (isolated runs).", hidden=True)
    ] = "",
) -> None:
    """Consume the enriched topics into ClickHouse (embedded chDB, or CLICKHOUSE_URL).

    Batches are inserted as Avro containers; offsets are committed after the insert.
    Embedded mode: this process owns the chDB directory, applies the DDL, enforces
    retention periodically and serves read-only queries on 127.0.0.1 (`records sql`
    goes there while the sink runs). Executes the data-subject requests the streams stage
    forwards on cs.dsr.commands.v1, after checking the stage's command signature
    (RECORDS_COMMAND_PUBLIC_KEYS, age up to RECORDS_COMMAND_MAX_AGE_HOURS) and the DPO's
    again (RECORDS_DPO_PUBLIC_KEYS); both are read at start-up, and a missing one stops
    the sink with a one-line error. Exports go to <RECORDS_DATA_DIR>/exports.
    Prometheus metrics on RECORDS_SINK_METRICS_PORT (9465).
    """
    import logging

    from pipeline.exports import expire_exports, exports_dir
    from pipeline.policy import default_policy
    from retention_jobs.enforce import enforce_retention
    from sink.dsr_commands import DsrExecutor, DsrTopics
    from sink.recording_bounds import recording_bounds_job
    from sink.sink_options import PeriodicJob, SinkOptions
    from sink.sink_process import EndpointOptions, run_sink

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    wiring = Wiring()
    settings = wiring.settings
    # The keys the DSR executor verifies with, read before anything starts: none configured
    # or readable is a one-line error and exit 1, as for the streams worker.
    trusted = wiring.trusted_dpo_keys()
    command_keys = wiring.trusted_command_keys()
    options = SinkOptions(group_id=group_id, batch_size=batch_size, batch_max_s=batch_max_s)
    if batch_max_mb is not None:
        options = replace(options, batch_max_bytes=batch_max_mb * 1024 * 1024)
    jobs = []
    if settings.embedded_clickhouse and retention_every_s > 0:
        # In server mode a scheduled `records retention run` does this (deploy/).
        jobs.append(PeriodicJob("retention", retention_every_s, lambda client: enforce_retention(client)))
    if retention_every_s > 0:
        # The sink writes access exports to its data directory: it also removes the expired ones.
        policy = default_policy()
        exports = exports_dir(settings.data_dir)
        jobs.append(
            PeriodicJob(
                "exports",
                retention_every_s,
                lambda _client: expire_exports(exports, policy.export_retention, datetime.now(UTC)),
            )
        )
    if recording_check_every_s > 0:
        # Notice §5: a recording outside its call is held, shown to no analyst.
        jobs.append(PeriodicJob("recording_bounds", recording_check_every_s, recording_bounds_job()))
    # Data-subject requests (issue 6): the commands handler and the insert guard that keeps
    # erased subjects out.
    dsr = DsrExecutor(
        settings,
        serde=wiring.serde,
        dsr_topics=DsrTopics().with_suffix(topic_suffix),
        trusted=trusted,
        command_keys=command_keys,
    )
    try:
        run_sink(
            settings,
            connect=wiring.clickhouse,
            serde=wiring.serde,
            options=options.with_topic_suffix(topic_suffix),
            endpoint=EndpointOptions(enabled=not no_http, port=http_port),
            maintenance=jobs,
            commands=[dsr.handler()],
            insert_guard=dsr.guard,
        )
    finally:
        dsr.close()


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
