"""The training half of the graph: base_model -> lora_checkpoint -> merged_model (+ the merge-parity gate).

Thin wrappers over `pipelines.model.base_model`, `pipelines.model.train` and `pipelines.model.merge`. Artifacts live under
the artifacts root:
- base_models/<name>-<source hash>/           prepared base model (safetensors, with <eoc>)
- lora_checkpoint/<profile>-<fingerprint>/     checkpoints/, tensorboard/, adapter/, loss_curve.png, lineage.json
- lora_checkpoint/<profile>-<fingerprint>-retrain-<run id>/  a forced retrain of the same run
- lora_checkpoint/latest.json                  which run the last materialization produced
- merged_model/                                merged safetensors model + tokenizer + lineage.json

The fingerprint is the run's whole identity (config, data, base weights, training code, world size). An ordinary
materialization reuses the newest finished run of its identity, so a forced retrain stays the current one.
"""

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg

from assets.automation import TRAINING_CONDITION
from assets.executors import GPU_STEP_TAGS
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_launch import launch_training, resolve_nproc
from pipelines.model.base_model import BaseModelInfo, resolve_base_model
from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path, table_version
from pipelines.lineage.audit import chain_markdown
from pipelines.lineage.manifest import MANIFEST_NAME, build_manifest, data_lineage, write_json_atomic
from pipelines.model.merge import merge_adapter, merge_parity
from pipelines.model.prompts import system_prompt
from pipelines.model.train import TrainConfig, resolve_profile, run_fingerprint, training_code_hash

TRAINING_GROUP = "training"
LATEST_RUN_FILE = "latest.json"
RUN_COMPLETE = "RUN_COMPLETE.json"


class TrainingRunConfig(dg.Config):
    """Run config of the training assets. Unset profile: $SOP2CMD_PROFILE, else params.yaml training.profile."""

    profile: str | None = None
    force_retrain: bool = False
    # Training processes (torchrun --nproc-per-node): an integer, or "auto" = visible GPUs, else 1.
    nproc_per_node: str = "auto"


def _profile(params: ParamsResource, config: TrainingRunConfig) -> tuple[str, TrainConfig]:
    return resolve_profile(params.load().sections.get("training"), config.profile)


def _base_info(artifacts: ArtifactsResource, train_config: TrainConfig) -> BaseModelInfo:
    return resolve_base_model(train_config.base_model, artifacts.path())


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"pytorch", "safetensors"},
    description="The configured base model, converted once to safetensors with the <eoc> token added.",
)
def base_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    artifacts: ArtifactsResource,
    params: ParamsResource,
) -> dg.MaterializeResult:
    profile, train_config = _profile(params, config)
    info = _base_info(artifacts, train_config)
    context.log.info(f"profile {profile}: base model {info.source} at {info.path}")
    return dg.MaterializeResult(
        metadata={
            "profile": profile,
            "source": info.source,
            "path": dg.MetadataValue.path(info.path),
            "weights_sha256": info.weights_sha256,
            "source_sha256": info.source_hash,
            "parameter_count": info.parameter_count,
            "eoc_token_id": info.eoc_token_id,
            "stop_token_ids": dg.MetadataValue.json(info.stop_token_ids),
            "chat_template": dg.MetadataValue.md(f"```jinja\n{info.chat_template}\n```"),
        },
        data_version=dg.DataVersion(info.weights_sha256[:16]),
    )


def _runs_root(artifacts: ArtifactsResource) -> Path:
    return artifacts.path() / "lora_checkpoint"


def _completed_at_ns(run_dir: Path) -> int:
    marker = run_dir / RUN_COMPLETE
    recorded = json.loads(marker.read_text(encoding="utf-8")).get("completed_at_ns")
    # Markers written before the time was recorded: the file's own write time (written once, atomically).
    return int(recorded) if recorded is not None else marker.stat().st_mtime_ns


def newest_complete_run(run_dir: Path) -> Path | None:
    """The most recently finished of `run_dir` and its forced retrains (`<run_dir>-retrain-*`), if any finished."""
    if not run_dir.parent.is_dir():
        return None
    retrain_prefix = f"{run_dir.name}-retrain-"
    candidates = [run_dir, *(p for p in run_dir.parent.iterdir() if p.name.startswith(retrain_prefix))]
    finished = [p for p in candidates if (p / RUN_COMPLETE).is_file()]
    return max(finished, key=_completed_at_ns, default=None)


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
    settings = params.load()
    profile, train_config = _profile(params, config)
    info = _base_info(artifacts, train_config)
    data_path = table_path(lake.path(), AUGMENTED_TABLE)
    version = table_version(data_path)
    if version is None:
        raise dg.Failure(f"the augmented training set does not exist yet at {data_path}; materialize it first")
    data = read_table(data_path, version=version)
    lineage = data_lineage(data, AUGMENTED_TABLE, version, Path(settings.data.raw_dir))
    # The resolved count, not "auto": the same run on another number of GPUs has another global batch.
    world_size = resolve_nproc(config.nproc_per_node)
    code_hash = training_code_hash()
    fingerprint = run_fingerprint(train_config, lineage.content_hash, info.weights_sha256, code_hash, world_size)
    run_dir = _runs_root(artifacts) / f"{profile}-{fingerprint}"
    # The newest, not the first: after a forced retrain, that retrain is what this identity means now.
    finished = None if config.force_retrain else newest_complete_run(run_dir)

    if finished is not None:
        run_dir = finished
        context.log.info(f"{run_dir} already holds this exact run (same data, config, base, code and world size); "
                         "reusing it")
        manifest = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        metrics = {**manifest["training_metrics"], "reused": True}
        loss_png = run_dir / "loss_curve.png"
    else:
        if config.force_retrain and run_dir.exists():
            run_dir = run_dir.with_name(f"{run_dir.name}-retrain-{context.run_id[:8]}")
        manifest = build_manifest(
            kind="lora_checkpoint",
            data=lineage,
            training_config={"profile": profile, **train_config.to_dict(), "world_size": world_size,
                             "training_code_sha256": code_hash},
            base_model={k: v for k, v in info.to_dict().items() if k != "chat_template"},
            # What every training prompt began with: the merged and deployed model's chat template carries it.
            extra={"system_prompt": system_prompt()},
        )
        result = launch_training(context, train_config, Path(info.path), data_path, version, run_dir,
                                 manifest=manifest, nproc_per_node=world_size)
        manifest, metrics, loss_png = result.manifest, {**result.metrics, "reused": False}, result.loss_curve_png
        write_json_atomic(run_dir / RUN_COMPLETE, {"adapter_sha256": metrics["adapter_sha256"],
                                                   "completed_at_ns": time.time_ns()})

    write_json_atomic(_runs_root(artifacts) / LATEST_RUN_FILE, {
        "profile": profile,
        "fingerprint": fingerprint,
        "run_dir": str(run_dir.resolve()),
        "adapter_dir": str((run_dir / "adapter").resolve()),
        "base_model_dir": info.path,
        "adapter_sha256": metrics["adapter_sha256"],
    })
    metadata: dict[str, Any] = {
        "profile": profile,
        "run_dir": dg.MetadataValue.path(str(run_dir)),
        "run_fingerprint": fingerprint,
        "world_size": world_size,
        "training_code_sha256": code_hash,
        "adapter_dir": dg.MetadataValue.path(str(run_dir / "adapter")),
        "tensorboard_dir": dg.MetadataValue.path(str(run_dir / "tensorboard")),
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
        "augmented_delta_version": version,
        "augmented_content_hash": lineage.content_hash,
        "lineage": dg.MetadataValue.json(manifest),
    }
    if loss_png is not None and Path(loss_png).is_file():
        metadata["loss_curve"] = dg.MetadataValue.path(str(loss_png))
        metadata["loss_curve_preview"] = dg.MetadataValue.md(_png_markdown(Path(loss_png)))
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(metrics["adapter_sha256"][:16]))


def _png_markdown(path: Path) -> str:
    import base64

    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![loss curve](data:image/png;base64,{encoded})"


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
    latest_file = _runs_root(artifacts) / LATEST_RUN_FILE
    if not latest_file.is_file():
        raise dg.Failure(f"no trained adapter recorded at {latest_file}; materialize lora_checkpoint first")
    latest = json.loads(latest_file.read_text(encoding="utf-8"))
    adapter_dir = Path(latest["adapter_dir"])
    manifest = json.loads((adapter_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
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
    manifest = json.loads((merged_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
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
