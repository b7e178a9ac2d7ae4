"""Shared helpers of the benchmarks: machine description, load, statistics, worker processes, data.

Every benchmark prints one JSON document (and can write it with `--out`); `docs/benchmarks.md` quotes the
medians from it. Benchmarks that report peak memory run each measured configuration in a fresh worker
process, so one configuration's peak cannot hide another's.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # `python bench/x.py` puts bench/ first on sys.path, not the repository root.
    sys.path.insert(0, str(REPO_ROOT))

WORKER_RESULT_PREFIX = "BENCH_RESULT "


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def load_average() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def loaded(load_1min: float, cores: int | None = None) -> bool:
    """A machine whose 1-minute load exceeds its core count shares its CPUs with other work."""
    return load_1min > (cores or os.cpu_count() or 1)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summarize(values: Sequence[float]) -> dict[str, float]:
    values = [float(v) for v in values]
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """numpy.percentile (linear interpolation), NaN for no values: a loop that answered nothing has no latency."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


class Stopwatch:
    """Wall and process CPU time of a block; CPU seconds are far less sensitive to a shared machine."""

    def __enter__(self) -> "Stopwatch":
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.wall_start
        self.cpu_s = time.process_time() - self.cpu_start


def time_training_steps() -> list[Stopwatch]:
    """From now on in this process, a Stopwatch of every micro-batch's forward/backward (`Trainer.training_step`), in
    order: the steady-state cost a long run is made of, without the Trainer's setup (dataloader, optimizer)."""
    from transformers import Trainer

    steps: list[Stopwatch] = []
    original_step = Trainer.training_step

    def training_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        with Stopwatch() as watch:
            result = original_step(self, *args, **kwargs)
        steps.append(watch)
        return result

    Trainer.training_step = training_step  # type: ignore[method-assign]
    return steps


def emit_worker_result(payload: dict[str, Any]) -> None:
    """The last stdout line of a worker: what `run_worker` parses."""
    print(WORKER_RESULT_PREFIX + json.dumps(payload, default=str), flush=True)


def run_worker(script: Path, args: Sequence[str], env: dict[str, str] | None = None,
               timeout_s: float | None = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `python script args` in a fresh process and return the payload it emitted."""
    command = [sys.executable, str(script), *args]
    process = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout_s
    )
    results = [line for line in process.stdout.splitlines() if line.startswith(WORKER_RESULT_PREFIX)]
    if process.returncode != 0 or not results:
        tail = "\n".join((process.stdout + process.stderr).splitlines()[-40:])
        raise RuntimeError(f"worker {' '.join(command)} failed (exit {process.returncode}):\n{tail}")
    if echo:
        echo(f"worker {' '.join(args)} done")
    return json.loads(results[-1][len(WORKER_RESULT_PREFIX):])


def write_json(payload: dict[str, Any], path: str | os.PathLike[str] | None) -> None:
    text = json.dumps(payload, indent=2, default=str, ensure_ascii=False)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")


def decoding_run(results: Sequence[Any], wall_s: float) -> dict[str, Any]:
    """One evaluation pass (`run_evaluation`'s results and wall time) as the decoding benchmarks report it."""
    import dataclasses

    from pipelines.serve.eval_metrics import compute_metrics, rates_by_slice

    return {
        "wall_s": round(wall_s, 2),
        "per_case_s": round(wall_s / len(results), 4),
        "all": compute_metrics(results, wall_s).headline(),
        "slices": {name: dataclasses.asdict(rates) for name, rates in rates_by_slice(results).items()},
    }


def reproducing_command(script: str, args: Any) -> str:
    """`bench/<script> --flag value ...` from parsed arguments (those left unset or false are left out; a true
    switch is its bare flag)."""
    flags = (
        f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
        for name, value in vars(args).items()
        if value is not None and value is not False
    )
    return f"bench/{script} " + " ".join(flags)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------------


def ensure_augmented_table(lake: Path, params_path: str = "params.yaml") -> Path:
    """Path of the lake's augmented_training_set, running the three data stages first when it is missing."""
    from pipelines.config import load_params
    from pipelines.data.lake import AUGMENTED_TABLE, table_path, table_version
    from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

    path = table_path(lake, AUGMENTED_TABLE)
    if table_version(path) is None:
        params = load_params(REPO_ROOT / params_path)
        log(f"no {AUGMENTED_TABLE} under {lake}: running the data stages on {params.data.raw_dir}")
        run_raw_stage(REPO_ROOT / params.data.raw_dir, lake, params.data)
        run_normalize_stage(lake)
        run_augment_stage(lake, params.augment)
    return path


def default_lake() -> Path:
    from pipelines.config import lake_root

    lake = lake_root()
    return lake if lake.is_absolute() else REPO_ROOT / lake


def default_artifacts() -> Path:
    from pipelines.config import artifacts_root

    root = artifacts_root()
    return root if root.is_absolute() else REPO_ROOT / root
