"""The code location serves the retrain job, the sensors, the schedule and the training automation."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.automation import AUTOMATED_ASSETS, TRAINING_CONDITION
from assets.executors import CELERY_QUEUE_TAG, GPU_QUEUE, executor_from_env


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from assets.definitions import defs

    return defs


def test_sensors_schedule_and_retrain_job_are_served(defs: dg.Definitions) -> None:
    assert defs.resolve_sensor_def("raw_corpus_sensor").job_name == "retrain"
    assert defs.resolve_schedule_def("nightly_retrain").cron_schedule == "0 2 * * *"
    assert isinstance(defs.resolve_sensor_def("training_automation"), dg.AutomationConditionSensorDefinition)
    retrain = defs.resolve_job_def("retrain")
    steps = {node.name for node in retrain.nodes_in_topological_order}
    assert {"raw_training_data", "augmented_training_set", "base_model", "lora_checkpoint", "merged_model"} <= steps


def test_training_assets_follow_new_data_and_data_assets_do_not(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    conditions = {key.to_user_string(): graph.get(key).automation_condition for key in graph.get_all_asset_keys()}
    for name in AUTOMATED_ASSETS:
        assert conditions[name] == TRAINING_CONDITION, name
    for name in ("raw_training_data", "normalized_samples", "augmented_training_set"):
        assert conditions[name] is None, name


def test_only_the_checkpoint_step_goes_to_the_gpu_queue(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    queues = {
        key.to_user_string(): graph.assets_def_for_key(key).op.tags.get(CELERY_QUEUE_TAG)
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    assert queues.pop("lora_checkpoint") == GPU_QUEUE
    assert set(queues.values()) == {None}


def test_executor_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOP2CMD_EXECUTOR", "celery")
    assert executor_from_env().name == "celery_gpu_routing"
    monkeypatch.setenv("SOP2CMD_EXECUTOR", "k8s")
    assert executor_from_env().name == "k8s"
    monkeypatch.setenv("SOP2CMD_EXECUTOR", "gpu-please")
    with pytest.raises(ValueError, match="SOP2CMD_EXECUTOR"):
        executor_from_env()
