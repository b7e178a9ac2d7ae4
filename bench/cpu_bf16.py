"""bf16 on the CPU: the default profile's training in fp32, under bf16 autocast, and with the frozen weights in bf16.

    .venv/bin/python bench/cpu_bf16.py --rows 48 --repeats 2 --out bench/results/cpu_bf16-<stamp>.json

The sides, each adding one lever to the one before:
- fp32;
- bf16: bf16 autocast, fp32 master weights (`cpu_bf16`);
- bf16-frozen-weights: the frozen weights of the LoRA targets stored in bf16 (`bf16_frozen_weights`), the
  `default` profile as shipped.

Every side trains SmolLM2-135M-Instruct through `pipelines.model.train.train_lora` with the `default` profile of
params.yaml on the same `--rows` rows (the profile's weighted sampling and seed), warm-up off and a constant
learning rate, no evaluation during training; only the knobs above differ. Each run is a fresh process; the order
of the sides turns every repeat. Reported per side: real tokens/s of the whole `train()`, the mean seconds per
row of the micro-batches after the first two (the first ones of a run hold its longest rows and the one-off kernel
set-up), and the mean training loss (the same rows and steps, so the losses should agree to about 1%). On a CPU
without native bf16 (no AVX512-BF16, no AMX) `cpu_bf16` resolves to fp32 and the bf16 sides train in fp32: the
report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    default_artifacts,
    default_lake,
    emit_worker_result,
    ensure_augmented_table,
    log,
    machine_info,
    run_worker,
    summarize,
    time_training_steps,
    write_json,
)

LEVERS = ("cpu_bf16", "bf16_frozen_weights")
# Side -> the levers it turns on (the others off).
SIDES: dict[str, tuple[str, ...]] = {"fp32": (), "bf16": LEVERS[:1], "bf16-frozen-weights": LEVERS}


def _worker(side: str, rows: int, params_path: str) -> None:
    from pipelines.config import load_params
    from pipelines.data.lake import read_table
    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.train import cpu_has_native_bf16, resolve_device, train_lora

    _, config = load_params(params_path).training.resolve("default")
    config = dataclasses.replace(
        config, max_train_samples=rows, eval_strategy="no", warmup_steps=0, lr_scheduler_type="constant",
        **{lever: lever in SIDES[side] for lever in LEVERS},
    )
    base_dir = Path(resolve_base_model(config.base_model, default_artifacts()).path)
    data = read_table(ensure_augmented_table(default_lake(), params_path))
    steps = time_training_steps()
    with tempfile.TemporaryDirectory(prefix="cpu_bf16-") as out:
        result = train_lora(config, base_dir, data, Path(out))
    later = [step.wall_s for step in steps[2:]]
    emit_worker_result({
        "side": side, "native_bf16": cpu_has_native_bf16(), "bf16_used": resolve_device(config)[1],
        "tokens_per_s": result.metrics["tokens_per_s"],
        "s_per_row_after_two": sum(later) / (len(later) * config.per_device_train_batch_size) if later else None,
        "tokens_seen": result.metrics["tokens_seen"], "train_loss": result.metrics["train_loss"],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", choices=list(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.rows, args.params)
        return
    runs: list[dict] = []
    for repeat in range(args.repeats):
        order = list(SIDES)
        for side in order[repeat % len(order):] + order[: repeat % len(order)]:
            result = run_worker(Path(__file__), ["--worker", side, "--rows", str(args.rows), "--params", args.params])
            log(f"repeat {repeat} {side}: {result}")
            runs.append(result)
    keys = ("tokens_per_s", "s_per_row_after_two", "train_loss")
    sides = {side: {key: summarize([r[key] for r in runs if r["side"] == side]) for key in keys} for side in SIDES}
    # Each side against the one before it, on the steps after the first two.
    names = list(SIDES)
    seconds = {side: sides[side]["s_per_row_after_two"]["median"] for side in names}
    ratios = {f"{after}/{before}": seconds[before] / seconds[after] for before, after in zip(names, names[1:])}
    speedups = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    print(f"native bf16: {runs[0]['native_bf16']}; speed-ups: {speedups}")
    for side in SIDES:
        print(f"{side}: " + ", ".join(f"{key} {sides[side][key]}" for key in keys))
    write_json({"machine": machine_info(), "rows": args.rows, "runs": runs, "sides": sides, "ratios": ratios,
                "command": " ".join(sys.argv)}, args.out)


if __name__ == "__main__":
    main()
