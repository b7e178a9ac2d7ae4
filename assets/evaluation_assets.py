"""The evaluation end of the graph: regression_metrics (+ its blocking quality gate).

Thin wrapper over `pipelines.evaluate`: build the regression set (eval split + accumulated failures),
generate with the merged model (batched, greedy, constrained by default), write one row per case to the
`regression_results` Delta table, append new failures to the mismatched-cases file, and report metrics.
The gate reads the table back, so it judges exactly what was written.
"""

# No `from __future__ import annotations`: Dagster resolves the `config: RegressionConfig` annotation at runtime.
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from assets.automation import TRAINING_CONDITION
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_assets import merged_model, merged_model_dir
from pipelines.evaluate import (
    EvalMetrics,
    append_failures,
    compute_metrics,
    confusion_markdown,
    eval_settings,
    eval_split_cases,
    gate_thresholds,
    metrics_markdown,
    rate,
    read_mismatched_cases,
    regression_set,
    results_frame,
    run_evaluation,
)
from pipelines.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, read_table, table_path, table_version, write_table
from pipelines.manifest import MANIFEST_NAME

EVALUATION_GROUP = "evaluation"
RESULTS_TABLE = "regression_results"

_RESULTS_SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("source_index", pa.string()),
        ("split_source", pa.string()),
        ("prompt", pa.string()),
        ("gold_json", pa.string()),
        ("raw_output", pa.string()),
        ("predicted_json", pa.string()),
        ("json_valid", pa.bool_()),
        ("catalog_valid", pa.bool_()),
        ("exact_match", pa.bool_()),
        ("error", pa.string()),
        ("latency_s", pa.float64()),
        ("constrained", pa.bool_()),
    ]
)


class RegressionConfig(dg.Config):
    """Run config. Unset mismatched_cases: params.yaml eval.mismatched_cases (relative to the working dir)."""

    mismatched_cases: str | None = None


def _profile(params: ParamsResource, model_dir: Path) -> str:
    """The profile the merged model was trained with (its lineage), else the configured one."""
    from pipelines.train import resolve_profile

    manifest_path = model_dir / MANIFEST_NAME
    if manifest_path.is_file():
        profile = json.loads(manifest_path.read_text(encoding="utf-8")).get("profile")
        if profile:
            return str(profile)
    return resolve_profile(params.load().sections.get("training"))[0]


def _read(lake: LakeResource, table: str):
    path = table_path(lake.path(), table)
    if table_version(path) is None:
        raise dg.Failure(f"table {table} does not exist at {path}; materialize the data assets first")
    return read_table(path)


@dg.asset(
    group_name=EVALUATION_GROUP,
    kinds={"pytorch", "deltalake"},
    deps=[merged_model, dg.AssetKey(AUGMENTED_TABLE), dg.AssetKey(NORMALIZED_TABLE)],
    automation_condition=TRAINING_CONDITION,  # a new merged model leads to new metrics
    description="Regression set (eval split + past failures) through the merged model: per-case results and metrics.",
)
def regression_metrics(
    context: dg.AssetExecutionContext,
    config: RegressionConfig,
    lake: LakeResource,
    artifacts: ArtifactsResource,
    params: ParamsResource,
) -> dg.MaterializeResult:
    import pandas as pd

    from data_contracts.tables import RegressionResultTable
    from pipelines.model_io import load_model_and_tokenizer

    sections = params.load().sections
    model_dir = merged_model_dir(artifacts.path())
    profile = _profile(params, model_dir)
    settings = eval_settings(sections, profile)
    mismatched_path = Path(config.mismatched_cases or settings.mismatched_cases)

    eval_cases = eval_split_cases(_read(lake, AUGMENTED_TABLE), _read(lake, NORMALIZED_TABLE))
    cases = regression_set(eval_cases, read_mismatched_cases(mismatched_path))
    if settings.max_cases is not None:
        cases = cases[: settings.max_cases]
    if not cases:
        raise dg.Failure("the regression set is empty (no eval split and no mismatched cases)")

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device)
    context.log.info(f"profile {profile}: {len(cases)} cases on {device}, constrained={settings.constrained}")
    results, wall_s = run_evaluation(model, tokenizer, cases, settings.decoding_config())
    metrics = compute_metrics(results, wall_s)
    frames = [results_frame(results, settings.constrained)]
    free_metrics: EvalMetrics | None = None
    if settings.compare_unconstrained and settings.constrained:
        free_results, free_wall_s = run_evaluation(model, tokenizer, cases, settings.decoding_config(constrained=False))
        free_metrics = compute_metrics(free_results, free_wall_s)
        frames.append(results_frame(free_results, False))

    frame = pd.concat(frames, ignore_index=True)
    RegressionResultTable.validate(frame, lazy=True)
    version = write_table(pa.Table.from_pandas(frame, schema=_RESULTS_SCHEMA, preserve_index=False), table_path(lake.path(), RESULTS_TABLE))
    added = append_failures(mismatched_path, results) if settings.append_failures else 0
    context.log.info(f"appended {added} new failures to {mismatched_path} (append_failures={settings.append_failures})")

    metadata = {
        "profile": profile,
        "model_dir": dg.MetadataValue.path(str(model_dir)),
        "results_table": dg.MetadataValue.path(str(table_path(lake.path(), RESULTS_TABLE))),
        "results_delta_version": version,
        "constrained": settings.constrained,
        "new_mismatched_cases": added,
        "mismatched_cases_file": dg.MetadataValue.path(str(mismatched_path)),
        **{key: float(value) for key, value in metrics.headline().items()},
        "metrics": dg.MetadataValue.md(metrics_markdown(metrics)),
        "confusion": dg.MetadataValue.md(confusion_markdown(metrics.confusion)),
    }
    if free_metrics is not None:
        metadata["unconstrained_metrics"] = dg.MetadataValue.md(metrics_markdown(free_metrics))
        metadata["unconstrained_exact_match"] = free_metrics.exact_match
        metadata["unconstrained_catalog_valid_rate"] = free_metrics.catalog_valid_rate
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=regression_metrics,
    blocking=True,
    description="Quality gate: JSON-valid, catalog-valid and exact-match rates at least params.yaml gate.<profile>.",
)
def regression_gate(lake: LakeResource, artifacts: ArtifactsResource, params: ParamsResource) -> dg.AssetCheckResult:
    sections = params.load().sections
    profile = _profile(params, merged_model_dir(artifacts.path()))
    settings = eval_settings(sections, profile)
    thresholds = gate_thresholds(sections, profile)
    frame = read_table(table_path(lake.path(), RESULTS_TABLE))
    gated = frame[frame["constrained"] == settings.constrained]
    observed = {
        "json_valid_rate": rate(gated["json_valid"].tolist()),
        "catalog_valid_rate": rate(gated["catalog_valid"].tolist()),
        "exact_match": rate(gated["exact_match"].tolist()),
    }
    failures = thresholds.failures(observed)
    return dg.AssetCheckResult(
        passed=bool(len(gated)) and not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(failures) if failures else f"all rates meet gate.{profile}",
        metadata={
            "profile": profile,
            "cases": len(gated),
            **{name: float(value) for name, value in observed.items()},
            **{f"min_{name}": float(value) for name, value in thresholds.minimums().items()},
        },
    )


EVALUATION_ASSETS = [regression_metrics]
EVALUATION_CHECKS = [regression_gate]
