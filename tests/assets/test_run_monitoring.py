"""A run whose worker process dies is marked FAILURE by the daemon and re-run from the failure.

Uses a real `dagster-daemon` on a temporary DAGSTER_HOME with the project's run launcher
(`assets.run_monitoring.LocalProcessRunLauncher`), run monitoring and run retries switched on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from tests.helpers import REPO_ROOT, subprocess_env

LOCATION = REPO_ROOT / "tests" / "support" / "dagster_crash_location.py"
JOB = "crash_then_retry_job"


def _instance_config(home: Path) -> dict:
    return {
        "telemetry": {"enabled": False},
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                            "config": {"dequeue_interval_seconds": 1}},
        "run_launcher": {"module": "assets.run_monitoring", "class": "LocalProcessRunLauncher"},
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 1, "max_resume_run_attempts": 0,
                           "start_timeout_seconds": 120},
        "run_retries": {"enabled": True, "max_retries": 1},
    }


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Daemon:
    """A `dagster-daemon run` process group (daemon, code server, run workers) on one DAGSTER_HOME."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(LOCATION)],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the code server and run workers go down with it
        )
        log.close()

    def kill_group_except(self, sig: int, keep: int) -> None:
        """Send `sig` to every process of the daemon's group but `keep`, and reap the daemon."""
        assert self.process is not None
        group = os.getpgid(self.process.pid)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == keep:
                continue
            try:
                if os.getpgid(int(entry.name)) == group:
                    os.kill(int(entry.name), sig)
            except (ProcessLookupError, PermissionError):
                continue
        self.process.wait(timeout=30)
        self.process = None

    def kill_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def daemon_home(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str], Daemon]]:
    home, workdir = tmp_path / "dagster_home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_config(home)))
    # Create the sqlite storage once up front: the daemon and the CLI would otherwise race to create it.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.get_runs()
    env = subprocess_env(
        DAGSTER_HOME=str(home),
        RELIABILITY_WORKDIR=str(workdir),
    )
    daemon = Daemon(env, tmp_path / "daemon.log")
    daemon.start()
    try:
        yield home, workdir, env, daemon
    finally:
        daemon.kill_group(signal.SIGTERM)


def _launch(env: dict[str, str]) -> None:
    launched = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-f", str(LOCATION), "-j", JOB],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.message or "" for entry in instance.all_logs(run_id)]


@pytest.mark.slow
@pytest.mark.parametrize("kill_scope", ["run_worker", "whole_process_tree"])
def test_dead_run_is_marked_failed_and_retried_from_failure(daemon_home, kill_scope: str) -> None:
    """run_worker: only the run's process is SIGKILLed (its code server notices).
    whole_process_tree: the daemon and the code server that spawned the worker are SIGKILLed first
    (a crashed `dagster dev`, an OOM-killed container), then the orphaned worker dies too; nobody who
    spawned it is left to notice, so the restarted daemon's run monitoring (our launcher) must.
    """
    home, workdir, env, daemon = daemon_home
    _launch(env)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [first] = instance.get_runs()
        pid_file = workdir / "worker.pid"
        _wait_for(pid_file.exists, 180, "the run worker to reach the hanging step")
        worker_pid = int(pid_file.read_text())
        assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED

        if kill_scope == "whole_process_tree":
            # The daemon and the code server that spawned the worker die first; the worker, orphaned,
            # keeps running. Then a fresh daemon comes up and must neither fail the live run...
            daemon.kill_group_except(signal.SIGKILL, keep=worker_pid)
            daemon.start()
            time.sleep(10)
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED
        # ...nor leave it STARTED once its worker is gone, with nobody left who spawned it.
        os.kill(worker_pid, signal.SIGKILL)

        failed = _wait_for(
            lambda: (run := instance.get_run_by_id(first.run_id)).status == dg.DagsterRunStatus.FAILURE and run,
            120,
            "the run of the dead worker to be marked FAILURE",
        )
        messages = _messages(instance, failed.run_id)
        if kill_scope == "run_worker":
            assert any("SIGKILL" in m or f"pid {worker_pid}) is gone" in m for m in messages), messages[-5:]
        else:
            assert any(f"run worker process (pid {worker_pid}) is gone" in m for m in messages), messages[-5:]

        def retry_run() -> dg.DagsterRun | None:
            for run in instance.get_runs():
                if run.tags.get("dagster/parent_run_id") == first.run_id:
                    return run
            return None

        retry = _wait_for(retry_run, 120, "run retries to launch a retry of the failed run")
        assert retry.tags.get("dagster/retry_number") == "1"
        assert retry.tags.get("dagster/retry_strategy") == "FROM_FAILURE"
        finished = _wait_for(
            lambda: (run := instance.get_run_by_id(retry.run_id)).is_finished and run, 180, "the retry run to finish"
        )
        assert finished.status == dg.DagsterRunStatus.SUCCESS
        # FROM_FAILURE: only the step that did not finish runs again.
        assert set(finished.step_keys_to_execute or []) == {"long_step"}
        assert len((workdir / "prepare.log").read_text().splitlines()) == 1
        assert [run.run_id for run in instance.get_runs() if not run.is_finished] == []


def test_repo_instance_config_detects_dead_runs_and_retries(tmp_path: Path) -> None:
    """The instance `make setup` installs has run monitoring with our launcher and run retries on."""
    from assets.run_monitoring import LocalProcessRunLauncher

    repo_config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text()) or {}
    repo_config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(repo_config))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert isinstance(instance.run_launcher, LocalProcessRunLauncher)
        assert instance.run_monitoring_enabled
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
