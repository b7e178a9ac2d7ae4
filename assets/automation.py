"""How the graph reruns itself: the retrain job and the declarative conditions downstream of the data.

A new augmented set (from the retrain sensor, the nightly schedule or the UI) leads to a new
checkpoint, merged model and metrics through `TRAINING_CONDITION`; a failed blocking check on any
upstream asset holds them back, so bad data is never promoted to a model.
"""

from __future__ import annotations

import dagster as dg

from assets.executors import GPU_RUN_TAGS
from pipelines.data.lake import RAW_TABLE

# Assets that follow their upstream data on their own.
AUTOMATED_ASSETS: tuple[str, ...] = ("lora_checkpoint", "merged_model", "regression_metrics")

TRAINING_CONDITION: dg.AutomationCondition = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)

# Everything that depends on the raw corpus, plus what those assets also need (the base model).
retrain_job = dg.define_asset_job(
    name="retrain",
    selection=dg.AssetSelection.assets(RAW_TABLE).downstream().upstream(),
    tags=GPU_RUN_TAGS,
    description="Re-ingest the raw corpus and retrain, merge and evaluate the model.",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "training_automation",
    # Only assets with a condition (AUTOMATED_ASSETS) are ever requested.
    target=dg.AssetSelection.all(),
    run_tags=GPU_RUN_TAGS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Launches checkpoint, merge and evaluation when their upstream data was updated and passed its checks."
    ),
)

