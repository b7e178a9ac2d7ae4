"""LoRA fine-tuning with TRL's SFTTrainer and peft: `train_lora`, and `python -m pipelines.model.train`.

A run is four steps:
1. the datasets: both splits' rows, tokenized through the one prompt builder (`pipelines.model.training_data`);
2. the SFT config: the Trainer's arguments from the TrainConfig and the resolved device (`build_sft_config`);
3. the trainer: TRL's SFTTrainer with the weighted completion-only loss and its callbacks
   (`pipelines.model.trainer`), resumed from the newest complete checkpoint (`pipelines.model.checkpoints`);
4. the outputs: adapter, resolved config, metrics, loss curve and lineage manifest (`write_outputs`).

Every logged step (loss, step/total, ETA) goes to a `progress` callback as it happens; the entry point
(`pipelines.model.train_entry`) forwards it to Dagster through Pipes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.atomic_files import write_json_atomic
from pipelines.config import TrainConfig
from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
from pipelines.model.checkpoints import CONFIG_NAME, check_resume_compatible, find_resume_checkpoint
from pipelines.model.trainer import TrainingProgress, build_trainer
from pipelines.model.training_data import TrainingDatasets, build_datasets


def resolve_device(config: TrainConfig) -> tuple[str, bool]:
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    bf16 = config.bf16
    if bf16 is None:
        if device == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = config.cpu_bf16 and cpu_has_native_bf16()
    return device, bool(bf16)


def cpu_has_native_bf16() -> bool:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch build without these probes: assume emulated bf16
        return False


@dataclass
class TrainResult:
    adapter_dir: Path
    output_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    loss_curve_png: Path | None


@dataclass(frozen=True)
class TrainingSession:
    """What one call of `trainer.train()` left behind."""

    trainer: Any
    train_output: Any
    wall_time_s: float
    resumed_from: Path | None


Schedule = tuple[str, int | None]  # a Trainer strategy ("no", "epoch", "steps") and its steps


def trainer_schedules(config: TrainConfig) -> tuple[Schedule, Schedule]:
    """The Trainer's evaluation and checkpoint schedules: checkpoints follow the evaluations, except under "end",
    where nothing is evaluated along the way and checkpoints come every `save_steps` (none without it)."""
    if config.evaluates_during_training:
        evaluations = (config.eval_strategy, config.eval_steps if config.eval_strategy == "steps" else None)
        return evaluations, evaluations
    checkpoints = ("steps", config.save_steps) if config.eval_strategy == "end" and config.save_steps else ("no", None)
    return ("no", None), checkpoints


def build_sft_config(config: TrainConfig, checkpoints_dir: Path, device: str, bf16: bool) -> Any:
    """The Trainer's arguments; checkpoints and evaluations follow `eval_strategy`, under `checkpoints_dir`."""
    from trl import SFTConfig

    (eval_strategy, eval_steps), (save_strategy, save_steps) = trainer_schedules(config)
    return SFTConfig(
        output_dir=str(checkpoints_dir),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        eval_strategy=eval_strategy,
        save_strategy=save_strategy,
        eval_steps=eval_steps,
        save_steps=save_steps,
        load_best_model_at_end=config.evaluates_during_training,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",  # TensorBoard is attached by build_trainer with an explicit log dir
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=True,
        shuffle_dataset=False,  # the Trainer's sampler shuffles per epoch, reproducibly on resume
        # Batches of similar lengths waste less compute on padding (sequence lengths vary severalfold).
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        packing=False,
        prediction_loss_only=True,  # eval needs the loss only; gathering full-vocab logits wastes memory
        # Every LoRA and <eoc> parameter takes part in each forward; the unused-parameter scan only costs time.
        ddp_find_unused_parameters=False,
    )


def train_lora(
    config: TrainConfig,
    base_model_dir: Path,
    data: pd.DataFrame,
    output_dir: Path,
    manifest: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on the `train` split of `data`, evaluating on its `eval` split.

    `output_dir` holds checkpoints/, tensorboard/, adapter/ and the loss curve; running again with the
    same `output_dir` resumes from its newest complete checkpoint (written by as many processes as this run).
    `progress` gets each logged step as it happens (default: its one-line description, through `log`).
    """
    import torch
    from transformers import set_seed

    from pipelines.model.model_io import check_model_dir, eoc_token_id, load_causal_lm, load_tokenizer

    log = log or (lambda message: None)
    report_progress = progress or (lambda update: log(update.describe()))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device, bf16 = resolve_device(config)
    set_seed(config.seed)

    check_model_dir(base_model_dir)
    tokenizer = load_tokenizer(base_model_dir)
    # The checked lookup: an unprepared tokenizer maps `<eoc>` to its unknown token (or to nothing), so training
    # would update that row (or none) while every target ends in `<eoc>` spelled out as plain characters.
    eoc_id = eoc_token_id(tokenizer)
    model = load_causal_lm(base_model_dir, dtype=torch.float32)
    model.train()
    datasets = build_datasets(config, data, tokenizer)
    log(datasets.describe())

    args = build_sft_config(config, output_dir / "checkpoints", device, bf16)
    # Saved in every checkpoint; the world size lets a resume tell whether it runs with the processes that wrote it.
    resolved = {**config.to_dict(), "resolved_device": device, "resolved_bf16": bf16,
                "base_model_dir": str(base_model_dir), "eoc_token_id": eoc_id, "world_size": int(args.world_size)}
    trainer = build_trainer(config, args, model, tokenizer, datasets, eoc_id, resolved, output_dir, report_progress)
    resume_from = _resume_point(output_dir / "checkpoints", int(args.world_size), bf16, log)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if config.eval_strategy == "end":
        trainer.evaluate()  # logged into the trainer's history, where training_metrics reads eval losses
    session = TrainingSession(trainer, train_output, time.perf_counter() - started, resume_from)
    return write_outputs(session, datasets, resolved, tokenizer, output_dir, manifest)


def _resume_point(checkpoints_dir: Path, world_size: int, bf16: bool, log: Callable[[str], None]) -> Path | None:
    """The newest complete checkpoint, checked as safe to load and written by a run like this one; None: start."""
    from pipelines.model.model_io import check_model_dir

    resume_from = find_resume_checkpoint(checkpoints_dir)
    if resume_from is not None:
        check_model_dir(resume_from, allow_trainer_state=True)
        check_resume_compatible(resume_from, world_size, bf16)
        log(f"resuming from {resume_from}")
    return resume_from


def write_outputs(
    session: TrainingSession,
    datasets: TrainingDatasets,
    resolved: dict[str, Any],
    tokenizer: Any,
    output_dir: Path,
    manifest: dict[str, Any] | None,
) -> TrainResult:
    """Rank 0 writes the adapter with its resolved config, the loss curve and the lineage manifest."""
    trainer = session.trainer
    adapter_dir = output_dir / "adapter"
    if not trainer.is_world_process_zero():
        # Under torchrun the other DDP ranks hold the same weights: rank 0 alone writes the adapter and manifest.
        metrics = {"global_step": int(trainer.state.global_step)}
        return TrainResult(adapter_dir, output_dir, metrics, manifest or {}, None)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    write_json_atomic(adapter_dir / CONFIG_NAME, resolved)

    metrics = training_metrics(session, datasets, resolved, adapter_dir)
    loss_png = plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png")
    full_manifest = {**(manifest or {}),
                     "training_config": {**(manifest or {}).get("training_config", {}), **resolved},
                     "training_metrics": metrics,
                     "data_used": datasets.data_used(),
                     "adapter_sha256": metrics["adapter_sha256"]}
    write_json_atomic(adapter_dir / MANIFEST_NAME, full_manifest)
    write_json_atomic(output_dir / MANIFEST_NAME, full_manifest)
    return TrainResult(adapter_dir, output_dir, metrics, full_manifest, loss_png)


def training_metrics(
    session: TrainingSession, datasets: TrainingDatasets, resolved: dict[str, Any], adapter_dir: Path
) -> dict[str, Any]:
    state = session.trainer.state
    # The best eval loss is already known from the evaluations during training; another pass would cost
    # minutes on CPU for the same number.
    eval_losses = [entry["eval_loss"] for entry in state.log_history if "eval_loss" in entry]
    tokens_seen = int(state.num_input_tokens_seen or 0)
    train_runtime = float(session.train_output.metrics.get("train_runtime", session.wall_time_s))
    return {
        "device": resolved["resolved_device"],
        "bf16": resolved["resolved_bf16"],
        "global_step": int(state.global_step),
        "epochs_completed": float(state.epoch or 0.0),
        "train_loss": float(session.train_output.training_loss),
        "eval_loss": float(state.best_metric if state.best_metric is not None
                           else (eval_losses[-1] if eval_losses else math.nan)),
        "eval_losses": eval_losses,
        "best_checkpoint": state.best_model_checkpoint,
        "resumed_from": str(session.resumed_from) if session.resumed_from else None,
        "train_rows": len(datasets.train),
        "eval_rows": len(datasets.eval),
        "dropped_over_max_length": datasets.dropped_train + datasets.dropped_eval,
        "tokens_seen": tokens_seen,
        "train_wall_time_s": round(session.wall_time_s, 2),
        # Tokens of this session only divided by its runtime; a resumed run counts the restored total.
        "tokens_per_s": round(tokens_seen / train_runtime, 2) if train_runtime > 0 else None,
        "trainable_parameters": int(sum(p.numel() for p in session.trainer.model.parameters() if p.requires_grad)),
        "adapter_sha256": sha256_weights(adapter_dir),
    }


def plot_loss_curve(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss (weighted)")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Train from the command line: `python -m pipelines.model.train --profile smoke`."""
    from pipelines.config import artifacts_root, lake_root, load_params
    from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path
    from pipelines.model.base_model import resolve_base_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    name, config = load_params(args.params).training.resolve(args.profile)
    base = resolve_base_model(config.base_model, artifacts_root())
    data = read_table(table_path(lake_root(), AUGMENTED_TABLE))
    output_dir = Path(args.output_dir or artifacts_root() / "lora_runs" / f"{name}-manual")
    result = train_lora(config, Path(base.path), data, output_dir, log=print)
    print(json.dumps(result.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
