"""`records demo`: the main job on the embedded defaults, end to end, as an operator would
run it: broker up, topics, storage, both workers, synthetic traffic, what was stored
and stripped, a data-subject erasure with its receipt, retention, the compliance report,
then everything stopped again. Personal data (even synthetic) is never printed."""

from __future__ import annotations

import dataclasses
import gc
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.access_log import read_entries
from pipeline.access_roles import Role
from pipeline.access_users import Credential, UserStore
from pipeline.chdb_owner import owner_file, read_owner
from pipeline.clickhouse import run_statement
from pipeline.clickhouse_ddl import ANALYST_DB, RECORDS_DB, table_models
from pipeline.config import Secret, Settings, load_settings
from pipeline.dsr import generate_keypair
from pipeline.exceptions import ClickHouseError, RecordsError
from pipeline.kafka.admin import KafkaAdmin, ensure_topics, group_lag, watermarks
from pipeline.private_files import FILE_MODE, private_dir
from pipeline.subject_keys import load_pepper
from pipeline.topics import (
    ALL_TOPICS,
    CALL,
    CALL_ENRICHED,
    CHAT,
    CHAT_ENRICHED,
    CONSENT,
    CONSENT_LEDGER,
    CONTACT_FORM,
    CONTACT_FORM_ENRICHED,
    DLQ,
    DSR_RECEIPTS,
    QUARANTINE,
    STREAMS_APP_ID,
)
from records.child_process import terminate
from records.local_kafka import LocalBroker
from records.wiring import Wiring

SINK_GROUP = "cs-clickhouse-sink"
_RECORDS = [sys.executable, "-c", "from records.cli import main; main()"]
_DEMO_ANALYST = "demo-analyst"


def _step(title: str) -> None:
    typer.secho(f"\n== {title}", bold=True)


@contextmanager
def _worker(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    private_dir(log_dir)
    log_path = log_dir / f"{name}.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "ab") as log:
        process = subprocess.Popen([*_RECORDS, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    typer.echo(f"started {name} worker (pid {process.pid}), log: {log_path}")
    try:
        yield process
    finally:
        terminate(process, 60)
        typer.echo(f"stopped {name} worker (exit {process.returncode})")


def _wait(what: str, check: Callable[[], bool], timeout: float, process: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for p in process:
            if p.poll() is not None:
                raise RecordsError(f"a worker exited (code {p.returncode}) while waiting for {what}: see .data/logs")
        if time.monotonic() > deadline:
            raise RecordsError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1.0)


def _topic_total(admin: KafkaAdmin, topic: str) -> int:
    return sum(high - low for low, high in watermarks(admin, [topic]).values())


def _rows(settings: Settings) -> dict[str, int]:
    with Wiring(settings).clickhouse() as client:
        return {
            m.name: int(client.query(f"SELECT count() FROM {m.qualified} FINAL").result_rows[0][0])
            for m in table_models()
        }


def _stripped(settings: Settings, table: str = "chat_conversations") -> list[tuple[Any, ...]]:
    with Wiring(settings).clickhouse() as client:
        return [
            tuple(row)
            for row in client.query(
                f"SELECT splitByChar(':', s)[2] AS reason, count() FROM {RECORDS_DB}.{table} FINAL "
                "ARRAY JOIN stripped AS s GROUP BY reason ORDER BY count() DESC"
            ).result_rows
        ]


def _recording_checks(settings: Settings) -> tuple[int, list[tuple[Any, ...]]]:
    """(recordings of a stored call the sink has not checked yet, held recordings by reason)."""
    with Wiring(settings).clickhouse() as client:
        unchecked = client.query(
            f"SELECT count() FROM {RECORDS_DB}.call_recordings FINAL WHERE recording_id NOT IN "
            f"(SELECT recording_id FROM {RECORDS_DB}.recording_checks) "
            f"AND call_id IN (SELECT call_id FROM {RECORDS_DB}.calls)"
        ).result_rows[0][0]
        held = client.query(
            f"SELECT verdict, count() FROM {RECORDS_DB}.recording_checks FINAL WHERE verdict != 'within' "
            "GROUP BY verdict ORDER BY verdict"
        ).result_rows
    return int(unchecked), [tuple(row) for row in held]


def _frequent_caller(settings: Settings) -> tuple[str, int, int]:
    """The phone number with the most calls among those that also sent a contact form
    (else the most frequent caller overall), its calls and its forms."""
    calls = f"{RECORDS_DB}.calls"
    forms = f"{RECORDS_DB}.contact_forms"
    with Wiring(settings).clickhouse() as client:
        rows = client.query(
            "SELECT c.caller_number, c.n, f.n FROM "
            f"(SELECT caller_number, count() AS n FROM {calls} FINAL WHERE startsWith(caller_number, '+') "
            "GROUP BY caller_number) AS c LEFT JOIN "
            f"(SELECT assumeNotNull(phone) AS form_phone, count() AS n FROM {forms} FINAL WHERE phone IS NOT NULL "
            "GROUP BY form_phone) AS f ON c.caller_number = f.form_phone "
            "ORDER BY f.n > 0 DESC, c.n DESC LIMIT 1"
        ).result_rows
    if not rows:
        raise RecordsError("no call was stored: nothing to erase")
    return str(rows[0][0]), int(rows[0][1]), int(rows[0][2])


def _rows_of_phone(settings: Settings, phone: str) -> int:
    with Wiring(settings).clickhouse() as client:
        calls = client.query(
            f"SELECT count() FROM {RECORDS_DB}.calls FINAL WHERE caller_number = {{p:String}}", parameters={"p": phone}
        ).result_rows[0][0]
        recordings = client.query(
            f"SELECT count() FROM {RECORDS_DB}.call_recordings FINAL WHERE caller_number = {{p:String}}",
            parameters={"p": phone},
        ).result_rows[0][0]
        forms = client.query(
            f"SELECT count() FROM {RECORDS_DB}.contact_forms FINAL WHERE phone = {{p:String}}", parameters={"p": phone}
        ).result_rows[0][0]
    return int(calls) + int(recordings) + int(forms)


def _analyst_queries(settings: Settings) -> None:
    """What a DPO does for a new analyst (`records users add`), then the analyst's first
    queries through the sink's endpoint: the views answer, the raw tables refuse."""
    store = UserStore(settings.users_file)
    password = secrets.token_urlsafe(16)  # demo only: a person types her own
    if store.get(_DEMO_ANALYST) is None:
        store.add(_DEMO_ANALYST, Role.analyst, password, datetime.now(UTC).isoformat(timespec="seconds"))
    else:
        store.set_password(_DEMO_ANALYST, password)
    typer.echo(f"records users add {_DEMO_ANALYST} --role analyst  (password stored as a scrypt hash)")
    with Wiring(settings).clickhouse(credential=Credential(_DEMO_ANALYST, Secret(password))) as client:
        calls = run_statement(client, f"SELECT count() FROM {ANALYST_DB}.calls")
        count = calls.rows[0][0] if calls else "?"
        typer.echo(f"  as {_DEMO_ANALYST}: SELECT count() FROM {ANALYST_DB}.calls -> {count}")
        try:
            run_statement(client, f"SELECT count() FROM {RECORDS_DB}.calls")
            typer.echo(f"  as {_DEMO_ANALYST}: {RECORDS_DB}.calls was readable (it should not be)")
        except ClickHouseError:
            typer.echo(f"  as {_DEMO_ANALYST}: SELECT ... FROM {RECORDS_DB}.calls -> refused (views only)")
    entries = sum(1 for e in read_entries(settings.access_log_file) if e.user == _DEMO_ANALYST)
    typer.echo(f"  access log: {entries} entries of {_DEMO_ANALYST} (`records users access-log`)")


def demo(
    events: Annotated[int, typer.Option("--events", min=100, help="Synthetic events to push through.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 1,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the broker running at the end (workers always stop).")
    ] = False,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Start from empty local state: delete the local broker's and chDB's data first."),
    ] = False,
) -> None:
    """Run the whole pipeline locally on a sample of synthetic traffic and show the evidence."""
    settings = load_settings()
    if not settings.embedded_clickhouse:
        raise RecordsError("the demo runs on the embedded defaults: unset CLICKHOUSE_URL")
    started = time.monotonic()
    log_dir = settings.data_dir / "logs"
    broker = LocalBroker.from_settings(settings)
    if reset:
        broker.stop()
        for path in (settings.kafka_dir, settings.chdb_path, log_dir):
            shutil.rmtree(path, ignore_errors=True)
        owner_file(settings.chdb_path).unlink(missing_ok=True)
        typer.echo(f"local state reset ({settings.kafka_dir}, {settings.chdb_path})")
    elif settings.chdb_path.exists():
        typer.echo("note: reusing existing local data; counts include earlier runs (`--reset` starts empty)")

    _step("1. Kafka broker (real Apache Kafka, KRaft, 127.0.0.1)")
    t0 = time.monotonic()
    status, started_now = broker.start()
    typer.echo(f"{status.describe()}{f' (started in {time.monotonic() - t0:.1f} s)' if started_now else ''}")
    settings = dataclasses.replace(settings, kafka=settings.kafka.with_bootstrap(status.bootstrap))
    settings_env = {**os.environ, "KAFKA_BOOTSTRAP": status.bootstrap}
    admin = KafkaAdmin(settings.kafka)

    try:
        _step("2. Topics")
        changes = ensure_topics(admin, ALL_TOPICS)
        typer.echo(f"{len(ALL_TOPICS)} topics in place ({len(changes)} change(s) applied)")

        _step("3. Secrets (demo only: generated under .data/secrets, mode 0600)")
        load_pepper(settings, allow_demo=True)
        env = {**settings_env, "RECORDS_PEPPER_FILE": str(settings.demo_pepper_file)}
        if settings.dpo_private_key is not None and not settings.dpo_private_key.exists():
            key_id = generate_keypair(settings.dpo_private_key, settings.dpo_public_keys[0])
            typer.echo(f"DPO signing key created (key id {key_id})")
        command_key = settings.command_private_key
        if command_key is not None and settings.command_public_keys and not command_key.exists():
            # the streams worker signs its commands to the sink with it; the sink trusts its public half
            generate_keypair(command_key, settings.command_public_keys[0])
        typer.echo("subject-key pepper, DPO key pair and command key pair ready")

        before = {t: _topic_total(admin, t) for t in (DLQ.name, QUARANTINE.name)}
        _step("4. Workers: streams (faust) and the ClickHouse sink (owns the embedded store)")
        with (
            _worker("streams", ["worker", "streams", "--loglevel", "warning"], env, log_dir) as streams,
            _worker(
                "sink",
                ["worker", "sink", "--loglevel", "warning", "--http-port", "0", "--retention-every", "15"],
                env,
                log_dir,
            ) as sink,
        ):
            workers = [streams, sink]
            _wait("the sink's query endpoint", lambda: read_owner(settings.chdb_path) is not None, 120, workers)
            owner = read_owner(settings.chdb_path)
            typer.echo(f"embedded ClickHouse served read-only at {owner.url() if owner else '?'} (try `records sql`)")

            _step(f"5. Upstream traffic: {events:,} synthetic events over the last 3 years")
            simulate = subprocess.run(
                [*_RECORDS, "simulate", "--events", str(events), "--seed", str(seed)], env=env, check=False
            )
            if simulate.returncode != 0:
                raise RecordsError("the simulation failed")

            _step("6. Waiting for the pipeline to catch up")
            t0 = time.monotonic()
            raw = [CHAT.name, CALL.name, CONSENT.name, CONTACT_FORM.name]
            enriched = [
                CHAT_ENRICHED.name,
                CALL_ENRICHED.name,
                CONSENT_LEDGER.name,
                DSR_RECEIPTS.name,
                CONTACT_FORM_ENRICHED.name,
            ]
            _wait(
                "streams and sink to drain their topics",
                lambda: group_lag(admin, STREAMS_APP_ID, raw) == 0 and group_lag(admin, SINK_GROUP, enriched) == 0,
                900,
                workers,
            )
            typer.echo(f"caught up in {time.monotonic() - t0:.1f} s")

            _step("7. What was stored, and what policy kept out")
            typer.echo("  rows per table (events already past their retention are dropped on insert):")
            for table, count in _rows(settings).items():
                typer.echo(f"  {table:<20} {count:>8} rows")
            dead = _topic_total(admin, DLQ.name) - before[DLQ.name]
            typer.echo(f"  dead-lettered (malformed input, kept in {DLQ.name}): {dead}")
            quarantined = _topic_total(admin, QUARANTINE.name) - before[QUARANTINE.name]
            typer.echo(f"  recordings without a prior notice (held in {QUARANTINE.name}): {quarantined}")
            _wait(
                "the sink to check every recording against its call",
                lambda: _recording_checks(settings)[0] == 0,
                120,
                workers,
            )
            held = _recording_checks(settings)[1]
            typer.echo(f"  recordings outside their call (kept, shown to no analyst): {sum(n for _, n in held)}")
            for reason, count in held:
                typer.echo(f"    {reason:<28} {count:>8}")
            typer.echo("  chat fields removed by policy, by reason:")
            for reason, count in _stripped(settings):
                typer.echo(f"    {reason:<28} {count:>8}")
            typer.echo("  contact-form fields removed by policy, by reason:")
            for reason, count in _stripped(settings, "contact_forms"):
                typer.echo(f"    {reason:<28} {count:>8}")

            _step("8. Data-subject request: erase the most frequent caller who also sent a contact form")
            phone, calls, forms = _frequent_caller(settings)
            typer.echo(f"subject found in {calls} call records and {forms} contact forms (identifier not shown)")
            from pipeline.dsr import IdentityVerification, RequestType
            from records.cli.dsr_cmd import find_receipt, issue

            t0 = time.monotonic()
            request_id = issue(
                RequestType.ERASURE,
                {"phone": phone},
                reason="demo ticket DPO-1",
                by="demo-dpo",
                identity_verified_by=IdentityVerification.STRONG_ELECTRONIC_ID,
                settings=settings,
            )
            typer.echo(f"erasure request {request_id} signed and sent")
            receipt = find_receipt(settings, request_id, wait_s=180)
            if receipt is None:
                raise RecordsError(f"no receipt for {request_id} within 180 s")
            if receipt.get("status") != "COMPLETED":
                raise RecordsError(f"request {request_id} {receipt.get('status')}: {receipt.get('detail')}")
            typer.echo(f"receipt after {time.monotonic() - t0:.1f} s: {receipt['status']}")
            for store, count in sorted(receipt["store_counts"].items()):
                typer.echo(f"    {store:<36} {count:>6}")
            left = _rows_of_phone(settings, phone)
            typer.echo(f"rows of that subject left in calls, recordings and contact forms: {left}")

            _step("9. Access (notice §13): the DPO adds an analyst, who queries with her own user")
            _analyst_queries(settings)

            _step("10. Retention (enforced by the sink every 15 s in this demo)")
            time.sleep(16)
            retention = subprocess.run([*_RECORDS, "retention", "run", "--check-only"], env=env, check=False)
            typer.echo(f"retention check exit code: {retention.returncode}")

            _step("11. Compliance report")
            report_dir = Path("reports")
            private_dir(report_dir)
            report = subprocess.run(
                [*_RECORDS, "report", "--html", str(report_dir / "compliance.html")], env=env, check=False
            )
            typer.echo(f"report exit code {report.returncode}; HTML: {report_dir / 'compliance.html'}")

        _step("12. Done")
        typer.echo(f"demo finished in {time.monotonic() - started:.0f} s")
    finally:
        admin.close()  # its connections would log errors once the broker is gone
        gc.collect()
        if not keep_running:
            broker.stop()
            typer.echo("broker stopped")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
