"""The Kubernetes job spec dagster-k8s builds for each step: only the checkpoint step requests a GPU.

No cluster: this builds the same V1Job the k8s_job_executor would submit, from the step tags in the
execution plan, and checks its pod spec.
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.execution.api import create_execution_plan
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from assets.executors import GPU_K8S_CONFIG, GPU_STEP_TAGS


@dg.asset
def k8s_data() -> None: ...


@dg.asset(deps=[k8s_data], op_tags=GPU_STEP_TAGS)
def k8s_checkpoint() -> None: ...


def _job_spec_for_step(job: dg.JobDefinition, step_key: str):
    step = create_execution_plan(job).get_step_by_key(step_key)
    job_config = DagsterK8sJobConfig(
        job_image="registry.example/sop2cmd:test", dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dagster-instance",
    )
    return construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{step_key.replace('_', '-')}",
        user_defined_k8s_config=get_user_defined_k8s_config(step.tags),
        component="step_worker",
    )


@pytest.fixture(scope="module")
def job() -> dg.JobDefinition:
    defs = dg.Definitions(assets=[k8s_data, k8s_checkpoint], jobs=[dg.define_asset_job("k8s_routing")])
    return defs.resolve_job_def("k8s_routing")


@pytest.fixture(scope="module")
def retrain_job() -> dg.JobDefinition:
    """The project's retrain job, as the code location serves it."""
    from assets.definitions import defs

    return defs.resolve_job_def("retrain")


def test_project_checkpoint_step_requests_a_gpu_and_data_steps_do_not(retrain_job: dg.JobDefinition) -> None:
    checkpoint = _job_spec_for_step(retrain_job, "lora_checkpoint").spec.template.spec.containers[0]
    assert checkpoint.resources.limits["nvidia.com/gpu"] == "1"
    for step in ("raw_training_data", "normalized_samples", "augmented_training_set", "merged_model"):
        container = _job_spec_for_step(retrain_job, step).spec.template.spec.containers[0]
        limits = (container.resources.limits or {}) if container.resources else {}
        assert "nvidia.com/gpu" not in limits, step
    assert retrain_job.tags["gpu"] == "true"


def test_checkpoint_step_pod_requests_one_gpu(job: dg.JobDefinition) -> None:
    spec = _job_spec_for_step(job, "k8s_checkpoint")
    pod = spec.spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)


def test_data_step_pod_requests_no_gpu(job: dg.JobDefinition) -> None:
    container = _job_spec_for_step(job, "k8s_data").spec.template.spec.containers[0]
    limits = (container.resources.limits or {}) if container.resources else {}
    assert "nvidia.com/gpu" not in limits


def test_gpu_config_is_a_valid_dagster_k8s_config() -> None:
    # from_dict rejects unknown keys, so a typo in the routing config fails here, not on a cluster.
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    parsed = UserDefinedDagsterK8sConfig.from_dict(GPU_K8S_CONFIG)
    assert parsed.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
