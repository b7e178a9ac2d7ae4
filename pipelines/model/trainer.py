"""The trainer of a LoRA run: TRL's SFTTrainer with a weighted completion-only loss, and its callbacks.

- Sample weights: each row's `sample_weight` scales its token losses (`WeightedSFTTrainer.compute_loss`);
  evaluation loss stays unweighted, so early stopping tracks the true loss.
- `<eoc>`: its embedding row is trained through peft's `trainable_token_indices`, the rest of the embedding
  matrix stays frozen (`build_peft_config`).
- Crash safety: `CheckpointCompletion` writes a checkpoint's completeness marker once the Trainer has saved
  everything (`pipelines.model.checkpoints` decides what may be resumed).
- Progress: every logged step (loss, step/total, ETA) goes to a `progress` callback as it happens.

The classes are built lazily (`trainer_classes`): `python -m pipelines --help` must not pay for torch/trl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.atomic_files import write_json_atomic
from pipelines.config import TrainConfig
from pipelines.model.checkpoints import COMPLETE_MARKER, CONFIG_NAME
from pipelines.model.training_data import TrainingDatasets
from pipelines.progress import clock_text

# How every progress line starts, so a reader of the run's log can pick them out.
PROGRESS_PREFIX = "training progress"


@dataclass(frozen=True)
class TrainingProgress:
    """One progress report of a running training: sent at every logged step and evaluation."""

    step: int
    total_steps: int
    epoch: float | None
    loss: float | None  # mean training loss since the previous report (weighted, as optimized)
    eval_loss: float | None
    elapsed_s: float  # in this session (a resumed run counts from its restart)
    eta_s: float | None  # from this session's pace; None before its first step

    def describe(self) -> str:
        percent = 100.0 * self.step / self.total_steps if self.total_steps > 0 else 0.0
        parts = [f"{PROGRESS_PREFIX}: step {self.step}/{self.total_steps} ({percent:.0f}%)"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch:.2f}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eval_loss is not None:
            parts.append(f"eval_loss {self.eval_loss:.4f}")
        parts.append(f"elapsed {clock_text(self.elapsed_s)}")
        parts.append(f"eta {clock_text(self.eta_s) if self.eta_s is not None else 'unknown'}")
        return ", ".join(parts)


def shared_prefix_length(input_ids: Any, attention_mask: Any, labels: Any) -> int:
    """Tokens at the start that every row has, unpadded and unlabelled, less one (the suffix pass needs a token)."""
    same = (input_ids == input_ids[:1]).all(0) & (attention_mask == 1).all(0) & (labels == -100).all(0)
    return max(int(same.long().cumprod(0).sum()) - 1, 0)


def completion_token_losses(
    model: Any, inputs: dict[str, Any], labels: Any, completion_logits_only: bool = True, shared_prefix: bool = True
) -> tuple[Any, Any, Any]:
    """(model outputs, cross-entropy of every target token [N], keep [B, T]) for a batch with prompt labels at -100.

    `keep[b, p]` marks the positions whose next token is a target; the losses come in `keep`'s row-major order
    whatever the knobs, and have the same values:
    - completion_logits_only: logits only at `keep` (transformers' boolean `logits_to_keep`), not over the prompt;
    - shared_prefix: the prefix common to all rows runs once (batch 1), its KV cache is repeated over the rows and
      only the suffixes run on top; gradients flow back through the cache into the one prefix pass. Causal
      attention makes the prefix's activations independent of what follows, so this is exact.
    """
    import torch
    import torch.nn.functional as F

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][keep[:, :-1]]
    input_ids, attention_mask = inputs["input_ids"], inputs.get("attention_mask")
    packed = "position_ids" in inputs or attention_mask is None  # padding-free batches: one flattened row
    prefix = (
        shared_prefix_length(input_ids, attention_mask, labels)
        if shared_prefix and not packed and input_ids.size(0) > 1
        else 0
    )
    if prefix > 0:
        from transformers import DynamicCache

        # Under torchrun the Trainer wraps the model in DistributedDataParallel, which has no `config`.
        cache = DynamicCache(config=getattr(model, "module", model).config)
        model(input_ids=input_ids[:1, :prefix], past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(input_ids.size(0))
        positions = torch.arange(prefix, input_ids.size(1), device=input_ids.device)
        positions = positions[None].expand(input_ids.size(0), -1)
        outputs = model(
            input_ids=input_ids[:, prefix:],
            attention_mask=attention_mask,  # the full mask (prefix + suffix), as transformers expects with a cache
            past_key_values=cache,
            position_ids=positions,
            logits_to_keep=keep[:, prefix:],
            use_cache=True,
        )
        logits = outputs.logits
    elif completion_logits_only:
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits
    else:
        outputs = model(**inputs, use_cache=False)
        logits = outputs.logits[keep.to(outputs.logits.device)]
    losses = F.cross_entropy(logits.float(), targets.to(logits.device), reduction="none")
    return outputs, losses, keep


def trainer_classes():
    # Imported lazily: `python -m pipelines --help` must not pay for torch/trl.
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class WeightedCollator(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            weights = torch.tensor([float(e.get("sample_weight", 1.0)) for e in examples], dtype=torch.float32)
            token_weights = [e.get("token_weights") for e in examples]
            batch = super().torch_call(
                [{k: v for k, v in e.items() if k not in ("sample_weight", "token_weights")} for e in examples]
            )
            batch["sample_weight"] = weights
            if all(row is not None for row in token_weights):
                # Right-padded like input_ids and labels; a padding position has no target, so its weight is unused.
                padded = torch.ones(batch["labels"].shape, dtype=torch.float32)
                for i, row in enumerate(token_weights):
                    padded[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
                batch["token_weights"] = padded
            return batch

    class WeightedSFTTrainer(SFTTrainer):
        """SFTTrainer whose training loss weights every sample's tokens by its `sample_weight`."""

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            for column in ("sample_weight", "token_weights"):
                if column not in self._signature_columns:
                    self._signature_columns = [*self._signature_columns, column]

        completion_logits_only = False  # set from TrainConfig in build_trainer
        shared_prefix = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Computed from the logits rather than TRL's fused LM head: with tied embeddings peft wraps
            # lm_head for the trainable <eoc> row, and the fused head would read the unwrapped weight.
            weights = inputs.pop("sample_weight", None)
            token_weights = inputs.pop("token_weights", None)
            labels = inputs.pop("labels")
            outputs, per_token_loss, keep = completion_token_losses(
                model,
                inputs,
                labels,
                completion_logits_only=self.completion_logits_only,
                shared_prefix=self.shared_prefix and not self.args.gradient_checkpointing,
            )
            if weights is not None and model.training:
                row_weights = weights.to(per_token_loss.device, per_token_loss.dtype)[:, None].expand(keep.shape)
                per_token_loss = per_token_loss * row_weights[keep.to(row_weights.device)]
            if token_weights is not None and model.training:
                # Indexed like the targets (labels[:, 1:][keep[:, :-1]]), so each loss meets its own token's weight.
                target_weights = token_weights[:, 1:].to(per_token_loss.device)[keep[:, :-1].to(per_token_loss.device)]
                per_token_loss = per_token_loss * target_weights.to(per_token_loss.dtype)
            num_tokens = per_token_loss.numel() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens, device=per_token_loss.device).clamp(min=1)
            if model.training and self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    class CheckpointCompletion(TrainerCallback):
        """Writes the resolved config, then the completeness marker, into each checkpoint once it is saved."""

        def __init__(self, resolved_config: dict[str, Any]):
            self.resolved_config = resolved_config

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                write_json_atomic(checkpoint / CONFIG_NAME, self.resolved_config)
                write_json_atomic(checkpoint / COMPLETE_MARKER, {"global_step": state.global_step})

    return WeightedCollator, WeightedSFTTrainer, CheckpointCompletion


def progress_report_class():
    # Apart from `trainer_classes`, whose three classes the fault-injection worker wraps
    # (tests/support/workers/train_with_fault.py).
    from transformers import TrainerCallback

    class ProgressReport(TrainerCallback):
        """Hands each logged training step and evaluation to `report` as it happens (rank 0 only).

        The Trainer's own progress bar is off (disable_tqdm): on stdout it would never reach Dagster's event log.
        """

        def __init__(self, report: Callable[[TrainingProgress], None]):
            self.report = report
            self.started = time.monotonic()
            self.first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            # After a resume the state holds the restored step: the ETA uses this session's pace only.
            self.started = time.monotonic()
            self.first_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if not state.is_world_process_zero or ("loss" not in logs and "eval_loss" not in logs):
                return
            elapsed = time.monotonic() - self.started
            done = state.global_step - self.first_step
            remaining = max(state.max_steps - state.global_step, 0)
            self.report(TrainingProgress(
                step=int(state.global_step),
                total_steps=int(state.max_steps),
                epoch=float(state.epoch) if state.epoch is not None else None,
                loss=float(logs["loss"]) if "loss" in logs else None,
                eval_loss=float(logs["eval_loss"]) if "eval_loss" in logs else None,
                elapsed_s=elapsed,
                eta_s=elapsed / done * remaining if done > 0 else None,
            ))

    return ProgressReport


def build_peft_config(config: TrainConfig, eoc_token_id: int | None):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
        bias="none",
        trainable_token_indices=[eoc_token_id] if (config.train_eoc_token and eoc_token_id is not None) else None,
    )


def store_frozen_weights_in_bf16(model: Any) -> None:
    """The frozen weights under every LoRA adapter in bf16, as autocast casts them for every product anyway.

    Called once peft has added the adapters: created over fp32 weights, they start from the same fp32 values as
    without this, so training computes the same numbers (peft would otherwise initialize them in bf16).
    """
    import torch
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            base.weight.data = base.weight.data.to(torch.bfloat16)


def build_trainer(
    config: TrainConfig,
    args: Any,
    model: Any,
    tokenizer: Any,
    datasets: TrainingDatasets,
    eoc_id: int,
    resolved: dict[str, Any],
    output_dir: Path,
    report_progress: Callable[[TrainingProgress], None],
) -> Any:
    """The WeightedSFTTrainer for `args` (an SFTConfig): completion markers, TensorBoard under
    `output_dir`/tensorboard, progress and early stopping; `resolved` is the config written into every checkpoint.
    """
    from transformers import EarlyStoppingCallback
    from transformers.integrations import TensorBoardCallback

    collator_cls, trainer_cls, completion_cls = trainer_classes()
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(Path(output_dir) / "tensorboard")  # else it writes under checkpoints/runs/
    callbacks = [completion_cls(resolved), tensorboard, progress_report_class()(report_progress)]
    if config.evaluates_during_training:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold))
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=datasets.train,
        eval_dataset=datasets.eval,
        processing_class=tokenizer,
        data_collator=collator_cls(pad_token_id=tokenizer.pad_token_id),
        peft_config=build_peft_config(config, eoc_id),
        callbacks=callbacks,
    )
    if args.bf16 and config.bf16_frozen_weights:
        store_frozen_weights_in_bf16(trainer.model)
    trainer.completion_logits_only = config.completion_logits_only
    trainer.shared_prefix = config.shared_prefix
    return trainer
