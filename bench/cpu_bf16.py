"""bf16 autocast on the CPU (`cpu_bf16`): the default profile's training with it off and on, back to back.

    .venv/bin/python bench/cpu_bf16.py --rows 48 --repeats 2 --out bench/results/cpu_bf16-<stamp>.json

Both sides train SmolLM2-135M-Instruct through `pipelines.model.train.train_lora` with the `default` profile of
params.yaml on the same `--rows` rows (the profile's weighted sampling and seed), warm-up off and a constant
learning rate, no evaluation during training; only `cpu_bf16` differs. Each run is a fresh process and the
sides alternate, swapping order every repeat. Reported per side: real tokens/s of the whole `train()` and the
mean training loss (the same rows and steps, so the losses should agree to about 1%). On a CPU without native
bf16 (no AVX512-BF16, no AMX) `cpu_bf16` resolves to fp32 and both sides are the same: the report says so.
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
    write_json,
)

SIDES = ("fp32", "bf16")


def _worker(side: str, rows: int, params_path: str) -> None:
    from pipelines.config import load_params
    from pipelines.data.lake import read_table
    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.train import cpu_has_native_bf16, resolve_device, train_lora

    _, config = load_params(params_path).training.resolve("default")
    config = dataclasses.replace(
        config, max_train_samples=rows, cpu_bf16=side == "bf16", eval_strategy="no", warmup_steps=0,
        lr_scheduler_type="constant",
    )
    base_dir = Path(resolve_base_model(config.base_model, default_artifacts()).path)
    data = read_table(ensure_augmented_table(default_lake(), params_path))
    with tempfile.TemporaryDirectory(prefix="cpu_bf16-") as out:
        result = train_lora(config, base_dir, data, Path(out))
    emit_worker_result({
        "side": side, "native_bf16": cpu_has_native_bf16(), "bf16_used": resolve_device(config)[1],
        "tokens_per_s": result.metrics["tokens_per_s"],
        "tokens_seen": result.metrics["tokens_seen"], "train_loss": result.metrics["train_loss"],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.rows, args.params)
        return
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
            result = run_worker(Path(__file__), ["--worker", side, "--rows", str(args.rows), "--params", args.params])
            log(f"repeat {repeat} {side}: {result}")
            runs.append(result)
    sides = {
        side: {key: summarize([r[key] for r in runs if r["side"] == side]) for key in ("tokens_per_s", "train_loss")}
        for side in SIDES
    }
    ratio = sides["bf16"]["tokens_per_s"]["median"] / sides["fp32"]["tokens_per_s"]["median"]
    print(f"native bf16: {runs[0]['native_bf16']}; bf16/fp32 real tokens/s: {ratio:.2f}x")
    for side in SIDES:
        print(f"{side}: tokens/s {sides[side]['tokens_per_s']}, train loss {sides[side]['train_loss']}")
    write_json({"machine": machine_info(), "rows": args.rows, "runs": runs, "sides": sides, "ratio": ratio,
                "command": " ".join(sys.argv)}, args.out)


if __name__ == "__main__":
    main()
