"""The evaluation end of the graph: regression_metrics (+ its blocking quality gate).

Thin wrapper over `pipelines.serve.evaluate`: build the evaluation slices (eval split, accumulated failures,
held-out phrasing families, the public examples; each capped per params.yaml `eval.max_cases`), generate
with the merged model (batched, greedy, constrained by default), write one row per case to the
`regression_results` Delta table, append new eval-split failures to the mismatched-cases file, and report
metrics for the whole run, per slice and per phenomenon (`pipelines.serve.phenomena`).
The gate reads the table back and judges the eval slice only, so it judges exactly what was written.

The eval slice is the eval split of the augmented-set version the merged model was trained on (its lineage
manifest records it), read by Delta time travel together with the normalized-samples version that set was
computed from: a later re-materialization of the data (new records, another split seed or eval fraction)
may move training sources into the current eval split, and those must never be gated as unseen.
"""

# No `from __future__ import annotations`: Dagster resolves the `config: RegressionConfig` annotation at runtime.
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from assets.automation import TRAINING_CONDITION
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_assets import merged_model, merged_model_dir
from pipelines.serve.evaluate import (
    GATED_SLICE,
    CaseResult,
    EvalCase,
    EvalMetrics,
    EvalSlice,
    append_failures,
    compute_metrics,
    confusion_markdown,
    eval_settings,
    eval_split_cases,
    evaluation_slices,
    gate_thresholds,
    metrics_markdown,
    progress_reporter,
    rate,
    rates_by_slice,
    results_frame,
    run_evaluation,
)
from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, read_table, table_path, write_table
from pipelines.lineage.audit import LineageError, TableLink, read_link, read_manifest, training_tables
from pipelines.lineage.manifest import MANIFEST_NAME
from pipelines.serve.phenomena import exact_match_by_tag, tag_scores_markdown

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
    """Run config. An unset path is params.yaml eval.<same name> (relative to the working dir)."""

    mismatched_cases: str | None = None
    heldout_cases: str | None = None
    public_cases: str | None = None


def _profile(params: ParamsResource, model_dir: Path) -> str:
    """The profile the merged model was trained with (its lineage), else the configured one."""
    from pipelines.model.train import resolve_profile

    manifest_path = model_dir / MANIFEST_NAME
    if manifest_path.is_file():
        profile = json.loads(manifest_path.read_text(encoding="utf-8")).get("profile")
        if profile:
            return str(profile)
    return resolve_profile(params.load().sections.get("training"))[0]


def _trained_eval_split(lake: LakeResource, model_dir: Path) -> tuple[list[EvalCase], TableLink, TableLink]:
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
            f"lineage records {len(recorded)} different ones; is the lake resource the one the model was trained from?"
        )
    return cases, augmented_link, normalized_link


_SLICE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("slice", "string"),
        dg.TableColumn("decoding", "string", description="constrained or free (unconstrained comparison)"),
        dg.TableColumn("evaluated", "int", description="cases run (after eval.max_cases)"),
        dg.TableColumn("available", "int", description="cases the slice holds"),
        dg.TableColumn("json_valid_rate", "float"),
        dg.TableColumn("catalog_valid_rate", "float"),
        dg.TableColumn("exact_match", "float"),
        dg.TableColumn("note", "string"),
    ]
)
_TAG_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("slice", "string"),
        dg.TableColumn("tag", "string"),
        dg.TableColumn("cases", "int"),
        dg.TableColumn("exact_matches", "int"),
        dg.TableColumn("exact_match", "float"),
    ]
)


def _slice_note(evaluation_slice: EvalSlice) -> str:
    if evaluation_slice.missing:
        return f"missing file {evaluation_slice.path}"
    if evaluation_slice.evaluated < evaluation_slice.available:
        return f"capped at {evaluation_slice.evaluated} of {evaluation_slice.available} (eval.max_cases)"
    return ""


def _slice_metadata(slices: list[EvalSlice], results: list[CaseResult], free_results: list[CaseResult] | None) -> dict:
    """`<slice>/...` keys (counts always; rates only for a slice that ran) and one table of every slice."""
    metadata: dict = {}
    records = []
    runs = [("constrained", rates_by_slice(results))]
    if free_results is not None:
        runs.append(("free", rates_by_slice(free_results)))
    for evaluation_slice in slices:
        name = evaluation_slice.name
        metadata[f"{name}/cases_evaluated"] = evaluation_slice.evaluated
        metadata[f"{name}/cases_available"] = evaluation_slice.available
        if evaluation_slice.path is not None:
            metadata[f"{name}/file_missing"] = evaluation_slice.missing
        for decoding, by_slice in runs:
            rates = by_slice.get(name)
            prefix = name if decoding == "constrained" else f"unconstrained/{name}"
            if rates is not None:
                metadata[f"{prefix}/json_valid_rate"] = rates.json_valid_rate
                metadata[f"{prefix}/catalog_valid_rate"] = rates.catalog_valid_rate
                metadata[f"{prefix}/exact_match"] = rates.exact_match
            records.append(
                dg.TableRecord(
                    {
                        "slice": name,
                        "decoding": decoding,
                        "evaluated": evaluation_slice.evaluated,
                        "available": evaluation_slice.available,
                        "json_valid_rate": rates.json_valid_rate if rates else None,
                        "catalog_valid_rate": rates.catalog_valid_rate if rates else None,
                        "exact_match": rates.exact_match if rates else None,
                        "note": _slice_note(evaluation_slice),
                    }
                )
            )
    metadata["slices"] = dg.MetadataValue.table(records=records, schema=_SLICE_COLUMNS)
    return metadata


def _tag_metadata(results: list[CaseResult]) -> dict:
    scores = exact_match_by_tag(results)
    records = [
        dg.TableRecord(
            {"slice": s.slice, "tag": s.tag, "cases": s.cases, "exact_matches": s.exact_matches, "exact_match": s.exact_match}
        )
        for s in scores
    ]
    return {
        "exact_match_by_tag": dg.MetadataValue.table(records=records, schema=_TAG_COLUMNS),
        "exact_match_by_tag_md": dg.MetadataValue.md(tag_scores_markdown(scores)),
    }


@dg.asset(
    group_name=EVALUATION_GROUP,
    kinds={"pytorch", "deltalake"},
    deps=[merged_model, dg.AssetKey(AUGMENTED_TABLE), dg.AssetKey(NORMALIZED_TABLE)],
    automation_condition=TRAINING_CONDITION,  # a new merged model leads to new metrics
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
    import pandas as pd

    from data_contracts.tables import RegressionResultTable
    from pipelines.model.model_io import load_model_and_tokenizer

    sections = params.load().sections
    model_dir = merged_model_dir(artifacts.path())
    profile = _profile(params, model_dir)
    settings = eval_settings(sections, profile)
    mismatched_path = Path(config.mismatched_cases or settings.mismatched_cases)

    eval_cases, augmented_link, normalized_link = _trained_eval_split(lake, model_dir)
    context.log.info(
        f"eval split of {augmented_link.table} v{augmented_link.version} (the version {model_dir.name} was trained on) "
        f"with {normalized_link.table} v{normalized_link.version} ({normalized_link.how})"
    )
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
    cases = [case for evaluation_slice in slices for case in evaluation_slice.cases]
    if not cases:
        raise dg.Failure("every evaluation slice is empty (no eval split, mismatched, held-out or public cases)")

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device)
    context.log.info(f"profile {profile}: {len(cases)} cases on {device}, constrained={settings.constrained}")
    # All slices in one call, so decoding batches stay full across slice boundaries.
    decoding = "constrained" if settings.constrained else "free"
    results, wall_s = run_evaluation(
        model, tokenizer, cases, settings.decoding_config(),
        on_batch=progress_reporter(f"{decoding} decoding", context.log.info),
    )
    metrics = compute_metrics(results, wall_s)
    frames = [results_frame(results, settings.constrained)]
    free_results: list[CaseResult] | None = None
    free_metrics: EvalMetrics | None = None
    if settings.compare_unconstrained and settings.constrained:
        free_results, free_wall_s = run_evaluation(
            model, tokenizer, cases, settings.decoding_config(constrained=False),
            on_batch=progress_reporter("free decoding (comparison run)", context.log.info),
        )
        free_metrics = compute_metrics(free_results, free_wall_s)
        frames.append(results_frame(free_results, False))

    frame = pd.concat(frames, ignore_index=True)
    RegressionResultTable.validate(frame, lazy=True)
    version = write_table(pa.Table.from_pandas(frame, schema=_RESULTS_SCHEMA, preserve_index=False), table_path(lake.path(), RESULTS_TABLE))
    added = append_failures(mismatched_path, results) if settings.append_failures else 0
    context.log.info(f"appended {added} new eval-split failures to {mismatched_path} (append_failures={settings.append_failures})")

    metadata = {
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
        "evaluation_wall_s": float(wall_s),
        # Unprefixed: every case of this run, all slices together; `<slice>/...`: one slice.
        **{key: float(value) for key, value in metrics.headline().items()},
        **_slice_metadata(slices, results, free_results),
        **_tag_metadata(results),
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
    description=(
        "Quality gate on the eval slice: JSON-valid, catalog-valid and exact-match rates at least "
        "params.yaml gate.<profile>. The other slices are reported, not gated."
    ),
)
def regression_gate(lake: LakeResource, artifacts: ArtifactsResource, params: ParamsResource) -> dg.AssetCheckResult:
    sections = params.load().sections
    profile = _profile(params, merged_model_dir(artifacts.path()))
    settings = eval_settings(sections, profile)
    thresholds = gate_thresholds(sections, profile)
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
