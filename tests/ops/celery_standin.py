"""A two-step stand-in graph for the Celery routing test, importable by the Celery workers.

`stand_in_checkpoint` carries exactly the op tags of the real `lora_checkpoint`; `stand_in_data`
carries none, like the data assets. Each step records the process it ran in.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from assets.executors import GPU_RUN_TAGS, GPU_STEP_TAGS, celery_executor_def


def _where() -> dict[str, dg.MetadataValue]:
    return {"pid": dg.MetadataValue.int(os.getpid()), "host": dg.MetadataValue.text(socket.gethostname())}


@dg.asset
def stand_in_data() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_where())


@dg.asset(deps=[stand_in_data], op_tags=GPU_STEP_TAGS)
def stand_in_checkpoint() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_where())


defs = dg.Definitions(
    assets=[stand_in_data, stand_in_checkpoint],
    jobs=[dg.define_asset_job("celery_routing", tags=GPU_RUN_TAGS)],
    executor=celery_executor_def(),
)


def celery_routing_job() -> dg.JobDefinition:
    return defs.resolve_job_def("celery_routing")
