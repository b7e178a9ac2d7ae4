"""Where each step runs: the checkpoint step on a GPU worker, every data step on CPU workers.

Routing is carried by tags, so the same graph runs unchanged on any of the engines:
- multiprocess (default, one machine) or in_process: tags are ignored;
- dagster-celery: the checkpoint step goes to the Celery queue `gpu`, others to the default queue;
- dagster-k8s: the checkpoint step's pod requests one `nvidia.com/gpu` and tolerates GPU-node taints.
Runs that train carry the run tag `gpu=true`; dagster.yaml's run queue admits one such run at a time.
`SOP2CMD_EXECUTOR` (multiprocess | in_process | celery | k8s) picks the engine for the code location.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

GPU_QUEUE = "gpu"
CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RUN_TAG_KEY = "gpu"
# Every run that trains carries this tag; dagster.yaml limits runs with it to one at a time.
GPU_RUN_TAGS: dict[str, str] = {GPU_RUN_TAG_KEY: "true"}

GPU_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        "resources": {
            "requests": {"nvidia.com/gpu": "1"},
            "limits": {"nvidia.com/gpu": "1"},
        }
    },
    "pod_spec_config": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}

# op_tags for the training step (lora_checkpoint).
GPU_STEP_TAGS: dict[str, Any] = {
    CELERY_QUEUE_TAG: GPU_QUEUE,
    K8S_CONFIG_TAG: GPU_K8S_CONFIG,
}

EXECUTOR_ENV = "SOP2CMD_EXECUTOR"
CELERY_BROKER_ENV = "SOP2CMD_CELERY_BROKER"
CELERY_BACKEND_ENV = "SOP2CMD_CELERY_BACKEND"


def celery_executor_def(broker: str | None = None, backend: str | None = None) -> dg.ExecutorDefinition:
    """dagster-celery executor bound to a broker (default: the env vars above, read at launch time)."""
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": broker or {"env": CELERY_BROKER_ENV},
            "backend": backend or {"env": CELERY_BACKEND_ENV},
        },
        name="celery_gpu_routing",
    )


def executor_from_env() -> dg.ExecutorDefinition:
    kind = os.environ.get(EXECUTOR_ENV, "multiprocess").strip().lower()
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        return celery_executor_def()
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected one of multiprocess, in_process, celery, k8s")
