"""Training throughput: the unoptimized baseline configuration against the project's optimized one, back to back.

CPU mode (default) trains SmolLM2-135M-Instruct with LoRA through the project's own
`pipelines.model.train.train_lora` for both configurations, on the same rows of the augmented set, for the same
number of optimizer steps over the same samples (one epoch of `steps x 16` rows, every row within the
baseline's max_length of 512):

- baseline, named "seed" in result keys and worker names (the original project's configuration): per-device
  batch 4 x gradient accumulation 4, gradient checkpointing, padded batches in random order, logits (and the
  cross-entropy) over every position, prompt positions masked (completion-only loss);
- optimized: the throughput knobs of the `training.profiles.<profile>` section of params.yaml and TrainConfig's
  defaults (by default the `default` profile: what the project ships): no gradient checkpointing,
  length-grouped micro-batches, logits only at target positions, the shared system-prompt prefix run once per
  micro-batch (`pipelines.model.trainer.completion_token_losses`), with gradient accumulation set so that an
  optimizer step still sees 16 samples.

Everything else (learning rate, LoRA, random seed, rows) is shared; warm-up is off and the schedule constant,
so a handful of steps trains at the configured rate. Each run is a fresh worker process (exact peak RSS); runs
alternate baseline/optimized and swap order every repeat, so drift in the machine's load hits both sides.

Figures per configuration (medians over repeats): real tokens/s (non-padding tokens of the rows trained on /
training wall time), real tokens per CPU-second (much less sensitive to other processes on a shared machine),
peak RSS (CPU) or torch.cuda.max_memory_allocated (GPU), mean training loss, eval loss on the same eval rows.

GPU mode (`--gpu`, `bench/gpu_train_throughput.py`) builds random-init Qwen3 architectures (no download), trains
bf16 LoRA on sequences with the corpus's lengths and reports tokens/s, MFU against `--peak-tflops` and peak
memory. `--gpu --arch tiny --device cpu --dtype float32` runs the same code path on a CPU in seconds.

    .venv/bin/python bench/train_throughput.py --steps 2 --repeats 3 --out bench/results/train_throughput.json
    .venv/bin/python bench/train_throughput.py --gpu --arch qwen3-4b --peak-tflops 989
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    Stopwatch,
    default_artifacts,
    default_lake,
    emit_worker_result,
    ensure_augmented_table,
    load_average,
    log,
    machine_info,
    peak_rss_mib,
    run_worker,
    summarize,
    time_training_steps,
    write_json,
)
from bench.gpu_train_throughput import QWEN3_ARCHS, gpu_benchmark  # noqa: E402

SAMPLES_PER_STEP = 16  # the baseline's 4 x 4
BASELINE_MAX_LENGTH = 512
BASELINE_KNOBS: dict[str, Any] = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "gradient_checkpointing": True,
    "group_by_length": False,
    "completion_logits_only": False,
    "shared_prefix": False,
}
# Knobs that change speed, not what is learned; the optimized side takes them from the profile.
THROUGHPUT_KNOBS = tuple(BASELINE_KNOBS)
# Shared by both sides so they train on the same rows with the same schedule.
COMMON_OVERRIDES: dict[str, Any] = {
    "max_length": BASELINE_MAX_LENGTH,
    "num_train_epochs": 1.0,
    "max_steps": -1,
    "max_train_samples": None,
    "max_eval_samples": None,
    "eval_strategy": "no",
    "warmup_steps": 0,
    "lr_scheduler_type": "constant",
    "logging_steps": 1,
    "dataloader_num_workers": 0,
}


# --- CPU mode: baseline vs optimized through pipelines.model.train -------------------------------------------


def train_config_fields() -> set[str]:
    from pipelines.config import TrainConfig

    return {f.name for f in fields(TrainConfig)}


def build_configs(profile_values: dict[str, Any], device: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(baseline, optimized, knobs TrainConfig does not have yet) as TrainConfig keyword dicts."""
    known = train_config_fields()
    base = {**profile_values, **COMMON_OVERRIDES, "device": device}
    baseline = {**base, **BASELINE_KNOBS}
    optimized = dict(base)
    batch = int(optimized.get("per_device_train_batch_size", SAMPLES_PER_STEP))
    if SAMPLES_PER_STEP % batch:
        raise ValueError(
            f"per_device_train_batch_size {batch} must divide {SAMPLES_PER_STEP} (the baseline's samples per step)"
        )
    optimized["gradient_accumulation_steps"] = SAMPLES_PER_STEP // batch
    missing = sorted(k for k in THROUGHPUT_KNOBS if k not in known)
    baseline = {k: v for k, v in baseline.items() if k in known}
    optimized = {k: v for k, v in optimized.items() if k in known}
    return baseline, optimized, missing


def select_benchmark_rows(
    table: Any, tokenizer: Any, n_train: int, n_eval: int, seed: int
) -> tuple[Any, dict[str, int]]:
    """`n_train` train and `n_eval` eval rows that fit the baseline's max_length, and their real token counts."""
    import pandas as pd

    from pipelines.model.prompts import build_completion_ids, build_prompt_ids

    chosen, tokens = [], {"train": 0, "eval": 0, "train_completion": 0}
    for split, wanted in (("train", n_train), ("eval", n_eval)):
        rows = table[table["split"] == split].sort_values("sample_id", kind="stable").reset_index(drop=True)
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        taken = []
        for index in order:
            row = rows.iloc[index]
            prompt = len(build_prompt_ids(tokenizer, row["prompt"]))
            completion = len(build_completion_ids(tokenizer, row["completion"]))
            if prompt + completion > BASELINE_MAX_LENGTH:
                continue
            taken.append(index)
            tokens[split] += prompt + completion
            if split == "train":
                tokens["train_completion"] += completion
            if len(taken) == wanted:
                break
        if len(taken) < wanted:
            raise ValueError(
                f"only {len(taken)} {split} rows fit max_length {BASELINE_MAX_LENGTH}; asked for {wanted}"
            )
        chosen.append(rows.iloc[taken])
    return pd.concat(chosen, ignore_index=True), tokens


def _timed_trainer_train() -> dict[str, float]:
    """Wrap transformers.Trainer.train to record the wall and CPU seconds of the outermost call."""
    from transformers import Trainer

    record: dict[str, float] = {}
    original = Trainer.train
    depth = {"n": 0}

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth["n"] += 1
        try:
            if depth["n"] > 1:
                return original(self, *args, **kwargs)
            with Stopwatch() as watch:
                result = original(self, *args, **kwargs)
            record["wall_s"], record["cpu_s"] = watch.wall_s, watch.cpu_s
            return result
        finally:
            depth["n"] -= 1

    Trainer.train = train  # type: ignore[method-assign]
    return record


def eval_loss(base_model_dir: Path, adapter_dir: Path, rows: Any, batch_size: int = 4) -> float:
    """Token-mean cross-entropy over the completion tokens of `rows` (unweighted), the same for every run.

    Computed here rather than by the Trainer so that both configurations are scored by one procedure that no
    training knob can change.
    """
    import torch
    from peft import PeftModel

    from pipelines.model.model_io import load_causal_lm, load_tokenizer
    from pipelines.model.prompts import build_completion_ids, build_prompt_ids

    tokenizer = load_tokenizer(adapter_dir)
    model = PeftModel.from_pretrained(load_causal_lm(base_model_dir, dtype=torch.float32), str(adapter_dir)).eval()
    examples = []
    for row in rows.itertuples(index=False):
        prompt, completion = build_prompt_ids(tokenizer, row.prompt), build_completion_ids(tokenizer, row.completion)
        examples.append((prompt + completion, [-100] * len(prompt) + completion))
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (row_ids, row_labels) in enumerate(chunk):
                ids[i, : len(row_ids)] = torch.tensor(row_ids)
                labels[i, : len(row_ids)] = torch.tensor(row_labels)
                mask[i, : len(row_ids)] = 1
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != -100
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits.float()
            targets = labels[:, 1:][keep[:, :-1]]
            total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            count += int(targets.numel())
    return total / count


def cpu_worker(spec_path: Path, name: str) -> None:
    """One training run in this (fresh) process; emits its figures for the orchestrator."""
    import pandas as pd
    import torch

    from pipelines.config import TrainConfig
    from pipelines.model.train import train_lora

    spec = json.loads(spec_path.read_text())
    rows = pd.read_parquet(spec["rows"])
    config = TrainConfig.from_dict(spec["configs"][name])
    timing = _timed_trainer_train()
    steps = time_training_steps()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix=f"bench-train-{name}-") as out:
        result = train_lora(config, Path(spec["base_model_dir"]), rows, Path(out))
        peak_rss_training = peak_rss_mib()  # before the eval model is loaded
        load_after = load_average()
        loss = eval_loss(Path(spec["base_model_dir"]), result.adapter_dir, rows[rows["split"] == "eval"])
    metrics = result.metrics
    tokens = spec["real_tokens"]["train"]
    step_wall_s = sum(step.wall_s for step in steps)
    payload = {
        "config": name,
        "global_step": metrics["global_step"],
        "train_rows": metrics["train_rows"],
        "real_tokens": tokens,
        "train_wall_s": timing["wall_s"],
        "train_cpu_s": timing["cpu_s"],
        "real_tokens_per_s": tokens / timing["wall_s"],
        "real_tokens_per_cpu_s": tokens / timing["cpu_s"],
        "step_wall_s": step_wall_s,
        "step_cpu_s": sum(step.cpu_s for step in steps),
        "step_real_tokens_per_s": tokens / step_wall_s,
        "trainer_tokens_per_s": metrics.get("tokens_per_s"),
        "train_loss": metrics["train_loss"],
        "eval_loss": loss,
        "peak_rss_mib": peak_rss_training,
        "load_before": load_before,
        "load_after": load_after,
    }
    if torch.cuda.is_available() and metrics.get("device") == "cuda":
        payload["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    emit_worker_result(payload)


def cpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.config import load_params
    from pipelines.data.lake import read_table
    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.model_io import load_tokenizer

    profile_name, profile = load_params(REPO_ROOT / args.params).training.resolve(args.profile)
    profile_values = profile.to_dict()
    if args.base_model:
        profile_values["base_model"] = args.base_model
    base = resolve_base_model(profile_values["base_model"], default_artifacts())
    baseline_config, optimized_config, missing = build_configs(profile_values, args.device)
    if missing:
        log(f"TrainConfig lacks {missing}: those knobs run at their TrainConfig defaults on both sides")

    table = ensure_augmented_table(Path(args.lake) if args.lake else default_lake(), args.params)
    tokenizer = load_tokenizer(Path(base.path))
    rows, real_tokens = select_benchmark_rows(
        read_table(table), tokenizer, args.steps * SAMPLES_PER_STEP, args.eval_samples, profile.seed
    )
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    rows.to_parquet(work / "rows.parquet")
    spec = {
        "rows": str(work / "rows.parquet"),
        "base_model_dir": base.path,
        "real_tokens": real_tokens,
        "configs": {"seed": baseline_config, "optimized": optimized_config},
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log(f"{args.steps} optimizer steps x {SAMPLES_PER_STEP} samples, {real_tokens['train']} real train tokens, "
        f"{args.eval_samples} eval rows; spec {spec_path}")

    runs: dict[str, list[dict[str, Any]]] = {"seed": [], "optimized": []}
    for repeat in range(args.repeats):
        order = ("seed", "optimized") if repeat % 2 == 0 else ("optimized", "seed")
        for name in order:
            log(f"repeat {repeat + 1}/{args.repeats}: {name} (load {load_average()})")
            result = run_worker(Path(__file__), ["--worker", name, "--spec", str(spec_path)])
            log(f"  {name}: {result['real_tokens_per_s']:.1f} real tok/s, "
                f"{result['real_tokens_per_cpu_s']:.1f} tok/cpu-s, "
                f"eval_loss {result['eval_loss']:.4f}, peak RSS {result['peak_rss_mib']} MiB")
            runs[name].append(result)

    summary = {name: _summarize_runs(results) for name, results in runs.items()}
    pairs = list(zip(runs["seed"], runs["optimized"]))
    pair_ratios = [o["real_tokens_per_s"] / b["real_tokens_per_s"] for b, o in pairs]
    pair_cpu_ratios = [o["real_tokens_per_cpu_s"] / b["real_tokens_per_cpu_s"] for b, o in pairs]
    baseline_eval = summary["seed"]["eval_loss"]["median"]
    optimized_eval = summary["optimized"]["eval_loss"]["median"]
    ratio = summary["optimized"]["real_tokens_per_s"]["median"] / summary["seed"]["real_tokens_per_s"]["median"]
    step_ratio = (summary["optimized"]["step_real_tokens_per_s"]["median"]
                  / summary["seed"]["step_real_tokens_per_s"]["median"])
    return {
        "benchmark": "train_throughput",
        "mode": "cpu",
        "machine": machine_info(),
        "profile": profile_name,
        "base_model": profile_values["base_model"],
        "steps": args.steps,
        "samples_per_step": SAMPLES_PER_STEP,
        "eval_rows": args.eval_samples,
        "real_tokens": real_tokens,
        "repeats": args.repeats,
        "configs": {"seed": baseline_config, "optimized": optimized_config},
        "knobs_missing_in_train_config": missing,
        "summary": summary,
        "ratio_real_tokens_per_s": ratio,
        "pair_ratios_real_tokens_per_s": pair_ratios,
        "ratio_step_real_tokens_per_s": step_ratio,
        "ratio_real_tokens_per_cpu_s": summary["optimized"]["real_tokens_per_cpu_s"]["median"]
        / summary["seed"]["real_tokens_per_cpu_s"]["median"],
        "pair_ratios_real_tokens_per_cpu_s": pair_cpu_ratios,
        "eval_loss_not_worse": optimized_eval <= baseline_eval * (1 + args.eval_tolerance),
        "eval_tolerance": args.eval_tolerance,
        "target_ratio": 2.0,
        "target_met": ratio >= 2.0,
        "runs": runs,
    }


def _summarize_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("real_tokens_per_s", "real_tokens_per_cpu_s", "step_real_tokens_per_s", "train_wall_s", "train_cpu_s",
            "step_wall_s", "peak_rss_mib", "train_loss", "eval_loss")
    summary = {key: summarize([r[key] for r in results if key in r]) for key in keys}
    if all("peak_cuda_mib" in r for r in results):
        summary["peak_cuda_mib"] = summarize([r["peak_cuda_mib"] for r in results])
    summary["load_1min"] = [r["load_before"][0] for r in results]
    return summary


# --- command line ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per run (CPU: of 16 samples each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (medians are reported)")
    parser.add_argument("--eval-samples", type=int, default=8, help="eval rows for the eval loss (CPU mode)")
    parser.add_argument("--eval-tolerance", type=float, default=0.01,
                        help="relative slack of the 'optimized eval loss <= baseline eval loss' check")
    parser.add_argument("--profile", default="default", help="params.yaml training profile of the optimized side")
    parser.add_argument("--base-model", default=None, help="override the profile's base_model (e.g. 'tiny')")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--lake", default=None, help="lake root (default $SOP2CMD_LAKE or ./lake)")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: cpu; GPU mode: auto)")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    parser.add_argument("--worker", choices=["seed", "optimized"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    gpu = parser.add_argument_group("GPU mode")
    gpu.add_argument("--gpu", action="store_true", help="random-init Qwen3 bf16 LoRA throughput and MFU")
    gpu.add_argument("--arch", choices=sorted(QWEN3_ARCHS), default="qwen3-0.6b")
    gpu.add_argument("--micro-batch", type=int, default=16)
    gpu.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocator, kernels)")
    gpu.add_argument("--dtype", default="bfloat16")
    gpu.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, flash_attention_2, eager)")
    gpu.add_argument("--gradient-checkpointing", action="store_true")
    gpu.add_argument("--synthetic-lengths", action="store_true",
                     help="uniform lengths in [230, 512] instead of the augmented set's token lengths")
    gpu.add_argument("--peak-tflops", type=float, default=989.0,
                     help="dense bf16 peak of the GPU in TFLOP/s (H100/H200 SXM: 989)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device is None:
        args.device = "auto" if args.gpu else "cpu"
    if args.worker:
        cpu_worker(Path(args.spec), args.worker)
        return 0
    if args.gpu:
        if args.device == "cpu" and args.arch != "tiny":  # allowed, but it takes hours
            log("note: a full Qwen3 architecture on CPU is very slow; --arch tiny is the CPU smoke path")
        result = gpu_benchmark(args)
    else:
        result = cpu_benchmark(args)
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
