"""LoRA fine-tuning with TRL's SFTTrainer and peft.

- Completion-only loss: every row is tokenized here through `pipelines.model.prompts` (the one prompt builder),
  prompt positions get label -100, so TRL uses our ids as they are and the model is trained on exactly
  the prompt ids evaluation and `predict` build.
- Sample weights: the augmented set's long-tail `weight` scales each sample's token losses
  (`WeightedSFTTrainer.compute_loss`); weights are normalized to mean 1 so they shift emphasis,
  not the learning rate. Evaluation loss stays unweighted, so early stopping tracks the true loss.
- `<eoc>`: its embedding row is trained through peft's `trainable_token_indices`, the rest of the
  embedding matrix stays frozen.
- Crash safety: a checkpoint counts only once its completeness marker exists (written after the
  Trainer has saved everything); an unmarked checkpoint is renamed aside and training resumes from the
  newest complete one with optimizer, scheduler, RNG and step restored by the Trainer. A checkpoint written by
  another number of processes is refused: the global batch, the data order and the schedule would all differ.
- Identity: `run_fingerprint` covers config, data, base weights, the training code and the world size, so a run
  is reused or resumed only by the run that would have produced it.
- Progress: every logged step (loss, step/total, ETA) goes to a `progress` callback as it happens; the entry
  point forwards it to Dagster through Pipes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights, write_json_atomic
from pipelines.progress import clock_text
from pipelines.model.prompts import build_completion_ids, build_prompt_ids

COMPLETE_MARKER = "COMPLETE.json"
CONFIG_NAME = "train_config.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
PROFILE_ENV = "SOP2CMD_PROFILE"


@dataclass
class TrainConfig:
    base_model: str = "smollm2-gguf"
    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.05  # < 1: fraction of the total steps
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    max_length: int = 512
    # Subsets keep the CPU profile inside its time budget; None = the whole split.
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_eoc_token: bool = True
    # Loss weight per row from the augmented set's long-tail `weight` (emphasis on rows the model sees anyway).
    use_sample_weights: bool = True
    # "uniform" or "weighted": how max_train_samples rows are drawn from the train split. "weighted" draws
    # rows with probability proportional to `weight`, so rare commands are *seen* more often; a loss weight on
    # a row drawn once does little for a command the subset barely contains.
    row_sampling: str = "uniform"
    # Loss weight of the tokens where the plan is decided: each command's name, and whether the plan goes on
    # after a command or ends. Every other target token (JSON syntax, values copied from the canonical text)
    # is near-certain after a few steps, yet nearly all targets are such tokens; 1.0 weighs every token alike.
    decision_token_weight: float = 1.0
    # "epoch", "steps" (then eval_steps) or "no"; checkpoints are saved on the same schedule.
    eval_strategy: str = "epoch"
    eval_steps: int | None = None
    early_stopping_patience: int = 2
    early_stopping_threshold: float = 0.0
    save_total_limit: int = 3
    logging_steps: int = 5
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool | None = None  # None: bf16 on cuda when supported; on cpu see cpu_bf16
    # bf16 autocast on a CPU with native bf16 units (AVX512-BF16 or AMX), fp32 master weights: about twice the
    # training throughput there (docs/benchmarks.md). CPUs without them stay in fp32, where bf16 would be emulated.
    cpu_bf16: bool = False
    dataloader_num_workers: int = 0
    # Throughput knobs; each gives the same loss (bench/train_throughput.py, tests/pipelines/model/test_train_loss_knobs.py).
    # completion_logits_only: the lm_head and the cross-entropy run only where a label exists, not over the prompt.
    completion_logits_only: bool = True
    # shared_prefix: the prompt prefix every row of a micro-batch shares (the system prompt) runs once per micro-batch
    # and its KV cache is repeated over the rows; off under gradient checkpointing (which disables the cache).
    shared_prefix: bool = True
    group_by_length: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"training config: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_profile(training_section: dict[str, Any] | None, profile: str | None = None) -> tuple[str, TrainConfig]:
    """Pick the training profile: explicit argument, then $SOP2CMD_PROFILE, then `training.profile`."""
    section = training_section or {}
    profiles = section.get("profiles") or {}
    name = profile or os.environ.get(PROFILE_ENV) or section.get("profile") or "default"
    if name not in profiles:
        raise ValueError(f"training profile {name!r} not in params.yaml training.profiles ({sorted(profiles)})")
    return name, TrainConfig.from_dict(dict(profiles[name] or {}))


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


# --- data -------------------------------------------------------------------------------------------


ROW_SAMPLING = ("uniform", "weighted")


def select_rows(df: pd.DataFrame, split: str, limit: int | None, seed: int, sampling: str = "uniform") -> pd.DataFrame:
    """At most `limit` rows of `split`, drawn without replacement (uniformly, or in proportion to `weight`)."""
    if sampling not in ROW_SAMPLING:
        raise ValueError(f"row_sampling must be one of {ROW_SAMPLING}, got {sampling!r}")
    rows = df[df["split"] == split]
    if limit is not None and len(rows) > limit:
        if sampling == "weighted":
            # Efraimidis-Spirakis: the `limit` largest keys u**(1/w) are a weighted draw without replacement
            # (pandas refuses one when a few weights dominate, which is the long tail's whole point).
            import numpy as np

            uniform = np.random.default_rng(seed).random(len(rows))
            keys = np.log(uniform) / rows["weight"].to_numpy(dtype=float)
            rows = rows.iloc[np.argsort(-keys, kind="stable")[:limit]]
        else:
            rows = rows.sample(n=limit, random_state=seed)
    return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)


# Where a canonical JSON plan is decided: the first character of a command name, and the character after a
# command's closing braces ("," goes on to another command, "]" ends the plan).
_COMMAND_NAME_START = re.compile(r'"func_name": "')
_COMMAND_END = re.compile(r"\}\}(?=, \{|\]\})")


def decision_token_flags(tokenizer: Any, completion: str) -> list[bool]:
    """Per token of `build_completion_ids(completion)`: whether it holds a decision character of the plan."""
    encoded = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != build_completion_ids(tokenizer, completion):
        raise ValueError("the tokenizer's offsets do not follow the completion ids the prompt builder makes")
    decisions = sorted(
        {match.end() for match in _COMMAND_NAME_START.finditer(completion)}
        | {match.end() for match in _COMMAND_END.finditer(completion)}
    )
    return [any(start <= char < end for char in decisions) for start, end in encoded["offset_mapping"]]


def tokenize_rows(
    rows: pd.DataFrame, tokenizer: Any, max_length: int, normalize_weights: bool = True, decision_token_weight: float = 1.0
):
    """Rows -> a datasets.Dataset of input_ids / labels (prompt masked) / sample_weight / token_weights.

    A row longer than `max_length` is dropped rather than truncated: a cut target would teach the model
    to stop without `<eoc>`. `token_weights` (one per input id) is `decision_token_weight` on the completion's
    decision tokens (`decision_token_flags`) and 1 elsewhere.
    """
    from datasets import Dataset

    records = []
    for row in rows.itertuples(index=False):
        prompt_ids = build_prompt_ids(tokenizer, row.prompt)
        completion_ids = build_completion_ids(tokenizer, row.completion)
        if len(prompt_ids) + len(completion_ids) > max_length:
            continue
        if decision_token_weight == 1.0:
            completion_weights = [1.0] * len(completion_ids)
        else:
            flags = decision_token_flags(tokenizer, row.completion)
            completion_weights = [decision_token_weight if flag else 1.0 for flag in flags]
        records.append({
            "input_ids": prompt_ids + completion_ids,
            "labels": [-100] * len(prompt_ids) + completion_ids,
            "sample_weight": float(getattr(row, "weight", 1.0)),
            "token_weights": [1.0] * len(prompt_ids) + completion_weights,
            "sample_id": str(row.sample_id),
        })
    if not records:
        raise ValueError(f"no training rows fit max_length={max_length}")
    if normalize_weights:
        mean = sum(r["sample_weight"] for r in records) / len(records)
        for record in records:
            record["sample_weight"] = record["sample_weight"] / mean if mean > 0 else 1.0
    return Dataset.from_list(records), len(rows) - len(records)


# --- checkpoints ------------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def find_resume_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Newest complete checkpoint; every incomplete one is renamed aside (kept for inspection, never used)."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in checkpoints_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
        key=lambda p: checkpoint_step(p),
    )
    complete = []
    for path in candidates:
        if is_complete_checkpoint(path):
            complete.append(path)
        else:
            aside = path.with_name(f"incomplete-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            os.replace(path, aside)
    return complete[-1] if complete else None


def check_resume_compatible(checkpoint: Path, world_size: int, bf16: bool | None = None) -> None:
    """Refuse a checkpoint written by another number of processes, or with another bf16 resolution.

    The Trainer would restore its step and optimizer anyway, but with another world size the global batch, the
    sampler's shards and the steps per epoch all change, so the resumed run is neither the old one nor a new one.
    """
    saved = json.loads((Path(checkpoint) / CONFIG_NAME).read_text(encoding="utf-8"))
    recorded = saved.get("world_size")
    if recorded is not None and int(recorded) != world_size:
        raise ValueError(
            f"cannot resume {checkpoint}: it was written by {recorded} training processes and this run has "
            f"{world_size}; train with {recorded} processes again, or into another output directory"
        )
    # cpu_bf16 resolves per machine: a run begun with bf16 autocast must not go on in fp32 (or back) elsewhere.
    if bf16 is not None and "resolved_bf16" in saved and bool(saved["resolved_bf16"]) != bf16:
        raise ValueError(
            f"cannot resume {checkpoint}: it was trained with bf16={saved['resolved_bf16']} and this machine "
            f"resolves bf16={bf16} (cpu_bf16 needs native bf16); resume on a machine like the first, or train anew"
        )


# The sources whose bytes decide what a run trains: the loop and its loss, the entry point that feeds it, the
# prompt builder that makes every training id, the catalog its system prompt is written from, and the loader
# of the weights. Relative to the package root.
TRAINING_CODE_FILES: tuple[str, ...] = (
    "pipelines/model/train.py",
    "pipelines/model/train_entry.py",
    "pipelines/model/prompts.py",
    "data_contracts/command_catalog.yaml",
    "pipelines/model/model_io.py",
)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def training_code_hash(root: Path | None = None, files: tuple[str, ...] = TRAINING_CODE_FILES) -> str:
    """sha256 over the training sources (name and bytes of each) under `root` (default: this checkout or install)."""
    root = Path(root) if root is not None else _PACKAGE_ROOT
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def run_fingerprint(
    config: TrainConfig, data_hash: str, base_hash: str, code_hash: str | None = None, world_size: int = 1
) -> str:
    """Identity of a training run: a checkpoint is only resumed, and a finished run only reused, by the run that
    would have produced it. That includes the training code (None: this checkout's, `training_code_hash()`) and the
    number of processes, which sets the global batch and so every step.
    """
    payload = json.dumps({
        "config": config.to_dict(),
        "data": data_hash,
        "base": base_hash,
        "code": code_hash if code_hash is not None else training_code_hash(),
        "world_size": int(world_size),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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


# --- trainer ----------------------------------------------------------------------------------------


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
        positions = torch.arange(prefix, input_ids.size(1), device=input_ids.device)[None].expand(input_ids.size(0), -1)
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


def _trainer_classes():
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

        completion_logits_only = False  # set from TrainConfig in train_lora
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


def _progress_report_class():
    # Apart from `_trainer_classes`, whose three classes other code wraps (tests/reliability's fault injection).
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


@dataclass
class TrainResult:
    adapter_dir: Path
    output_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    loss_curve_png: Path | None


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
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.integrations import TensorBoardCallback
    from trl import SFTConfig

    from pipelines.model.model_io import check_model_dir, eoc_token_id, load_causal_lm, load_tokenizer

    log = log or (lambda message: None)
    report_progress = progress or (lambda update: log(update.describe()))
    output_dir = Path(output_dir)
    checkpoints_dir = output_dir / "checkpoints"
    adapter_dir = output_dir / "adapter"
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

    train_rows = select_rows(data, "train", config.max_train_samples, config.seed, config.row_sampling)
    eval_rows = select_rows(data, "eval", config.max_eval_samples, config.seed)
    train_dataset, dropped_train = tokenize_rows(
        train_rows, tokenizer, config.max_length, config.use_sample_weights, config.decision_token_weight
    )
    eval_dataset, dropped_eval = tokenize_rows(eval_rows, tokenizer, config.max_length, normalize_weights=False)
    if not config.use_sample_weights:
        train_dataset = train_dataset.map(lambda _: {"sample_weight": 1.0})
    log(f"train rows {len(train_dataset)} (dropped {dropped_train} over max_length), eval rows {len(eval_dataset)}")

    resolved = {**config.to_dict(), "resolved_device": device, "resolved_bf16": bf16,
                "base_model_dir": str(base_model_dir), "eoc_token_id": eoc_id}
    steps_strategy = config.eval_strategy == "steps"
    evaluating = config.eval_strategy != "no"
    args = SFTConfig(
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
        eval_strategy=config.eval_strategy,
        save_strategy=config.eval_strategy,
        eval_steps=config.eval_steps if steps_strategy else None,
        save_steps=config.eval_steps if steps_strategy else None,
        load_best_model_at_end=evaluating,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",  # TensorBoard is attached below with an explicit log dir
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=True,
        shuffle_dataset=False,  # the Trainer's sampler shuffles per epoch, reproducibly on resume
        # Batches of similar lengths waste less compute on padding (sequences vary 250-900 tokens).
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        packing=False,
        prediction_loss_only=True,  # eval needs the loss only; gathering full-vocab logits wastes memory
        # Every LoRA and <eoc> parameter takes part in each forward; the unused-parameter scan only costs time.
        ddp_find_unused_parameters=False,
    )
    # Saved in every checkpoint, so a resume can tell whether it runs with the processes that wrote it.
    resolved["world_size"] = int(args.world_size)
    collator_cls, trainer_cls, completion_cls = _trainer_classes()
    progress_cls = _progress_report_class()
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(output_dir / "tensorboard")  # else it writes under checkpoints/runs/
    callbacks = [completion_cls(resolved), tensorboard, progress_cls(report_progress)]
    if evaluating:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold))
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=collator_cls(pad_token_id=tokenizer.pad_token_id),
        peft_config=build_peft_config(config, eoc_id),
        callbacks=callbacks,
    )
    trainer.completion_logits_only = config.completion_logits_only
    trainer.shared_prefix = config.shared_prefix
    resume_from = find_resume_checkpoint(checkpoints_dir)
    if resume_from is not None:
        check_model_dir(resume_from, allow_trainer_state=True)
        check_resume_compatible(resume_from, int(args.world_size), bf16)
        log(f"resuming from {resume_from}")
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall_time = time.perf_counter() - started

    # The best eval loss is already known from the per-epoch evaluations; another pass would cost
    # minutes on CPU for the same number.
    eval_losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    if not trainer.is_world_process_zero():
        # Under torchrun the other DDP ranks hold the same weights: rank 0 alone writes the adapter and manifest.
        return TrainResult(adapter_dir, output_dir, {"global_step": int(trainer.state.global_step)}, manifest or {}, None)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    write_json_atomic(adapter_dir / CONFIG_NAME, resolved)

    tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
    train_runtime = float(train_output.metrics.get("train_runtime", wall_time))
    metrics = {
        "device": device,
        "bf16": bf16,
        "global_step": int(trainer.state.global_step),
        "epochs_completed": float(trainer.state.epoch or 0.0),
        "train_loss": float(train_output.training_loss),
        "eval_loss": float(trainer.state.best_metric if trainer.state.best_metric is not None
                           else (eval_losses[-1] if eval_losses else math.nan)),
        "eval_losses": eval_losses,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "resumed_from": str(resume_from) if resume_from else None,
        "train_rows": len(train_dataset),
        "eval_rows": len(eval_dataset),
        "dropped_over_max_length": dropped_train + dropped_eval,
        "tokens_seen": tokens_seen,
        "train_wall_time_s": round(wall_time, 2),
        # Tokens of this session only divided by its runtime; a resumed run counts the restored total.
        "tokens_per_s": round(tokens_seen / train_runtime, 2) if train_runtime > 0 else None,
        "trainable_parameters": int(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)),
        "adapter_sha256": sha256_weights(adapter_dir),
    }
    loss_png = plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png")
    full_manifest = {**(manifest or {}),
                     "training_config": {**(manifest or {}).get("training_config", {}), **resolved},
                     "training_metrics": metrics,
                     # What this run really saw: profiles may train on a subset of the split.
                     "data_used": {
                         "train_source_index": _used_sources(train_rows, train_dataset["sample_id"]),
                         "eval_source_index": _used_sources(eval_rows, eval_dataset["sample_id"]),
                         "train_sample_ids": sorted(train_dataset["sample_id"]),
                         "eval_sample_ids": sorted(eval_dataset["sample_id"]),
                     },
                     "adapter_sha256": metrics["adapter_sha256"]}
    write_json_atomic(adapter_dir / MANIFEST_NAME, full_manifest)
    write_json_atomic(output_dir / MANIFEST_NAME, full_manifest)
    return TrainResult(adapter_dir, output_dir, metrics, full_manifest, loss_png)


def _used_sources(rows: pd.DataFrame, sample_ids: list[str]) -> list[str]:
    used = rows[rows["sample_id"].astype(str).isin(set(sample_ids))]
    return sorted(set(used["source_index"].astype(str)))


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
    from pipelines.model.base_model import resolve_base_model
    from pipelines.config import artifacts_root, lake_root, load_params
    from pipelines.data.lake import read_table, table_path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    name, config = resolve_profile(params.sections.get("training"), args.profile)
    base = resolve_base_model(config.base_model, artifacts_root())
    data = read_table(table_path(lake_root(), "augmented_training_set"))
    output_dir = Path(args.output_dir or artifacts_root() / "lora_runs" / f"{name}-manual")
    result = train_lora(config, Path(base.path), data, output_dir, log=print)
    print(json.dumps(result.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
