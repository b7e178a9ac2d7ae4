"""Celery routing on a real Redis: the smoke-profile lora_checkpoint step runs in the worker that
listens only on queue `gpu`; every data step runs in the worker on the default queue."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from assets.executors import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, EXECUTOR_ENV, GPU_QUEUE
from tests.helpers import free_port, require_binary, user_workdir
from tests.support.services import REPO_ROOT, VENV_BIN, background, tail, wait_until

pytestmark = pytest.mark.slow

DATA_STEPS = {"raw_training_data", "normalized_samples", "augmented_training_set", "base_model"}


def _redis_up(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


def _celery_worker_argv(broker: str, queue: str, name: str) -> list[str]:
    return [
        str(VENV_BIN / "celery"), "-A", "dagster_celery.app", "-b", broker, "--result-backend", broker,
        "worker", "-Q", queue, "-n", f"{name}@%h", "--pool", "solo", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "--loglevel", "INFO",
    ]


def _step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker that the executor's engine event says it ran in."""
    workers = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.event_type_value != "ENGINE_EVENT" or not record.step_key:
            continue
        metadata = event.engine_event_data.metadata if event.engine_event_data else {}
        if "Celery worker" in metadata:
            workers[record.step_key] = metadata["Celery worker"].value
    return workers


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    return {
        record.step_key: record.dagster_event.pid
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A user-like working dir (params.yaml + raw corpus) with the lake and artifacts inside it."""
    return user_workdir(tmp_path)


def test_checkpoint_step_runs_on_the_gpu_queue_worker(workdir: Path, tmp_path: Path) -> None:
    redis_server = require_binary("redis-server")
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {
        CELERY_BROKER_ENV: broker,
        CELERY_BACKEND_ENV: broker,
        EXECUTOR_ENV: "celery",
        "SOP2CMD_PROFILE": "smoke",
        "SOP2CMD_LAKE": str(workdir / "lake"),
        "SOP2CMD_ARTIFACTS": str(workdir / "artifacts"),
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    host = socket.gethostname()

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env["DAGSTER_HOME"] = str(home)

    redis_argv = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    gpu_log, cpu_log = tmp_path / "worker-gpu.log", tmp_path / "worker-cpu.log"
    with background(redis_argv, tmp_path / "redis.log"):
        wait_until(lambda: _redis_up(port), 30, "redis-server")
        with (
            background(_celery_worker_argv(broker, GPU_QUEUE, "gpu"), gpu_log, env=env, cwd=workdir) as gpu_worker,
            background(_celery_worker_argv(broker, "dagster", "cpu"), cpu_log, env=env, cwd=workdir) as cpu_worker,
        ):
            wait_until(lambda: " ready." in tail(gpu_log, 20000), 180, f"gpu worker\n{tail(gpu_log)}")
            wait_until(lambda: " ready." in tail(cpu_log, 20000), 180, f"cpu worker\n{tail(cpu_log)}")
            # The run gets its own process: the celery executor choice must not leak into this one's imports.
            launched = subprocess.run(
                [str(VENV_BIN / "dagster"), "job", "execute", "-m", "tests.support.celery_training", "-a", "defs",
                 "-j", "checkpoint_on_celery"],
                cwd=workdir, env={**os.environ, **env}, capture_output=True, text=True, timeout=480,
            )
            assert launched.returncode == 0, (
                f"{launched.stdout[-3000:]}\n{launched.stderr[-3000:]}\n"
                f"gpu worker:\n{tail(gpu_log)}\ncpu worker:\n{tail(cpu_log)}"
            )

    instance = dg.DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    workers = _step_workers(instance, run.run_id)
    pids = _step_pids(instance, run.run_id)
    assert workers["lora_checkpoint"] == f"gpu@{host}"
    # --pool solo runs each task in the worker process itself: the step's pid is the worker's.
    assert pids["lora_checkpoint"] == gpu_worker.pid
    for step in DATA_STEPS:
        assert workers[step] == f"cpu@{host}", step
        assert pids[step] == cpu_worker.pid, step
    materialization = instance.get_latest_materialization_event(dg.AssetKey("lora_checkpoint")).asset_materialization
    assert materialization.metadata["profile"].value == "smoke"
    assert (Path(materialization.metadata["adapter_dir"].value) / "adapter_model.safetensors").is_file()
