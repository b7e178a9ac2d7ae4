"""The end of the graph: deployed_model promotes the merged model once the regression gate passed on it.

Thin wrapper over `pipelines.serve.deploy` (versioned deploy directory, atomic `current` pointer, rollback) and
`pipelines.model.model_card` (chat template, plan schema and model card written into the promoted copy).

In a run that also materializes regression_metrics, Dagster skips this asset when the blocking gate fails.
Materialized on its own it decides for itself, from the instance's records: the latest regression_gate
evaluation must have passed, must have judged the latest regression_metrics materialization, and that
materialization must have evaluated exactly the merged weights on disk (its recorded input data version of
merged_model, which is the weights hash). Anything else refuses and leaves `current` as it was.

Rollback: `python -m pipelines deploy rollback`, or the `rollback_deployment` job (which records the switch
as a materialization of deployed_model, so the asset's history shows what is live).
"""

# No `from __future__ import annotations`: Dagster resolves the context/config annotations at runtime.
from pathlib import Path
from typing import Any

import dagster as dg

from assets.evaluation_assets import regression_gate, regression_metrics
from assets.metadata_tables import metadata_table
from assets.resources import ArtifactsResource, LakeResource
from assets.training_assets import merged_model, merged_model_dir, merged_model_matches_adapter
from pipelines.lineage.audit import chain_markdown
from pipelines.model.model_card import MODEL_CARD_FILE, PLAN_SCHEMA_FILE, EvaluationSummary
from pipelines.serve.deploy import (
    CURRENT,
    DeployError,
    Deployment,
    GateVerdict,
    PromotionRefused,
    deploy_root,
    promote,
    rollback,
)
from pipelines.serve.eval_cases import GATED_SLICE, SLICES
from pipelines.serve.phenomena import TAG_SCORE_COLUMNS

DEPLOY_GROUP = "deployment"
# How Dagster records, on a materialization, the data version each upstream asset had when it ran.
_INPUT_DATA_VERSION_TAG = "dagster/input_data_version/{key}"
_HEADLINE = ("n_cases", "json_valid_rate", "catalog_valid_rate", "exact_match", "command_precision",
             "command_recall", "command_f1", "latency_p50_s", "latency_p95_s", "cases_per_s", "mean_new_tokens")
_SLICE_FIELDS = ("cases_evaluated", "json_valid_rate", "catalog_valid_rate", "exact_match")


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _tag_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of regression_metrics' exact-match-per-tag table ([] when the materialization has none)."""
    table = metrics.get("exact_match_by_tag")
    return [dict(record.data) for record in table.records] if table is not None else []


def _evaluation_summary(metrics: dict[str, Any], gate: Any, run_id: str) -> EvaluationSummary:
    slices = {}
    for name in SLICES:
        rates = {f: metrics[f"{name}/{f}"] for f in _SLICE_FIELDS if f"{name}/{f}" in metrics}
        if rates.get("cases_evaluated"):
            slices[name] = rates
    return EvaluationSummary(
        gate_passed=bool(gate.passed),
        gate_description=gate.description or "",
        gated_slice=str(metrics.get("gated_slice", GATED_SLICE)),
        gate_metadata=_plain(dict(gate.metadata)),
        headline={key: metrics[key] for key in _HEADLINE if key in metrics},
        slices=slices,
        tag_scores=_tag_rows(metrics),
        constrained=metrics.get("constrained"),
        results_delta_version=metrics.get("results_delta_version"),
        evaluated_in_run=run_id,
    )


def _check_result(instance: dg.DagsterInstance, check: Any, asset_name: str, latest: Any) -> tuple[Any, str | None]:
    """The latest result of `check` and None, or None and why it does not judge `latest` (an asset's newest
    materialization record, None when there is none)."""
    check_key = check.check_key
    record = instance.get_latest_asset_check_evaluation_record(check_key)
    evaluation = record.event.asset_check_evaluation if record is not None and record.event is not None else None
    if latest is None or evaluation is None:
        return None, f"{check_key.name} has no result for the latest {asset_name} (never run, or still running)"
    target = evaluation.target_materialization_data
    if target is None or target.storage_id != latest.storage_id:
        return None, (
            f"the latest {check_key.name} result judged an earlier {asset_name} materialization "
            f"(run {target.run_id if target else 'unknown'}), not the latest one "
            f"(run {latest.event_log_entry.run_id}); run it again"
        )
    return evaluation, None


def _parity_refusal(instance: dg.DagsterInstance) -> str | None:
    """Why the latest merged_model must not be served as far as merge parity goes, or None when its check passed.

    Within one run a failed blocking check stops everything downstream; across runs (merged_model, then
    regression_metrics and deployed_model materialized on their own) only this lookup keeps a bad merge out.
    """
    merges = instance.fetch_materializations(merged_model.key, limit=1).records
    check = merged_model_matches_adapter
    evaluation, refusal = _check_result(instance, check, "merged_model", merges[0] if merges else None)
    if refusal is not None:
        return refusal
    return None if evaluation.passed else f"{check.check_key.name} failed on the latest merged_model"


def gate_verdict(instance: dg.DagsterInstance) -> tuple[GateVerdict, EvaluationSummary | None]:
    """What the instance recorded about the latest regression_metrics and its gate (and about the merge parity
    check of the latest merged_model), as a promotion verdict, with the evaluation's summary."""
    records = instance.fetch_materializations(regression_metrics.key, limit=1).records
    if not records:
        return GateVerdict(False, "regression_metrics has never been materialized", None), None
    latest = records[0]
    entry = latest.event_log_entry
    metrics = _plain(dict(entry.asset_materialization.metadata))
    # The weights regression_metrics evaluated: recorded by the asset itself when it does, else the data
    # version merged_model had when it ran (merged_model's data version is its weights hash).
    evaluated = metrics.get("merged_weights_sha256") or (entry.tags or {}).get(
        _INPUT_DATA_VERSION_TAG.format(key=merged_model.key.to_user_string())
    )
    evaluation, refusal = _check_result(instance, regression_gate, "regression_metrics", latest)
    if refusal is not None:
        return GateVerdict(False, refusal, evaluated), None
    parity = _parity_refusal(instance)
    if parity is not None:
        return GateVerdict(False, parity, evaluated), None
    summary = _evaluation_summary(metrics, evaluation, entry.run_id)
    description = evaluation.description or ("passed" if evaluation.passed else "failed")
    return GateVerdict(bool(evaluation.passed), description, evaluated), summary


def _metadata(deployment: Deployment, root: Path, lake: Path, promoted: bool) -> dict[str, Any]:
    record = deployment.record
    evaluation = EvaluationSummary.from_dict(record["evaluation"]) if record.get("evaluation") else None
    metadata: dict[str, Any] = {
        "version": deployment.version,
        "path": dg.MetadataValue.path(str(deployment.path)),
        "current": dg.MetadataValue.path(str(root / CURRENT)),
        "promoted": promoted,
        "previous_version": str(deployment.previous),
        "merged_weights_sha256": deployment.weights_sha256,
        "adapter_sha256": str(record["lineage"].get("adapter_sha256")),
        "regression_run_id": str(evaluation.evaluated_in_run if evaluation else None),
        "model_card": dg.MetadataValue.path(str(deployment.path / MODEL_CARD_FILE)),
        "plan_schema": dg.MetadataValue.path(str(deployment.path / PLAN_SCHEMA_FILE)),
        "lineage_chain": dg.MetadataValue.md(chain_markdown(deployment.path, lake)),
        "lineage": dg.MetadataValue.json(record["lineage"]),
    }
    if evaluation is not None:
        metadata["regression_metrics"] = dg.MetadataValue.json(evaluation.to_dict())
        for name, value in evaluation.gate_metadata.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metadata[f"gate/{name}"] = float(value)
        if evaluation.tag_scores:
            metadata["exact_match_by_tag"] = metadata_table(evaluation.tag_scores, TAG_SCORE_COLUMNS)
    return metadata


class DeployConfig(dg.Config):
    # A rollback sticks: weights it moved away from are promoted again only when asked for.
    promote_rolled_back: bool = False


@dg.asset(
    group_name=DEPLOY_GROUP,
    kinds={"safetensors"},
    deps=[merged_model, regression_metrics],
    description=(
        "The merged model promoted into a versioned deploy directory (deploy/<version>/, deploy/current switched "
        "atomically), only when the blocking regression gate passed on these exact weights. Each version holds "
        "its lineage, the gate's metrics, a model card, plan.schema.json and the trained chat template."
    ),
)
def deployed_model(
    context: dg.AssetExecutionContext, config: DeployConfig, artifacts: ArtifactsResource, lake: LakeResource
) -> dg.MaterializeResult:
    verdict, evaluation = gate_verdict(context.instance)
    root = deploy_root(artifacts.path())
    try:
        result = promote(merged_model_dir(artifacts.path()), root, verdict, evaluation=evaluation,
                         run_id=context.run_id, promote_rolled_back=config.promote_rolled_back)
    except PromotionRefused as error:
        raise dg.Failure(description=f"not promoted: {error}", metadata={"gate_passed": verdict.passed},
                         allow_retries=False) from error
    except DeployError as error:  # e.g. `current` points at a version folder deleted by hand
        raise dg.Failure(
            description=f"not promoted: the deploy directory {root} is damaged: {error}; point {CURRENT} at an "
            "intact version (`python -m pipelines deploy rollback --to <version>`) or remove it",
            allow_retries=False,
        ) from error
    deployment = result.deployment
    if result.promoted:
        context.log.info(
            f"promoted {deployment.version} (previous: {result.previous}); {root / CURRENT} -> {deployment.version}"
        )
    else:
        context.log.info(f"{deployment.version} already holds these weights and is current; nothing changed")
    return dg.MaterializeResult(
        metadata=_metadata(deployment, root, lake.path(), result.promoted),
        data_version=dg.DataVersion(deployment.weights_sha256[:16]),
    )


class RollbackConfig(dg.Config):
    """Unset `to`: the version that was current before the current one was promoted."""

    to: str | None = None


@dg.op(description="Point deploy/current back at the previously promoted model (or at `to`).")
def rollback_deployed_model(
    context: dg.OpExecutionContext, config: RollbackConfig, artifacts: ArtifactsResource, lake: LakeResource
) -> None:
    root = deploy_root(artifacts.path())
    try:
        before, after = rollback(root, config.to)
    except DeployError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    context.log.info(f"rolled back {root / CURRENT}: {before.version} -> {after.version}")
    context.log_event(
        dg.AssetMaterialization(
            asset_key=deployed_model.key,
            description=f"rollback: {before.version} -> {after.version}",
            metadata={**_metadata(after, root, lake.path(), promoted=False), "rolled_back_from": before.version},
        )
    )


@dg.job(description="Roll deploy/current back to the previously promoted model (run config `to` picks another).")
def rollback_deployment() -> None:
    rollback_deployed_model()


DEPLOY_ASSETS = [deployed_model]
DEPLOY_JOBS = [rollback_deployment]
