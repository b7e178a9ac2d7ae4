"""A training-tagged stand-in job for the run-queue test: it holds the (pretend) GPU for a few seconds."""

from __future__ import annotations

import time

import dagster as dg

from assets.executors import GPU_RUN_TAGS


@dg.op
def hold_the_gpu() -> None:
    time.sleep(2)


@dg.job(tags=GPU_RUN_TAGS)
def gpu_training_standin() -> None:
    hold_the_gpu()


defs = dg.Definitions(jobs=[gpu_training_standin])
