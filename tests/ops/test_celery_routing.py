"""Celery routing on a real Redis: the checkpoint step runs in the worker that listens only on `gpu`."""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import pytest

from assets.executors import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, GPU_QUEUE

from .conftest import free_port, require_binary
from .services import VENV_BIN, background, tail, wait_until

pytestmark = pytest.mark.slow


def _redis_up(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


def _worker_ready(log: Path) -> bool:
    return " ready." in tail(log, 20000)


def _celery_worker_argv(broker: str, queue: str, name: str) -> list[str]:
    return [
        str(VENV_BIN / "celery"), "-A", "dagster_celery.app", "-b", broker, "--result-backend", broker,
        "worker", "-Q", queue, "-n", f"{name}@%h", "--pool", "solo", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "--loglevel", "INFO",
    ]


def _step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker the executor's engine event says it ran in."""
    workers = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.event_type_value != "ENGINE_EVENT" or not record.step_key:
            continue
        metadata = event.engine_event_data.metadata if event.engine_event_data else {}
        if "Celery worker" in metadata:
            workers[record.step_key] = metadata["Celery worker"].value
    return workers


def _materialized_pid(instance: dg.DagsterInstance, key: str) -> int:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization.metadata["pid"].value


def test_checkpoint_step_runs_on_the_gpu_queue_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_server = require_binary("redis-server")
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {CELERY_BROKER_ENV: broker, CELERY_BACKEND_ENV: broker}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    host = socket.gethostname()

    redis_argv = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    gpu_log, cpu_log = tmp_path / "worker-gpu.log", tmp_path / "worker-cpu.log"
    with (
        background(redis_argv, tmp_path / "redis.log"),
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        wait_until(lambda: _redis_up(port), 30, "redis-server")
        with (
            background(_celery_worker_argv(broker, GPU_QUEUE, "gpu"), gpu_log, env=env) as gpu_worker,
            background(_celery_worker_argv(broker, "dagster", "cpu"), cpu_log, env=env) as cpu_worker,
        ):
            wait_until(lambda: _worker_ready(gpu_log), 120, f"gpu worker\n{tail(gpu_log)}")
            wait_until(lambda: _worker_ready(cpu_log), 120, f"cpu worker\n{tail(cpu_log)}")

            from tests.ops.celery_standin import celery_routing_job

            with dg.execute_job(dg.reconstructable(celery_routing_job), instance=instance) as result:
                assert result.success, f"gpu worker:\n{tail(gpu_log)}\ncpu worker:\n{tail(cpu_log)}"
                run_id = result.run_id

            workers = _step_workers(instance, run_id)
            assert workers == {"stand_in_checkpoint": f"gpu@{host}", "stand_in_data": f"cpu@{host}"}
            # --pool solo runs tasks in the worker process itself: the pid proves which process trained.
            assert _materialized_pid(instance, "stand_in_checkpoint") == gpu_worker.pid
            assert _materialized_pid(instance, "stand_in_data") == cpu_worker.pid
            assert "stand_in_checkpoint" in tail(gpu_log, 200000)
            assert "stand_in_checkpoint" not in tail(cpu_log, 200000)
