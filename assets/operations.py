"""The operational half of the code location: jobs, sensors, schedules, automation and the executor.

`with_operations(core)` takes the asset graph's Definitions and returns the one the code location
serves: the graph plus everything defined here. (The training assets carry
`automation_condition=TRAINING_CONDITION` in their own decorators.)
"""

from __future__ import annotations

import dagster as dg

from assets.automation import automation_sensor, retrain_job
from assets.executors import executor_from_env
from assets.schedules import nightly_retrain_schedule
from assets.sensors import raw_corpus_sensor


def operations_definitions() -> dg.Definitions:
    return dg.Definitions(
        jobs=[retrain_job],
        sensors=[raw_corpus_sensor, automation_sensor],
        schedules=[nightly_retrain_schedule],
        executor=executor_from_env(),
    )


def with_operations(core: dg.Definitions) -> dg.Definitions:
    return dg.Definitions.merge(core, operations_definitions())
