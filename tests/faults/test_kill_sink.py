"""`kill -9` of the sink mid-batch, then a restart on the same chDB directory; a second
sink started on that directory meanwhile is refused with one clear line and changes
nothing. The reconciliation finds every raw event in exactly one place."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.support.fault_steps import BackgroundTraffic, assert_reconciled, start_workers, wait_caught_up
from tests.support.pipeline_harness import RECORDS, Pipeline, simulated, wait_sink_owner, wait_until

EVENTS = 3000


def test_kill_9_of_the_sink_mid_batch_then_restart_and_a_second_sink_refused(pipeline: Pipeline) -> None:
    workers = start_workers(pipeline, sink_batch_size=500)
    sink, since = workers.sink, workers.since
    traffic = BackgroundTraffic(pipeline, simulated(EVENTS, seed=21), chunk=50, pause_s=0.1)
    wait_until(lambda: sink.metric("records_sink_rows_inserted_total") >= 500, 120, "the sink inserted nothing")
    assert sink.kill(signal.SIGKILL) == -signal.SIGKILL
    assert not traffic.sent.is_set(), "the kill was not mid-stream"
    killed_at = time.monotonic()

    restarted = pipeline.sink(batch_size=500)
    wait_sink_owner(restarted, pipeline.chdb_path)
    second = pipeline.sink()
    assert second.process is not None
    assert second.process.wait(60) == 1
    # the restarted sink may log to the same file meanwhile: the second's own line is its error
    lines = second.log()[second.log_start :].strip().splitlines()
    error = next((line for line in lines if line.startswith("error: ")), lines[-1])
    assert error.startswith("error: embedded chDB at ") and "already owned by pid" in error, error
    assert restarted.alive()

    traffic.join(120)
    wait_caught_up(pipeline)
    recovered_s = time.monotonic() - killed_at
    assert_reconciled(pipeline, since, EVENTS, f"sink kill -9, caught up {recovered_s:.1f} s after the kill")
    assert restarted.metric("records_sink_rows_inserted_total") > 0

    # The same verdict from the command line, as the DPO runs it (through the running sink).
    cli = subprocess.run(
        [RECORDS, "reconcile", "--since", since.isoformat()],
        env=restarted.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith(f"since {since.isoformat()}: {EVENTS} raw events: "), cli.stdout
    assert "; 0 missing, 0 duplicates" in cli.stdout
