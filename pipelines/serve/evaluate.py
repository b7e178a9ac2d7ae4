"""Running an evaluation: batched generation over the cases, each output checked, with progress in the log.

Every output goes through the output gate (`pipelines.serve.plan_output.check_plan`, via `evaluate_case`).
The pieces around the run have modules of their own: `pipelines.serve.eval_cases` (a case, its result and
the slices), `pipelines.serve.eval_slices` (reading the slices, the mismatched-cases file),
`pipelines.serve.eval_metrics` (the metrics and what they mean) and `pipelines.serve.eval_tables` (the
results table's rows and the metric tables).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.progress import clock_text
from pipelines.serve.eval_cases import CaseResult, EvalCase, evaluate_case
from pipelines.serve.eval_metrics import EvalMetrics, compute_metrics
from pipelines.serve.eval_tables import results_frame

if TYPE_CHECKING:
    from pipelines.config import EvalSettings


def run_evaluation(
    model: Any,
    tokenizer: Any,
    cases: Sequence[EvalCase],
    config: Any,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[CaseResult], float]:
    """Generate (batched, greedy) for every case, check each output; returns results and generation wall time.

    `on_batch(done, total)` is called after each decoding batch (see `progress_reporter`).
    """
    from pipelines.serve.decode import generate_batched

    started = time.perf_counter()
    generations = generate_batched(model, tokenizer, [case.description for case in cases], config, on_batch=on_batch)
    wall_s = time.perf_counter() - started
    results = [
        evaluate_case(case, g.text, g.latency_s, g.new_tokens, g.stopped)
        for case, g in zip(cases, generations, strict=True)
    ]
    return results, wall_s


@dataclass(frozen=True)
class DecodingRun:
    """One pass of the model over every case, with one decoding configuration."""

    constrained: bool
    results: list[CaseResult]
    wall_s: float

    @property
    def decoding(self) -> str:
        return "constrained" if self.constrained else "free"

    @cached_property
    def metrics(self) -> EvalMetrics:
        return compute_metrics(self.results, self.wall_s)


def decoding_configs(settings: EvalSettings) -> list[Any]:
    """The evaluation's decoding config, then free decoding as a comparison run when the settings ask for one."""
    configs = [settings.decoding_config()]
    if settings.compare_unconstrained and settings.constrained:
        configs.append(settings.decoding_config(constrained=False))
    return configs


def evaluate_model(
    model_dir: Path, cases: Sequence[EvalCase], configs: Sequence[Any], log: Callable[[str], None]
) -> list[DecodingRun]:
    """Load the model in `model_dir` (on the GPU when there is one) and run every case once per decoding config.

    All slices go in one call per config, so decoding batches stay full across slice boundaries. The first
    config is the evaluation proper; any later one is a comparison run, and says so in its progress lines.
    """
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device)
    log(f"{len(cases)} cases on {device}, constrained={configs[0].constrained}")
    runs = []
    for index, config in enumerate(configs):
        detail = ("constrained" if config.constrained else "free") + " decoding"
        detail += " (comparison run)" if index else ""
        results, wall_s = run_evaluation(model, tokenizer, cases, config, on_batch=progress_reporter(detail, log))
        runs.append(DecodingRun(constrained=bool(config.constrained), results=results, wall_s=wall_s))
    return runs


def write_results(runs: Sequence[DecodingRun], path: Path) -> int:
    """Every run's per-case rows, checked against their contract, as a new version of the Delta table at `path`."""
    import pandas as pd

    from data_contracts.tables import RegressionResultTable
    from pipelines.data.lake import RESULTS_TABLE, write_table

    frame = pd.concat([results_frame(run.results, run.constrained) for run in runs], ignore_index=True)
    RegressionResultTable.validate(frame, lazy=True)
    return write_table(frame, path, table=RESULTS_TABLE)


# How every evaluation progress line starts, so a reader of the run's log can pick them out
# (training's lines start "training progress").
PROGRESS_PREFIX = "evaluation progress"


def progress_reporter(
    detail: str, log: Callable[[str], None], clock: Callable[[], float] = time.perf_counter
) -> Callable[[int, int], None]:
    """An `on_batch` callback that logs cases done out of total and the ETA, from the mean pace so far.

    A full evaluation decodes for many minutes on a CPU; one line per batch in the run's log says how far
    it got and when it will end, instead of a silent step.
    """
    started = clock()

    def report(done: int, total: int) -> None:
        elapsed = clock() - started
        remaining = elapsed / done * (total - done) if done else 0.0
        share = done / total if total else 1.0
        timing = f"elapsed {clock_text(elapsed)}, eta {clock_text(remaining)}"
        log(f"{PROGRESS_PREFIX}: {done}/{total} cases ({share:.0%}), {detail}, {timing}")

    return report
