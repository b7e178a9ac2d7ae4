"""GPU mode of the training-throughput benchmark: random-init Qwen3 architectures, bf16 LoRA, MFU.

Builds a Qwen3 architecture from the config dicts below (no download), trains LoRA on sequences with the
corpus's lengths and reports tokens/s, model FLOPs utilization against `--peak-tflops` and peak memory.
`bench/train_throughput.py --gpu` runs it; `--gpu --arch tiny --device cpu --dtype float32` runs the same
code path on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Stopwatch,
    default_artifacts,
    default_lake,
    ensure_augmented_table,
    log,
    machine_info,
    peak_rss_mib,
)

# Published Qwen3 shapes (config.json of each model); random init, nothing is downloaded.
QWEN3_ARCHS: dict[str, dict[str, Any]] = {
    "qwen3-0.6b": {
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True,
        "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    },
    "qwen3-4b": {
        "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True,
        "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    },
    # The same architecture scaled down, so the GPU code path runs on a CPU in seconds.
    "tiny": {
        "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True,
        "max_position_embeddings": 2048, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    },
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class FlopModel:
    """Model FLOPs of one LoRA training token, from the architecture (LoRA's own matmuls are negligible).

    Frozen linear layers cost 2 FLOPs per weight forward and 2 backward (the input gradient; no weight
    gradient), attention scores and values 4 * heads * head_dim * context forward and twice that backward,
    the lm_head only at target positions. `six_n` is the usual full-fine-tuning convention (6 x parameters),
    kept for comparison with figures quoted that way.
    """

    linear_params_per_layer: int
    layers: int
    attention_width: int  # heads x head_dim
    hidden: int
    vocab: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FlopModel":
        d, ff = config["hidden_size"], config["intermediate_size"]
        q = config["num_attention_heads"] * config["head_dim"]
        kv = config["num_key_value_heads"] * config["head_dim"]
        return cls(d * q + 2 * d * kv + q * d + 3 * d * ff, config["num_hidden_layers"], q, d, config["vocab_size"])

    def lora_training_flops(self, sequence_lengths: list[int], target_tokens: int) -> float:
        tokens = sum(sequence_lengths)
        linear = 4 * self.linear_params_per_layer * self.layers * tokens
        # causal attention: token i attends to i+1 positions; forward QK^T and AV = 4 * width per pair
        pairs = sum(n * (n + 1) / 2 for n in sequence_lengths)
        attention = 3 * 4 * self.attention_width * self.layers * pairs
        head = 4 * self.hidden * self.vocab * target_tokens
        return float(linear + attention + head)

    def six_n_flops(self, tokens: int) -> float:
        return 6.0 * (self.linear_params_per_layer * self.layers + self.hidden * self.vocab) * tokens


def corpus_lengths(lake: Path | None, limit: int, seed: int) -> list[int]:
    """Token lengths of training rows (SmolLM2 tokenizer) when a lake and the base model are at hand."""
    try:
        from pipelines.data.lake import read_table
        from pipelines.model.base_model import resolve_base_model
        from pipelines.model.model_io import load_tokenizer
        from pipelines.model.prompts import build_completion_ids, build_prompt_ids

        table = ensure_augmented_table(lake or default_lake())
        base = resolve_base_model("smollm2-gguf", default_artifacts())
        tokenizer = load_tokenizer(Path(base.path))
        rows = read_table(table)
        rows = rows[rows["split"] == "train"].sample(n=min(limit, len(rows)), random_state=seed)
        return [
            len(build_prompt_ids(tokenizer, r.prompt)) + len(build_completion_ids(tokenizer, r.completion))
            for r in rows.itertuples()
        ]
    except Exception as error:  # no lake or no base model on a bare GPU machine: corpus-like lengths
        log(f"corpus lengths unavailable ({error}); drawing lengths in [230, 512] like the augmented set")
        rng = random.Random(seed)
        return [rng.randint(230, 512) for _ in range(limit)]


def _lora_model(args: argparse.Namespace, arch: dict[str, Any], device: Any) -> Any:
    """A random-init Qwen3 of `arch` with LoRA adapters on the attention projections, in training mode."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(**arch)
    config._attn_implementation = args.attn
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(getattr(torch, args.dtype))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                             task_type="CAUSAL_LM"))
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    return model


def _sequence_lengths(args: argparse.Namespace, arch: dict[str, Any]) -> list[int]:
    count = args.micro_batch * (args.steps + args.warmup)
    if args.synthetic_lengths:
        rng = random.Random(0)
        lengths = [rng.randint(230, 512) for _ in range(count)]
    else:
        lengths = corpus_lengths(Path(args.lake) if args.lake else None, count, 0)
    return [min(n, arch["max_position_embeddings"]) for n in lengths]


def _micro_batches(
    lengths: list[int], micro_batch: int, vocab_size: int, device: Any
) -> list[tuple[list[int], Any, Any, Any]]:
    """(lengths, ids, mask, labels) per micro-batch: random tokens, the completion share of a corpus row as targets.

    Length bucketing: sorted lengths cut into micro-batches (little padding), batches in random order.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    pool = sorted(lengths)
    chunks = [pool[i : i + micro_batch] for i in range(0, len(pool) - micro_batch + 1, micro_batch)]
    random.Random(0).shuffle(chunks)
    batches = []
    for chunk in chunks:
        width = max(chunk)
        ids = torch.randint(4, vocab_size, (len(chunk), width), generator=generator)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for row, n in enumerate(chunk):
            mask[row, :n] = 1
            prompt = int(n * 0.68)  # the corpus: about a third of each row is completion
            labels[row, prompt:n] = ids[row, prompt:n]
        batches.append((chunk, ids.to(device), mask.to(device), labels.to(device)))
    return batches


def _train_step(model: Any, optimizer: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, int]:
    """One optimizer step on one micro-batch: (loss as a tensor, target tokens)."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    output = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    targets = labels[:, 1:][keep[:, :-1]]
    loss = torch.nn.functional.cross_entropy(output.logits.float(), targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), int(targets.numel())  # no .item(): a host sync per step would stall the GPU queue


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    arch = QWEN3_ARCHS[args.arch]
    model = _lora_model(args, arch, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    flops = FlopModel.from_config(arch)
    batches = _micro_batches(_sequence_lengths(args, arch), args.micro_batch, arch["vocab_size"], device)

    for _, ids, mask, labels in batches[: args.warmup]:
        _train_step(model, optimizer, ids, mask, labels)
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    measured = batches[args.warmup :]
    real_tokens = padded_tokens = target_tokens = 0
    seen_lengths: list[int] = []
    losses = []
    with Stopwatch() as watch:
        for chunk, ids, mask, labels in measured:
            loss, targets = _train_step(model, optimizer, ids, mask, labels)
            losses.append(loss)
            real_tokens += sum(chunk)
            padded_tokens += ids.numel()
            target_tokens += targets
            seen_lengths += chunk
        _synchronize(device)
    losses = [float(loss) for loss in losses]
    model_flops = flops.lora_training_flops(seen_lengths, target_tokens)
    achieved = model_flops / watch.wall_s
    peak = args.peak_tflops * 1e12
    result = {
        "benchmark": "train_throughput",
        "mode": "gpu",
        "machine": machine_info(),
        "arch": args.arch,
        "architecture": arch,
        "device": str(device),
        "dtype": args.dtype,
        "attn_implementation": args.attn,
        "gradient_checkpointing": args.gradient_checkpointing,
        "micro_batch": args.micro_batch,
        "steps": args.steps,
        "real_tokens": real_tokens,
        "padded_tokens": padded_tokens,
        "wall_s": watch.wall_s,
        "real_tokens_per_s": real_tokens / watch.wall_s,
        "model_tflops_per_s": achieved / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": achieved / peak,
        "mfu_6n_convention": flops.six_n_flops(real_tokens) / watch.wall_s / peak,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_rss_mib": peak_rss_mib(),
    }
    if device.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss in the GPU benchmark: {losses}")
    return result
