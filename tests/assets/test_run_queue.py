"""The shipped dagster.yaml's run queue: of two queued training runs, only one runs at a time.

A real `dagster-daemon` drains the queue of a temporary DAGSTER_HOME that holds the repo's dagster.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.support.services import REPO_ROOT, VENV_BIN, background, tail

pytestmark = pytest.mark.slow

STANDIN = REPO_ROOT / "tests" / "support" / "queue_standin.py"
ACTIVE = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _launch(env: dict[str, str]) -> None:
    subprocess.run(
        [str(VENV_BIN / "dagster"), "job", "launch", "-f", str(STANDIN), "-j", "gpu_training_standin"],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=120,
    )


def test_two_training_runs_never_overlap(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    # The instance's run launcher (assets.run_monitoring) must import where the project is not pip-installed.
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    for _ in range(2):
        _launch(env)

    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 2
    assert {run.status for run in runs} == {dg.DagsterRunStatus.QUEUED}
    assert all(run.tags.get("gpu") == "true" for run in runs)

    daemon_log = tmp_path / "daemon.log"
    most_active = 0
    with background(
        [str(VENV_BIN / "dagster-daemon"), "run", "-f", str(STANDIN)],
        daemon_log,
        env={"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)},
    ):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            statuses = [run.status for run in instance.get_runs()]
            most_active = max(most_active, sum(status in ACTIVE for status in statuses))
            if all(status in DONE for status in statuses):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"runs did not finish: {statuses}\n{tail(daemon_log)}")

    records = sorted(instance.get_run_records(), key=lambda record: record.start_time)
    assert [record.dagster_run.status for record in records] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert most_active == 1
    # The second run was dequeued only after the first one ended.
    assert records[1].start_time >= records[0].end_time
