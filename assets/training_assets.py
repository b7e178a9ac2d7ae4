"""The training half of the graph: base_model -> lora_checkpoint -> merged_model (+ the merge-parity gate).

Thin wrappers over `pipelines.model.base_model`, `pipelines.model.training_runs` (which run a materialization
means, reusing a finished one; the layout of lora_checkpoint/ is described there), `assets.training_launch`
(training under torchrun through Dagster Pipes) and `pipelines.model.merge`. Artifacts live under the artifacts
root:
- base_models/<name>-<source hash>/   prepared base model (safetensors, with <eoc>)
- base_models/latest.json             the base model base_model prepared last: what lora_checkpoint trains on
- lora_checkpoint/                    the runs, and latest.json: which run the last materialization produced
- merged_model/                       merged safetensors model + tokenizer + lineage.json

Every asset takes the training profile from the run's `params` resource (`ParamsResource.training_profile`).
"""

from pathlib import Path
from typing import Any

import dagster as dg

from assets.automation import TRAINING_CONDITION
from assets.executors import GPU_STEP_TAGS
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_launch import launch_training, resolve_nproc
from pipelines.charts import image_markdown
from pipelines.data.lake import AUGMENTED_TABLE
from pipelines.lineage.audit import chain_markdown
from pipelines.lineage.manifest import read_manifest
from pipelines.model.base_model import BaseModelInfo, read_latest_base, record_latest_base, resolve_base_model
from pipelines.model.merge import merge_adapter, merge_parity
from pipelines.model.training_runs import (
    TrainingRun,
    TrainingRunPlan,
    finish_run,
    new_run_dir,
    plan_training_run,
    read_latest_run,
    record_latest_run,
    reuse_finished_run,
)

TRAINING_GROUP = "training"


class TrainingRunConfig(dg.Config):
    """Run config of lora_checkpoint (the profile is the run's, on the `params` resource)."""

    force_retrain: bool = False
    # Training processes (torchrun --nproc-per-node): an integer, or "auto" = visible GPUs, else 1.
    nproc_per_node: str = "auto"


def _base_model_metadata(profile: str, info: BaseModelInfo) -> dict[str, Any]:
    return {
        "profile": profile,
        "source": info.source,
        "path": dg.MetadataValue.path(info.path),
        "weights_sha256": info.weights_sha256,
        "source_sha256": info.source_hash,
        "parameter_count": info.parameter_count,
        "eoc_token_id": info.eoc_token_id,
        "stop_token_ids": dg.MetadataValue.json(info.stop_token_ids),
        "chat_template": dg.MetadataValue.md(f"```jinja\n{info.chat_template}\n```"),
    }


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"pytorch", "safetensors"},
    description="The configured base model, converted once to safetensors with the <eoc> token added.",
)
def base_model(
    context: dg.AssetExecutionContext, artifacts: ArtifactsResource, params: ParamsResource
) -> dg.MaterializeResult:
    profile, train_config = params.training_profile()
    info = resolve_base_model(train_config.base_model, artifacts.path())
    record_latest_base(info, profile, artifacts.path())
    context.log.info(f"profile {profile}: base model {info.source} at {info.path}")
    return dg.MaterializeResult(
        metadata=_base_model_metadata(profile, info), data_version=dg.DataVersion(info.weights_sha256[:16])
    )


def _plan_run(
    config: TrainingRunConfig, lake: LakeResource, artifacts: ArtifactsResource, params: ParamsResource
) -> TrainingRunPlan:
    """The run's profile, on the base model base_model prepared and the current augmented set."""
    profile, train_config = params.training_profile()
    try:
        base = read_latest_base(artifacts.path(), train_config.base_model)
        return plan_training_run(
            profile, train_config, base, lake.path(), Path(params.load().data.raw_dir), artifacts.path(),
            resolve_nproc(config.nproc_per_node),
        )
    except (FileNotFoundError, ValueError) as error:
        raise dg.Failure(str(error)) from error


def _checkpoint_metadata(plan: TrainingRunPlan, run: TrainingRun) -> dict[str, Any]:
    metrics = run.metrics
    metadata: dict[str, Any] = {
        "profile": plan.profile,
        "run_dir": dg.MetadataValue.path(str(run.run_dir)),
        "run_fingerprint": plan.fingerprint,
        "world_size": plan.world_size,
        "training_code_sha256": plan.code_hash,
        "adapter_dir": dg.MetadataValue.path(str(run.run_dir / "adapter")),
        "tensorboard_dir": dg.MetadataValue.path(str(run.run_dir / "tensorboard")),
        "device": metrics["device"],
        "train_wall_time_s": metrics["train_wall_time_s"],
        "tokens_per_s": metrics["tokens_per_s"],
        "train_loss": metrics["train_loss"],
        "eval_loss": metrics["eval_loss"],
        "global_step": metrics["global_step"],
        "train_rows": metrics["train_rows"],
        "eval_rows": metrics["eval_rows"],
        "resumed_from": str(metrics.get("resumed_from")),
        "reused": metrics["reused"],
        "adapter_sha256": metrics["adapter_sha256"],
        "augmented_delta_version": plan.data_version,
        "augmented_content_hash": plan.lineage.content_hash,
        "lineage": dg.MetadataValue.json(run.manifest),
    }
    if run.loss_curve_png is not None and Path(run.loss_curve_png).is_file():
        metadata["loss_curve"] = dg.MetadataValue.path(str(run.loss_curve_png))
        metadata["loss_curve_preview"] = dg.MetadataValue.md(image_markdown(run.loss_curve_png, "loss curve"))
    return metadata


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"pytorch", "peft"},
    deps=[base_model, dg.AssetKey(AUGMENTED_TABLE)],
    op_tags=GPU_STEP_TAGS,
    # `dagster asset list --select 'tag:gpu=true'`: the one asset that wants the GPU executor.
    tags={"gpu": "true"},
    automation_condition=TRAINING_CONDITION,
    description="LoRA adapter trained with TRL SFTTrainer on the augmented set (weighted, completion-only loss).",
)
def lora_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    lake: LakeResource,
    artifacts: ArtifactsResource,
    params: ParamsResource,
) -> dg.MaterializeResult:
    plan = _plan_run(config, lake, artifacts, params)
    # The newest finished run of this identity, not the first: after a forced retrain, that retrain.
    run = None if config.force_retrain else reuse_finished_run(plan)
    if run is not None:
        context.log.info(f"{run.run_dir} already holds this exact run (same data, config, base, code and world "
                         "size); reusing it")
    else:
        run_dir = new_run_dir(plan, config.force_retrain, context.run_id)
        result = launch_training(context, plan.config, Path(plan.base.path), plan.data_path, plan.data_version,
                                 run_dir, manifest=plan.manifest(), nproc_per_node=plan.world_size)
        run = finish_run(run_dir, result)
    record_latest_run(plan, run, artifacts.path())
    return dg.MaterializeResult(
        metadata=_checkpoint_metadata(plan, run), data_version=dg.DataVersion(run.metrics["adapter_sha256"][:16])
    )


def merged_model_dir(artifacts_root: Path) -> Path:
    return Path(artifacts_root) / "merged_model"


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"pytorch", "safetensors"},
    deps=[lora_checkpoint],
    automation_condition=TRAINING_CONDITION,
    description="Base model with the LoRA adapter merged in: a plain safetensors model with its lineage manifest.",
)
def merged_model(
    context: dg.AssetExecutionContext, artifacts: ArtifactsResource, lake: LakeResource
) -> dg.MaterializeResult:
    try:
        latest = read_latest_run(artifacts.path())
    except FileNotFoundError as error:
        raise dg.Failure(str(error)) from error
    adapter_dir = Path(latest["adapter_dir"])
    manifest = read_manifest(adapter_dir)
    manifest = {**manifest, "adapter_dir": str(adapter_dir), "base_model_dir": latest["base_model_dir"],
                "profile": latest["profile"]}
    result = merge_adapter(Path(latest["base_model_dir"]), adapter_dir, merged_model_dir(artifacts.path()), manifest)
    context.log.info(f"merged {adapter_dir} into {result.merged_dir}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.merged_dir)),
            "profile": latest["profile"],
            "adapter_sha256": result.adapter_sha256,
            "merged_weights_sha256": result.weights_sha256,
            "lineage_chain": dg.MetadataValue.md(chain_markdown(result.merged_dir, lake.path())),
            "lineage": dg.MetadataValue.json(result.manifest),
        },
        data_version=dg.DataVersion(result.weights_sha256[:16]),
    )


@dg.asset_check(
    asset=merged_model,
    blocking=True,
    description=(
        "On fixed prompts (fp32) the merged model's logits equal base+adapter's within fp32 rounding "
        "(atol + rtol x max |logit|, rtol from the model's depth and width), and it picks the same greedy "
        "token at every position where the choice is not a near tie."
    ),
)
def merged_model_matches_adapter(artifacts: ArtifactsResource) -> dg.AssetCheckResult:
    merged_dir = merged_model_dir(artifacts.path())
    manifest = read_manifest(merged_dir)
    report = merge_parity(Path(manifest["base_model_dir"]), Path(manifest["adapter_dir"]), merged_dir)
    return dg.AssetCheckResult(
        passed=report.passed,
        metadata={
            "max_abs_logit_diff": report.max_abs_diff,
            "tolerance": report.tolerance,
            "max_abs_logit": report.max_abs_logit,
            "argmax_agreements": report.argmax_agreements,
            "decisive_positions": report.decisive_positions,
            "positions": report.positions,
        },
    )


TRAINING_ASSETS = [base_model, lora_checkpoint, merged_model]
TRAINING_CHECKS = [merged_model_matches_adapter]
