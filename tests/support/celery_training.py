"""The project's own graph, run through the Celery executor: importable by the Celery workers.

SOP2CMD_EXECUTOR=celery (set by the test for itself and its workers) makes `assets.definitions`
use the celery executor; this adds a job over the data assets, the base model and the checkpoint.
"""

import dagster as dg

from assets.definitions import defs as project_defs
from assets.executors import GPU_RUN_TAGS

CHECKPOINT_SELECTION = dg.AssetSelection.assets("lora_checkpoint").upstream()

checkpoint_job = dg.define_asset_job("checkpoint_on_celery", selection=CHECKPOINT_SELECTION, tags=GPU_RUN_TAGS)
defs = dg.Definitions.merge(project_defs, dg.Definitions(jobs=[checkpoint_job]))


def checkpoint_on_celery() -> dg.JobDefinition:
    return defs.resolve_job_def("checkpoint_on_celery")
