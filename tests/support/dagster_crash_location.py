"""Code location for the run-monitoring test: a job whose second step hangs until its worker is killed.

The first attempt records the run worker's pid and sleeps; the test SIGKILLs that pid. The retry run
(tag dagster/retry_number) finishes. `prepare` appends to a log so the test can see it ran only once,
i.e. the retry re-ran from the failure rather than from the start.
"""

import os
import time
from pathlib import Path

import dagster as dg

WORKDIR = Path(os.environ["RELIABILITY_WORKDIR"])


@dg.op
def prepare() -> int:
    with open(WORKDIR / "prepare.log", "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    return 1


@dg.op
def long_step(context: dg.OpExecutionContext, value: int) -> int:
    if context.run.tags.get("dagster/retry_number") is None:
        (WORKDIR / "worker.pid").write_text(str(os.getpid()))
        time.sleep(600)
    return value + 1


@dg.job(
    executor_def=dg.in_process_executor,
    tags={"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"},
)
def crash_then_retry_job() -> None:
    long_step(prepare())


defs = dg.Definitions(jobs=[crash_then_retry_job])
