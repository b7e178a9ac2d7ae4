"""Pipeline overhead: a no-op re-materialization of the data half, and Dagster's cost per asset.

On a fresh lake (temporary, nothing of the working tree is touched) the data half is materialized once,
then again `--repeats` times with nothing changed (same raw files, same params, same code):

- direct: `run_raw_stage`, `run_normalize_stage`, `run_augment_stage` called in this process;
- dagster in-process: the `data_job` of `assets.definitions` (assets and their blocking checks) through
  `execute_in_process` on a temporary instance; per-step times come from the instance's step stats, so
  the Dagster overhead of an asset is its step time minus the direct call of the same stage function;
- dagster CLI: `dagster job execute -m assets.definitions -j data_job` in a fresh process with a temporary
  DAGSTER_HOME, which is what a user or a schedule pays (process start, imports, the job's executor);
- with `--whole-graph`: the `full_graph` job in-process with the smoke profile (tiny random model), first run
  and no-op repeats, every step's time.

Each data stage reuses its tables when its inputs are unchanged (`pipelines.data.stage_cache`), so a no-op run
writes no Delta version; the direct path measures the same functions.

    .venv/bin/python bench/pipeline_overhead.py --repeats 3 --out bench/results/pipeline_overhead.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    Stopwatch,
    load_average,
    log,
    machine_info,
    summarize,
    write_json,
)

ASSET_STEPS = ("raw_training_data", "normalized_samples", "augmented_training_set")


def _stage_calls(params_path: Path, lake: Path) -> dict[str, Any]:
    from pipelines.config import load_params
    from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

    params = load_params(params_path)
    raw_dir = REPO_ROOT / params.data.raw_dir
    return {
        "raw_training_data": lambda: run_raw_stage(raw_dir, lake, params.data),
        "normalized_samples": lambda: run_normalize_stage(lake),
        "augmented_training_set": lambda: run_augment_stage(lake, params.augment),
    }


def direct_run(params_path: Path, lake: Path) -> dict[str, float]:
    """Wall seconds of each stage function, called in order in this process."""
    timings = {}
    for name, call in _stage_calls(params_path, lake).items():
        with Stopwatch() as watch:
            call()
        timings[name] = watch.wall_s
    timings["total"] = sum(timings.values())
    return timings


def dagster_in_process_run(instance: Any, job_name: str = "data_job") -> dict[str, float]:
    """Wall seconds of a whole in-process run of `job_name` and of each step (from the instance's step stats).

    Asset steps are reported by name; for data_job the check steps are summed into `checks`, for other jobs
    every step is reported by its key.
    """
    from assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    with Stopwatch() as watch:
        result = job.execute_in_process(instance=instance, raise_on_error=True)
    stats = instance.get_run_step_stats(result.run_id)
    timings: dict[str, float] = {"total": watch.wall_s}
    checks = 0.0
    for stat in stats:
        if stat.start_time is None or stat.end_time is None:
            continue
        duration = stat.end_time - stat.start_time
        if stat.step_key in ASSET_STEPS or job_name != "data_job":
            timings[stat.step_key] = duration
        else:
            checks += duration
    if job_name == "data_job":
        timings["checks"] = checks
    return timings


def whole_graph(work: Path, repeats: int) -> dict[str, Any]:
    """The `full_graph` job with the smoke profile (tiny random model): a first run, then no-op repeats.

    The training step reuses its adapter when the run fingerprint (data, config, base weights) is unchanged;
    the merge, its parity check and the regression evaluation run again every time.
    """
    import dagster as dg

    previous = {key: os.environ.get(key) for key in ("SOP2CMD_PROFILE", "SOP2CMD_LAKE", "SOP2CMD_ARTIFACTS")}
    os.environ.update({"SOP2CMD_PROFILE": "smoke", "SOP2CMD_LAKE": str(work / "lake-graph"),
                       "SOP2CMD_ARTIFACTS": str(work / "artifacts-graph")})
    home = work / "dagster_home_graph"
    home.mkdir()
    try:
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            first = dagster_in_process_run(instance, "full_graph")
            noop = [dagster_in_process_run(instance, "full_graph") for _ in range(repeats)]
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    summary = {key: summarize([run[key] for run in noop]) for key in noop[0]}
    return {"profile": "smoke", "first": first, "noop": summary}


def cli_run(dagster_home: Path, env: dict[str, str]) -> float:
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "job", "execute", "-m", "assets.definitions", "-j", "data_job"]
    with Stopwatch() as watch:
        process = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **env, "DAGSTER_HOME": str(dagster_home)},
                                 capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(process.stdout + process.stderr)[-3000:]}")
    return watch.wall_s


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    params_path = REPO_ROOT / args.params
    env = {
        "SOP2CMD_LAKE": str(work / "lake-dagster"),
        "SOP2CMD_ARTIFACTS": str(work / "artifacts"),
    }
    os.environ.update(env)
    from assets.definitions import defs

    # data_job may pin its own executor; otherwise the location's (SOP2CMD_EXECUTOR) applies.
    executor = defs.resolve_job_def("data_job").executor_def.name
    result: dict[str, Any] = {"benchmark": "pipeline_overhead", "machine": machine_info(), "repeats": args.repeats,
                              "executor_cli": executor, "load_start": load_average()}

    log("direct: first run (fresh lake), then no-op repeats")
    direct_lake = work / "lake-direct"
    first_direct = direct_run(params_path, direct_lake)
    noop_direct = [direct_run(params_path, direct_lake) for _ in range(args.repeats)]

    log("dagster in-process: first run, then no-op repeats")
    home = work / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        first_dagster = dagster_in_process_run(instance)
        noop_dagster = [dagster_in_process_run(instance) for _ in range(args.repeats)]

    keys = ("total", *ASSET_STEPS)
    result["direct"] = {"first": first_direct, "noop": {k: summarize([r[k] for r in noop_direct]) for k in keys}}
    result["dagster_in_process"] = {
        "first": first_dagster,
        "noop": {k: summarize([r[k] for r in noop_dagster]) for k in (*keys, "checks")},
    }
    result["dagster_overhead_per_asset_s"] = {
        step: summarize([d[step] - s[step] for d, s in zip(noop_dagster, noop_direct)]) for step in ASSET_STEPS
    }
    result["dagster_overhead_run_s"] = summarize([d["total"] - s["total"] for d, s in zip(noop_dagster, noop_direct)])

    if not args.no_cli:
        log(f"dagster CLI ({executor} executor): first run, then no-op repeats")
        cli_home = work / "dagster_home_cli"
        cli_home.mkdir()
        cli_env = {**env, "SOP2CMD_LAKE": str(work / "lake-cli")}
        first_cli = cli_run(cli_home, cli_env)
        noop_cli = [cli_run(cli_home, cli_env) for _ in range(args.repeats)]
        result["dagster_cli"] = {"first_s": first_cli, "noop_s": summarize(noop_cli), "runs_s": noop_cli}
        with Stopwatch() as watch:  # the floor of any CLI run: a process that only imports the code location
            subprocess.run([sys.executable, "-c", "import assets.definitions"], cwd=REPO_ROOT, check=True,
                           env={**os.environ, **cli_env})
        result["import_code_location_s"] = watch.wall_s
    if args.whole_graph:
        log("whole graph (smoke profile) in-process: first run, then no-op repeats")
        result["whole_graph_in_process"] = whole_graph(work, args.repeats)
    result["noop_goal_s"] = 10.0
    noop_figures = [result["dagster_in_process"]["noop"]["total"]["median"]]
    if "dagster_cli" in result:
        noop_figures.append(result["dagster_cli"]["noop_s"]["median"])
    result["noop_goal_met"] = max(noop_figures) < 10.0
    result["load_end"] = load_average()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["workdir"] = str(work)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="no-op re-materializations per path")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--no-cli", action="store_true", help="skip the `dagster job execute` subprocess runs")
    parser.add_argument("--whole-graph", action="store_true",
                        help="also re-materialize the full_graph job (smoke profile: tiny model) with nothing changed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake and Dagster home")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    write_json(benchmark(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
