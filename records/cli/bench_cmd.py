"""`records bench`: the throughput benchmark (bench/pipeline_bench.py) on a fresh stack of
its own; prints a short table and writes the JSON to bench/results/<date>.json."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.exceptions import ConfigError

QUICK_EVENTS = 50_000
FULL_EVENTS = 100_000
DEFAULT_OUT = Path("bench/results")


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    workers = result.get("streams_workers", 1)
    title = f"records bench: {result['events']:,} events, {result['cores']} cores, {workers} streams worker(s)"
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rates = (
        ("end to end, backlog (start-up included)", "e2e_events_per_s", "{:,.0f} events/s"),
        ("end to end, live (`records simulate`)", "live_events_per_s", "{:,.0f} events/s"),
        ("`records simulate` itself in that run", "simulate_events_per_s", "{:,.0f} events/s"),
        ("producer (EventProducer, pre-built)", "producer_events_per_s", "{:,.0f} events/s"),
        ("streams stage alone", "streams_events_per_s", "{:,.0f} events/s"),
        ("plain loop, same enrichment", "plain_loop_events_per_s", "{:,.0f} events/s"),
        ("plain loop, bare", "bare_loop_events_per_s", "{:,.0f} events/s"),
        ("streams / plain loop", "streams_vs_plain_loop", "{:.2f}"),
        ("streams / bare loop", "streams_vs_bare_loop", "{:.2f}"),
    )
    # an --only erasure run has no live, solo, plain-loop or peer figures
    rows = [
        *((name, fmt.format(result[key])) for name, key, fmt in rates if key in result),
        *(
            (
                ("Quix Streams peer, same enrichment", f"{result['quix_events_per_s']:,.0f} events/s"),
                ("streams / Quix Streams peer", f"{result['streams_vs_quix']:.2f}"),
            )
            if "quix_events_per_s" in result
            else (("Quix Streams peer", str(result.get("peer", {}).get("quixstreams", "not run"))[:60]),)
        ),
        *((("sink alone", f"{result['sink_rows_per_s']:,.0f} rows/s"),) if "sink_rows_per_s" in result else ()),
        *(
            (("sink alone, per CPU second of the sink", f"{result['sink_rows_per_cpu_s']:,.0f} rows"),)
            if "sink_rows_per_cpu_s" in result
            else ()
        ),
        *(
            (
                ("bare consumer, same messages", f"{result['consume_loop_messages_per_s']:,.0f} messages/s"),
                ("sink / bare consumer", f"{result['sink_vs_consume_loop']:.2f}"),
            )
            if "consume_loop_messages_per_s" in result
            else ()
        ),
        (
            f"erasure full path p50 / p95 ({result['erasure_requests']} requests)",
            f"{result['erasure_full_path_p50_s']:.1f} / {result['erasure_full_path_p95_s']:.1f} s",
        ),
        ("rows stored while erasures were timed", f"{result.get('erasure_store_rows', 0):,}"),
        *(
            (f"erasure {i}: cli / streams / sink / receipt read", " / ".join(f"{steps[k]:.1f}" for k in steps) + " s")
            for i, steps in enumerate(result.get("erasure_steps_s", []), 1)
            if steps
        ),
        *((f"start-up, {name}", f"{seconds:.1f} s") for name, seconds in result["startup_s"].items()),
        *((f"peak RSS, {name}", f"{mb:,.0f} MB") for name, mb in result["peak_rss_mb"].items()),
        *(
            (f"RSS growth, {name} ({m['seconds']:.0f} s sampled)", f"{m['growth_mb']:+,.0f} MB")
            for name, m in result.get("memory", {}).items()
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help=f"{QUICK_EVENTS:,} events, 2 erasures on the rows the run stored, 30 s per stage alone (< 4 min).",
        ),
    ] = False,
    events: Annotated[
        int | None, typer.Option("--events", min=200, help=f"Simulated events (default {FULL_EVENTS:,}).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Directory of the JSON results.")] = DEFAULT_OUT,
    erasures: Annotated[int | None, typer.Option("--erasures", min=1, help="Erasure requests timed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the JSON.")] = False,
    streams_workers: Annotated[
        int,
        typer.Option("--streams-workers", min=1, max=8, help="Streams worker processes in the backlog and live runs."),
    ] = 1,
    quix_peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="Run the Quix Streams peer (its own .venv-quix, made once).")
    ] = True,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the stack's directory (worker logs).", hidden=True)
    ] = False,
    memory: Annotated[
        bool, typer.Option("--memory", help="Sample each worker's RSS every second; report its growth.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="Run one part alone: `streams` (the solo streams worker and the plain loops on a raw backlog, "
            "~1 min), `sink` (the solo sink on an enriched backlog, ~1 min) or `erasure` (the backlog stored by "
            "both workers, the store grown to --store-rows, the erasures timed; ~2.5 min).",
        ),
    ] = None,
    store_rows: Annotated[
        int | None,
        typer.Option(
            "--store-rows",
            min=0,
            help="Rows stored while erasures are timed (default 1,000,000; --quick: 0, as the run left it).",
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option("--profile", dir_okay=False, help="With --only: py-spy samples of that worker (raw) to FILE."),
    ] = None,
    native: Annotated[bool, typer.Option("--native", help="With --profile: native frames too.")] = False,
    sink_batch_mb: Annotated[
        int | None,
        typer.Option(
            "--sink-batch-mb",
            min=1,
            max=1024,
            help="With --only sink: the solo sink's --batch-max-mb (default: the worker's, 64).",
        ),
    ] = None,
    memory_replay: Annotated[
        int | None,
        typer.Option(
            "--memory-replay",
            min=2,
            metavar="ROUNDS",
            help="Run only the memory replay (bench/memory_replay.py): both workers drain the --events backlog, "
            "then the same messages ROUNDS-1 more times; each worker's RSS per round.",
        ),
    ] = None,
    people: Annotated[
        int | None,
        typer.Option("--people", min=1, help="With --memory-replay: the simulator's person and visitor pool size."),
    ] = None,
) -> None:
    """Measure the pipeline end to end on a fresh local stack (own broker on free ports,
    data in a temporary directory): the real workers on a backlog and live, the producer,
    each stage alone, plain loops for comparison, the erasure full path, start-up and
    peak memory. Run it on an otherwise idle machine; compare ratios within one run."""
    from bench.pipeline_bench import BenchOptions, run_bench, write_results

    count = events if events is not None else (QUICK_EVENTS if quick else FULL_EVENTS)
    if count < 200:
        raise ConfigError("--events must be at least 200")
    command = shlex.join(["records", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else "records bench"
    if memory_replay is not None:
        _memory_replay(memory_replay, count=count, people=people, out=out, as_json=as_json, command=command)
        return
    if sink_batch_mb is not None and only != "sink":
        raise ConfigError("--sink-batch-mb needs --only sink")
    if (only is not None and only != "erasure") or profile is not None:
        _only(
            only,
            count=count,
            quick=quick,
            out=out,
            as_json=as_json,
            command=command,
            profile=profile,
            native=native,
            sink_batch_mb=sink_batch_mb,
        )
        return
    options = BenchOptions(
        events=count,
        erasures=erasures if erasures is not None else (2 if quick else 5),
        solo_max_s=30.0 if quick else 120.0,
        store_rows=store_rows if store_rows is not None else (0 if quick else 1_000_000),
        keep=keep,
        memory=memory,
        streams_workers=streams_workers,
        quix_peer=quix_peer,
        erasure_only=only == "erasure",
        command=command,
    )
    typer.echo(f"records bench: {count:,} events on a fresh stack ...")
    result = run_bench(options, progress=typer.echo)
    path = write_results(result, out)
    _table(result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    typer.echo(f"results: {path}")


def _only(
    only: str | None,
    *,
    count: int,
    quick: bool,
    out: Path,
    as_json: bool,
    command: str,
    profile: Path | None,
    native: bool,
    sink_batch_mb: int | None = None,
) -> None:
    """`--only sink` (bench/sink_only.py) or `--only streams` (bench/streams_only.py)."""
    if only not in ("sink", "streams"):
        raise ConfigError("--only takes `streams`, `sink` or `erasure`; --profile needs --only streams or sink")
    from bench.pipeline_bench import write_results

    solo_max_s = 30.0 if quick else 120.0
    if only == "streams":
        from bench.streams_only import run_streams_only

        typer.echo(f"records bench --only streams: {count:,} events on a fresh stack ...")
        result = run_streams_only(
            events=count, solo_max_s=solo_max_s, command=command, profile=profile, progress=typer.echo
        )
        summary = (
            f"streams alone: {result['streams_events_per_s']:,.0f} events/s; plain loop, same enrichment: "
            f"{result['plain_loop_events_per_s']:,.0f}; bare: {result['bare_loop_events_per_s']:,.0f}; "
            f"streams / plain loop {result['streams_vs_plain_loop']:.2f}, / bare {result['streams_vs_bare_loop']:.2f} "
            f"(peak RSS {result['peak_rss_mb']['streams_solo']:,.0f} MB)"
        )
    else:
        from bench.sink_only import run_sink_only

        typer.echo(f"records bench --only sink: the enriched rows of {count:,} events, twice, on a fresh stack ...")
        result = run_sink_only(
            events=count,
            solo_max_s=solo_max_s,
            command=command,
            profile=profile,
            native=native,
            batch_max_mb=sink_batch_mb,
            progress=typer.echo,
        )
        summary = (
            f"sink alone: {result['sink_rows_per_s']:,.0f} rows/s, {result['sink_rows_per_cpu_s']:,.0f} rows per CPU s "
            f"({result['sink_rows']:,.0f} rows of {result['sink_backlog_messages']:,} messages in "
            f"{result['sink_seconds']:.1f} s; peak RSS {result['peak_rss_mb']['sink_solo']:,.0f} MB, "
            f"growth over the drain {result['sink_solo_memory']['growth_mb']:+,.0f} MB); "
            f"bare consumer: {result['consume_loop_messages_per_s']:,.0f} messages/s, "
            f"sink / bare consumer {result['sink_vs_consume_loop']:.2f}"
        )
    path = write_results(result, out)
    typer.echo(summary)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    typer.echo(f"results: {path}")


def _memory_replay(rounds: int, *, count: int, people: int | None, out: Path, as_json: bool, command: str) -> None:
    """`--memory-replay ROUNDS` (bench/memory_replay.py)."""
    from bench.memory_replay import run_memory_replay
    from bench.pipeline_bench import write_results

    typer.echo(f"records bench --memory-replay {rounds}: {count:,} events, drained {rounds} times ...")
    result = run_memory_replay(events=count, rounds=rounds, people=people, command=command, progress=typer.echo)
    path = write_results(result, out)
    typer.echo(f"distinct subject keys K = {result['distinct_subject_keys']:,} (unchanged by the replays)")
    for name, report in result["memory"].items():
        last = ", ".join(f"{r['last_mb']:,.0f}" for r in report["rounds"].values())
        peak = max(r["peak_mb"] for r in report["rounds"].values())
        grown = report.get("replay_growth_mb")
        typer.echo(
            f"{name}: RSS at the end of each round {last} MB, peak {peak:,.0f} MB"
            + ("" if grown is None else f", replay growth {grown:+,.1f} MB")
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    typer.echo(f"results: {path}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
