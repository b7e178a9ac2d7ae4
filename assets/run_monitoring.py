"""A run launcher whose run workers the daemon can health-check, so a dead worker's run is marked failed.

Dagster's `DefaultRunLauncher` starts each run worker as a local process but cannot tell the run
monitoring daemon whether that process is still alive, so a run whose worker was killed (OOM killer,
SIGKILL, a crashed host process) stays STARTED forever and run retries never see a failure.
The run worker records its pid in its first engine event ("Started process for run (pid: N)"); this
launcher checks that pid. Daemon and run workers run on the same host with this launcher, so the pid
is meaningful. Enable it in dagster.yaml:

    run_launcher:
      module: assets.run_monitoring
      class: LocalProcessRunLauncher
    run_monitoring:
      enabled: true
      poll_interval_seconds: 30
      max_resume_run_attempts: 0   # a local worker cannot be resumed; fail it and let run_retries re-run
    run_retries:
      enabled: true
      max_retries: 2
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dagster as dg
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A pid is only trusted if its process started no later than this after the worker reported it.
_PID_REUSE_SLACK_S = 5.0
# The run worker's first engine event (dagster._grpc.impl); its wording is the only place the pid is kept.
_STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _process_state(pid: int) -> tuple[str, float] | None:
    """(state letter, start time as epoch seconds) of a live process, or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], int(fields[19])
    return state, _boot_time() + start_ticks / _CLOCK_TICKS


def worker_pid_alive(pid: int, reported_at: float) -> bool:
    """True when `pid` is a running (not zombie) process that could be the worker that reported it."""
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = _process_state(pid)
    if state is None:
        return False
    letter, started_at = state
    if letter in ("Z", "X"):
        return False
    return started_at <= reported_at + _PID_REUSE_SLACK_S


class LocalProcessRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher plus run-worker health checks for the run monitoring daemon."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            return CheckRunHealthResult(WorkerStatus.SUCCESS, "run has finished")
        found = self._worker_pid(run.run_id)
        if found is None:
            # Not started yet (or events not flushed): the start timeout covers this case.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not reported its pid yet")
        pid, reported_at = found
        if worker_pid_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive", run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process (pid {pid}) is gone without finishing the run (killed or crashed)",
            run_worker_id=str(pid),
        )

    def _worker_pid(self, run_id: str) -> tuple[int, float] | None:
        records = self._instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
        ).records
        pid, reported_at = None, time.time()
        for record in records:
            entry = record.event_log_entry
            match = _STARTED_PROCESS.match(entry.message or "")
            if match:
                # A resumed or re-executed worker reports again; the newest report wins.
                pid, reported_at = int(match.group(1)), entry.timestamp
        return None if pid is None else (pid, reported_at)
