"""The code location's one `Definitions` (loaded by workspace.yaml and `dagster dev`).

Each part of the graph contributes lists; add new assets/checks/jobs to the lists below.
"""

from __future__ import annotations

import dagster as dg

from assets.data_assets import DATA_ASSETS
from assets.data_checks import DATA_CHECKS
from assets.deploy_assets import DEPLOY_ASSETS, DEPLOY_JOBS
from assets.evaluation_assets import EVALUATION_ASSETS, EVALUATION_CHECKS
from assets.operations import with_operations
from assets.resources import default_resources
from assets.training_assets import TRAINING_ASSETS, TRAINING_CHECKS

data_job = dg.define_asset_job(
    name="data_job",
    selection=dg.AssetSelection.assets(*DATA_ASSETS),
    description="Ingest the raw corpus, normalize it and build the augmented training set (with their checks).",
    # The stages take about a second together; a process per step (8 steps) would spend far longer importing
    # the code location than computing (bench/pipeline_overhead.py).
    executor_def=dg.in_process_executor,
)

# The whole graph as one job, for the UI's launchpad and bench/pipeline_overhead.py (`make run` materializes
# the same selection with `dagster asset materialize --select '*'`).
full_graph_job = dg.define_asset_job(
    name="full_graph",
    selection=dg.AssetSelection.all(),
    description="Everything from the raw corpus to the regression metrics and the promoted model, with every check.",
)

ASSETS: list[dg.AssetsDefinition] = [*DATA_ASSETS, *TRAINING_ASSETS, *EVALUATION_ASSETS, *DEPLOY_ASSETS]
ASSET_CHECKS: list[dg.AssetChecksDefinition] = [*DATA_CHECKS, *TRAINING_CHECKS, *EVALUATION_CHECKS]
JOBS = [data_job, full_graph_job, *DEPLOY_JOBS]

defs = with_operations(
    dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        resources=default_resources(),
    )
)
