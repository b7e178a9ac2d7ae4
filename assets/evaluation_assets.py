"""The evaluation end of the graph: regression_metrics (+ its blocking quality gate).

Thin wrapper over `pipelines.serve` (evaluate, eval_slices, eval_metrics, eval_tables, phenomena): build the
evaluation slices (eval split, accumulated failures, held-out phrasing families, the public examples; each
capped per params.yaml `eval.max_cases`), generate with the merged model (batched, greedy, constrained by
default), write one row per case to the `regression_results` Delta table, append new eval-split failures to
the mismatched-cases file, and report metrics for the whole run, per slice and per phenomenon.
The gate reads the table back and judges the eval slice only, so it judges exactly what was written.

The eval slice is the eval split of the augmented-set version the merged model was trained on (its lineage
manifest records it), read by Delta time travel together with the normalized-samples version that set was
computed from: a later re-materialization of the data (new records, another split seed or eval fraction)
may move training sources into the current eval split, and those must never be gated as unseen.
"""

# No `from __future__ import annotations`: Dagster resolves the `config: RegressionConfig` annotation at runtime.
from pathlib import Path

import dagster as dg

from assets.automation import TRAINING_CONDITION
from assets.metadata_tables import column_schema_metadata, metadata_table
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_assets import merged_model, merged_model_dir
from pipelines.config import EvalSettings
from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, RESULTS_TABLE, read_table, table_path
from pipelines.lineage.audit import TableLink, read_link, training_tables
from pipelines.lineage.manifest import MANIFEST_NAME, LineageError, read_manifest
from pipelines.serve.eval_cases import GATED_SLICE, EvalCase
from pipelines.serve.eval_metrics import EvalMetrics, rate, rates_by_slice
from pipelines.serve.eval_slices import EvalSlice, append_failures, eval_split_cases, evaluation_slices
from pipelines.serve.eval_tables import (
    COMMAND_COLUMNS,
    FIELD_COLUMNS,
    METRIC_COLUMNS,
    command_rows,
    confusion_table,
    field_rows,
    metric_rows,
)
from pipelines.serve.evaluate import DecodingRun, decoding_configs, evaluate_model, write_results
from pipelines.serve.phenomena import TAG_SCORE_COLUMNS, exact_match_by_tag, tag_score_rows

EVALUATION_GROUP = "evaluation"


class RegressionConfig(dg.Config):
    """Run config. An unset path is params.yaml eval.<same name> (relative to the working dir)."""

    mismatched_cases: str | None = None
    heldout_cases: str | None = None
    public_cases: str | None = None


def _profile(params: ParamsResource, model_dir: Path) -> str:
    """The profile the merged model was trained with (its lineage), else the run's one."""
    if (model_dir / MANIFEST_NAME).is_file():
        profile = read_manifest(model_dir).get("profile")
        if profile:
            return str(profile)
    return params.training_profile()[0]


def _trained_eval_split(
    context: dg.AssetExecutionContext, lake: LakeResource, model_dir: Path
) -> tuple[list[EvalCase], TableLink, TableLink]:
    """The eval-split cases of the data the model in `model_dir` was trained on, and the two table versions read."""
    try:
        augmented_link, normalized_link = training_tables(model_dir, lake.path())
        augmented = read_link(augmented_link, ["source_index", "split"])
        normalized = read_link(normalized_link, ["source_index", "input_text", "raw_input", "commands_json"])
    except LineageError as error:
        raise dg.Failure(f"cannot tell which eval split {model_dir} was trained against: {error}") from error
    cases = eval_split_cases(augmented, normalized)
    recorded = (read_manifest(model_dir).get("data") or {}).get("eval_source_index")
    evaluated = sorted({str(case.source_index) for case in cases})
    # Delta versions are immutable, so a difference means the manifest and the lake disagree (another lake,
    # a rewritten table): judging that split would not judge what the model was held out from.
    if recorded is not None and evaluated != sorted(recorded):
        raise dg.Failure(
            f"{augmented_link.table} v{augmented_link.version} has {len(evaluated)} eval sources, but the model's "
            f"lineage records {len(recorded)} different ones; is the lake resource the one the model was trained "
            "from?"
        )
    context.log.info(
        f"eval split of {augmented_link.table} v{augmented_link.version} (the version {model_dir.name} was trained "
        f"on) with {normalized_link.table} v{normalized_link.version} ({normalized_link.how})"
    )
    return cases, augmented_link, normalized_link


_SLICE_COLUMNS = [
    ("slice", "string"),
    ("decoding", "string", "constrained or free (unconstrained comparison)"),
    ("evaluated", "int", "cases run (after eval.max_cases)"),
    ("available", "int", "cases the slice holds"),
    ("json_valid_rate", "float"),
    ("catalog_valid_rate", "float"),
    ("exact_match", "float"),
    ("note", "string"),
]


def _slice_note(evaluation_slice: EvalSlice) -> str:
    if evaluation_slice.missing:
        return f"missing file {evaluation_slice.path}"
    if evaluation_slice.evaluated < evaluation_slice.available:
        return f"capped at {evaluation_slice.evaluated} of {evaluation_slice.available} (eval.max_cases)"
    return ""


def _slice_metadata(slices: list[EvalSlice], runs: list[DecodingRun]) -> dict:
    """`<slice>/...` keys (counts always; rates only for a slice that ran) and one table of every slice."""
    metadata: dict = {}
    rows = []
    for evaluation_slice in slices:
        name = evaluation_slice.name
        metadata[f"{name}/cases_evaluated"] = evaluation_slice.evaluated
        metadata[f"{name}/cases_available"] = evaluation_slice.available
        if evaluation_slice.path is not None:
            metadata[f"{name}/file_missing"] = evaluation_slice.missing
        for index, run in enumerate(runs):
            rates = rates_by_slice(run.results).get(name)
            prefix = name if index == 0 else f"unconstrained/{name}"
            if rates is not None:
                metadata[f"{prefix}/json_valid_rate"] = rates.json_valid_rate
                metadata[f"{prefix}/catalog_valid_rate"] = rates.catalog_valid_rate
                metadata[f"{prefix}/exact_match"] = rates.exact_match
            rows.append(
                {
                    "slice": name,
                    "decoding": run.decoding,
                    "evaluated": evaluation_slice.evaluated,
                    "available": evaluation_slice.available,
                    "json_valid_rate": rates.json_valid_rate if rates else None,
                    "catalog_valid_rate": rates.catalog_valid_rate if rates else None,
                    "exact_match": rates.exact_match if rates else None,
                    "note": _slice_note(evaluation_slice),
                }
            )
    metadata["slices"] = metadata_table(rows, _SLICE_COLUMNS)
    return metadata


def _metrics_metadata(metrics: EvalMetrics, prefix: str = "") -> dict:
    """The headline, per-command and per-field tables (the unconstrained comparison's under `unconstrained_`)."""
    return {
        f"{prefix}metrics": metadata_table(metric_rows(metrics), METRIC_COLUMNS),
        f"{prefix}command_scores": metadata_table(command_rows(metrics), COMMAND_COLUMNS),
        f"{prefix}field_scores": metadata_table(field_rows(metrics), FIELD_COLUMNS),
    }


def _run_metadata(runs: list[DecodingRun]) -> dict:
    """Every number and table of the run; unprefixed: every case, all slices together."""
    metrics = runs[0].metrics
    columns, confusion_rows = confusion_table(metrics.confusion)
    metadata = {
        "evaluation_wall_s": float(runs[0].wall_s),
        **{key: float(value) for key, value in metrics.headline().items()},
        "exact_match_by_tag": metadata_table(tag_score_rows(exact_match_by_tag(runs[0].results)), TAG_SCORE_COLUMNS),
        **_metrics_metadata(metrics),
        "confusion": metadata_table(confusion_rows, columns),
    }
    for comparison in runs[1:]:
        metadata.update(_metrics_metadata(comparison.metrics, prefix="unconstrained_"))
        metadata["unconstrained_exact_match"] = comparison.metrics.exact_match
        metadata["unconstrained_catalog_valid_rate"] = comparison.metrics.catalog_valid_rate
    return metadata


def _slices(
    context: dg.AssetExecutionContext,
    config: RegressionConfig,
    settings: EvalSettings,
    eval_cases: list[EvalCase],
    mismatched_path: Path,
) -> list[EvalSlice]:
    """The four slices, each logged; a run config path wins over params.yaml. Failure when all are empty."""
    slices = evaluation_slices(
        eval_cases,
        mismatched_path=mismatched_path,
        heldout_path=Path(config.heldout_cases or settings.heldout_cases),
        public_path=Path(config.public_cases or settings.public_cases),
        max_cases=settings.max_cases,
    )
    for evaluation_slice in slices:
        note = _slice_note(evaluation_slice)
        context.log.info(
            f"slice {evaluation_slice.name}: {evaluation_slice.evaluated} of {evaluation_slice.available} cases"
            + (f" ({note})" if note else "")
        )
    if not any(evaluation_slice.cases for evaluation_slice in slices):
        raise dg.Failure("every evaluation slice is empty (no eval split, mismatched, held-out or public cases)")
    return slices


@dg.asset(
    group_name=EVALUATION_GROUP,
    kinds={"pytorch", "deltalake"},
    deps=[merged_model, dg.AssetKey(AUGMENTED_TABLE), dg.AssetKey(NORMALIZED_TABLE)],
    automation_condition=TRAINING_CONDITION,  # a new merged model leads to new metrics
    metadata=column_schema_metadata(RESULTS_TABLE),
    description=(
        "Evaluation slices (eval split of the data version the model was trained on, past failures, held-out "
        "phrasing families, public examples) through the merged model: per-case results, metrics for the run, "
        "per slice and per phenomenon tag."
    ),
)
def regression_metrics(
    context: dg.AssetExecutionContext,
    config: RegressionConfig,
    lake: LakeResource,
    artifacts: ArtifactsResource,
    params: ParamsResource,
) -> dg.MaterializeResult:
    model_dir = merged_model_dir(artifacts.path())
    profile = _profile(params, model_dir)
    settings = params.load().eval.for_profile(profile)
    mismatched_path = Path(config.mismatched_cases or settings.mismatched_cases)

    eval_cases, augmented_link, normalized_link = _trained_eval_split(context, lake, model_dir)
    slices = _slices(context, config, settings, eval_cases, mismatched_path)
    cases = [case for evaluation_slice in slices for case in evaluation_slice.cases]
    context.log.info(f"evaluating {model_dir} with the eval settings of profile {profile}")
    runs = evaluate_model(model_dir, cases, decoding_configs(settings), context.log.info)

    version = write_results(runs, table_path(lake.path(), RESULTS_TABLE))
    added = append_failures(mismatched_path, runs[0].results) if settings.append_failures else 0
    context.log.info(
        f"appended {added} new eval-split failures to {mismatched_path} (append_failures={settings.append_failures})"
    )
    return dg.MaterializeResult(
        metadata={
            "profile": profile,
            "model_dir": dg.MetadataValue.path(str(model_dir)),
            "results_table": dg.MetadataValue.path(str(table_path(lake.path(), RESULTS_TABLE))),
            "results_delta_version": version,
            # The data versions the eval slice was read at: those the model was trained on (its lineage).
            "augmented_delta_version": augmented_link.version,
            "normalized_delta_version": normalized_link.version,
            "constrained": settings.constrained,
            "gated_slice": GATED_SLICE,
            "new_mismatched_cases": added,
            "mismatched_cases_file": dg.MetadataValue.path(str(mismatched_path)),
            **_run_metadata(runs),
            **_slice_metadata(slices, runs),
        }
    )


@dg.asset_check(
    asset=regression_metrics,
    blocking=True,
    description=(
        "Quality gate on the eval slice: JSON-valid, catalog-valid and exact-match rates at least "
        "params.yaml gate.<profile>. The other slices are reported, not gated."
    ),
)
def regression_gate(lake: LakeResource, artifacts: ArtifactsResource, params: ParamsResource) -> dg.AssetCheckResult:
    loaded = params.load()
    profile = _profile(params, merged_model_dir(artifacts.path()))
    settings = loaded.eval.for_profile(profile)
    thresholds = loaded.gate_for(profile)
    frame = read_table(table_path(lake.path(), RESULTS_TABLE))
    gated = frame[(frame["constrained"] == settings.constrained) & (frame["split_source"] == GATED_SLICE)]
    observed = {
        "json_valid_rate": rate(gated["json_valid"].tolist()),
        "catalog_valid_rate": rate(gated["catalog_valid"].tolist()),
        "exact_match": rate(gated["exact_match"].tolist()),
    }
    failures = thresholds.failures(observed)
    if not len(gated):
        failures = [f"no {GATED_SLICE}-slice cases were evaluated", *failures]
    return dg.AssetCheckResult(
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(failures) if failures else f"all {GATED_SLICE}-slice rates meet gate.{profile}",
        metadata={
            "profile": profile,
            "gated_slice": GATED_SLICE,
            "cases": len(gated),
            **{name: float(value) for name, value in observed.items()},
            **{f"min_{name}": float(value) for name, value in thresholds.minimums().items()},
        },
    )


EVALUATION_ASSETS = [regression_metrics]
EVALUATION_CHECKS = [regression_gate]
