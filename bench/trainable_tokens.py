"""The `<eoc>` row by row (`trainable_tokens_by_row`) against peft's whole-matrix copy, on the same micro-batches.

    .venv/bin/python bench/trainable_tokens.py --rows 64 --batches 4 --repeats 4 \
        --out bench/results/trainable_tokens-<stamp>.json

One process: the `default` profile's model (LoRA, the trainable `<eoc>` row, bf16 autocast and bf16 frozen weights
where the CPU has native bf16) and `--batches` of its length-grouped micro-batches, spread over the lengths of
`--rows` drawn rows. Each repeat times the forward and backward of those micro-batches with peft's forward, then
with the row-by-row forward (the order turns every repeat), so both sides meet the same machine state: between
separate processes this machine's speed drifts by more than the lever. Reported: seconds per side, the speed-up,
and the first micro-batch's loss and gradients on both sides (the loss should agree exactly, the gradients to
within bf16 rounding: their relative difference, next to that of bf16 autocast against fp32 on the same batch and
weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    default_artifacts,
    default_lake,
    ensure_augmented_table,
    log,
    machine_info,
    summarize,
    write_json,
)

SIDES = ("peft", "by-row")


def _trainer(rows: int, params_path: str) -> tuple[Any, Any, bool]:
    """The default profile's trainer on `rows` rows, its model unchanged by a step; and whether bf16 is on."""
    import torch

    from pipelines.config import load_params
    from pipelines.data.lake import read_table
    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.model_io import eoc_token_id, load_causal_lm, load_tokenizer
    from pipelines.model.train import build_sft_config, resolve_device
    from pipelines.model.trainer import build_trainer
    from pipelines.model.training_data import build_datasets

    _, config = load_params(params_path).training.resolve("default")
    config = dataclasses.replace(config, max_train_samples=rows, eval_strategy="no", trainable_tokens_by_row=False)
    base_dir = Path(resolve_base_model(config.base_model, default_artifacts()).path)
    tokenizer = load_tokenizer(base_dir)
    datasets = build_datasets(config, read_table(ensure_augmented_table(default_lake(), params_path)), tokenizer)
    device, bf16 = resolve_device(config)
    out = Path(tempfile.mkdtemp(prefix="trainable_tokens-"))
    args = build_sft_config(config, out / "checkpoints", device, bf16)
    trainer = build_trainer(config, args, load_causal_lm(base_dir, dtype=torch.float32), tokenizer, datasets,
                            eoc_token_id(tokenizer), {}, out, lambda update: None)
    trainer.model.train()
    return trainer, config, bf16


def _use_side(model: Any, side: str) -> None:
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from pipelines.model.trainable_tokens import apply_trainable_tokens_by_row

    if side == "by-row":
        apply_trainable_tokens_by_row(model)
        return
    for module in model.modules():
        if isinstance(module, TrainableTokensLayer):
            module.__dict__.pop("forward_adapters", None)  # back to peft's own method


def _loss_and_grads(model: Any, batch: dict, config: Any, bf16: bool) -> tuple[float, dict[str, Any]]:
    """One micro-batch's mean completion loss, backpropagated; the trainable parameters' gradients."""
    import torch

    from pipelines.model.trainer import completion_token_losses

    model.zero_grad(set_to_none=True)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        _, losses, _ = completion_token_losses(model, inputs, batch["labels"],
                                               completion_logits_only=config.completion_logits_only,
                                               shared_prefix=config.shared_prefix)
        loss = losses.mean()
    loss.backward()
    return float(loss), {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def _fp32_loss_and_grads(model: Any, batch: dict, config: Any) -> tuple[float, dict[str, Any]]:
    """`_loss_and_grads` without autocast, the bf16-stored frozen weights widened to fp32 for it (and back: exact)."""
    import torch

    narrowed = [p for p in model.parameters() if not p.requires_grad and p.dtype == torch.bfloat16]
    for parameter in narrowed:
        parameter.data = parameter.data.float()
    try:
        return _loss_and_grads(model, batch, config, False)
    finally:
        for parameter in narrowed:
            parameter.data = parameter.data.to(torch.bfloat16)


def _relative_difference(reference: dict[str, Any], other: dict[str, Any]) -> float:
    squared = sum(float(((reference[n] - other[n]) ** 2).sum()) for n in reference)
    return (squared / sum(float((reference[n] ** 2).sum()) for n in reference)) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    trainer, config, bf16 = _trainer(args.rows, args.params)
    model = trainer.model
    loaded = list(trainer.get_train_dataloader())
    stride = max(1, len(loaded) // args.batches)
    batches = loaded[::stride][: args.batches]
    tokens = [int(batch["attention_mask"].sum()) for batch in batches]
    log(f"{len(batches)} micro-batches, {tokens} tokens; bf16 {bf16}")

    check: dict[str, Any] = {}
    for side in SIDES:
        _use_side(model, side)
        check[side] = _loss_and_grads(model, batches[0], config, bf16)
    _use_side(model, "peft")
    fp32 = _fp32_loss_and_grads(model, batches[0], config) if bf16 else None

    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    for repeat in range(args.repeats):
        for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
            _use_side(model, side)
            started = time.perf_counter()
            for batch in batches:
                _loss_and_grads(model, batch, config, bf16)
            seconds[side].append(time.perf_counter() - started)
            log(f"repeat {repeat} {side}: {seconds[side][-1]:.2f} s")

    sides = {side: summarize(values) for side, values in seconds.items()}
    speedup = sides["peft"]["median"] / sides["by-row"]["median"]
    result = {
        "machine": machine_info(), "rows": args.rows, "batch_tokens": tokens, "bf16": bf16,
        "seconds": seconds, "sides": sides, "speedup_by_row_over_peft": speedup,
        "loss": {side: check[side][0] for side in SIDES},
        "grad_relative_difference_by_row_vs_peft": _relative_difference(check["peft"][1], check["by-row"][1]),
        "grad_relative_difference_bf16_vs_fp32": _relative_difference(fp32[1], check["peft"][1]) if fp32 else None,
        "command": " ".join(sys.argv),
    }
    print(f"speed-up {speedup:.3f}x; medians {sides['peft']['median']:.2f} s (peft) against "
          f"{sides['by-row']['median']:.2f} s (by row); losses {result['loss']}; gradients differ by "
          f"{result['grad_relative_difference_by_row_vs_peft']:.4f} (bf16 against fp32: "
          f"{result['grad_relative_difference_bf16_vs_fp32']})")
    write_json(result, args.out)


if __name__ == "__main__":
    main()
