"""Learning curve: exact match against training rows seen, for one training profile.

    .venv/bin/python bench/learning_curve.py --profile default --points 5 --eval-cases 80 \\
        --output bench/results/learning_curve-<stamp>.json --png docs/learning_curve.png

Trains the profile once with `pipelines.model.train.train_lora` (what `lora_checkpoint` runs) on the current
augmented_training_set, keeping a checkpoint at `points` evenly spaced optimizer steps. Each checkpoint
(base + adapter, merged in memory) then decodes a fixed sample of the eval split, the held-out phrasing
families and the 20 public examples, with the decoding `regression_metrics` uses for the profile (its `eval`
settings in params.yaml: greedy, catalog grammar, every grounding and coverage rule). Prints a markdown table
for docs/results.md and writes the JSON and the PNG.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
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
    write_json,
)
from pipelines.config import EvalSettings, load_params  # noqa: E402
from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, read_table, table_path  # noqa: E402
from pipelines.model.train import train_lora  # noqa: E402
from pipelines.model.training_data import select_rows  # noqa: E402
from pipelines.serve.eval_cases import EvalCase  # noqa: E402
from pipelines.serve.eval_metrics import compute_metrics  # noqa: E402
from pipelines.serve.eval_slices import eval_split_cases, read_cases  # noqa: E402
from pipelines.serve.evaluate import run_evaluation  # noqa: E402

ROOT = REPO_ROOT


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (run_dir / "checkpoints").glob("checkpoint-*"):
        if (path / "adapter_model.safetensors").is_file():
            found.append((int(path.name.split("-")[1]), path))
    return sorted(found)


def _merged(base_dir: Path, checkpoint: Path) -> Any:
    import torch
    from peft import PeftModel

    from pipelines.model.model_io import check_model_dir, load_causal_lm

    check_model_dir(checkpoint, allow_trainer_state=True)
    base = load_causal_lm(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(checkpoint), is_trainable=False, use_safetensors=True)
    return model.merge_and_unload().eval()


def _slices(lake: Path, settings: EvalSettings, eval_cases: int, heldout_cases: int) -> dict[str, list[EvalCase]]:
    """The first `eval_cases` eval-split cases, the first `heldout_cases` held-out ones and every public one; the
    held-out and public files are those of the profile's eval settings, as `regression_metrics` reads them."""
    augmented = read_table(table_path(lake, AUGMENTED_TABLE))
    normalized = read_table(table_path(lake, NORMALIZED_TABLE))
    cases = {"eval": eval_split_cases(augmented, normalized)[:eval_cases]}
    for name, relative in (("heldout", settings.heldout_cases), ("public", settings.public_cases)):
        path = ROOT / relative
        if not path.is_file():
            # regression_metrics reports a missing slice as empty; a curve would plot it as 0.0 at every point.
            raise SystemExit(f"{path} is missing (`make corpus` writes the held-out cases)")
        sliced = read_cases(path, name)
        cases[name] = sliced[:heldout_cases] if name == "heldout" else sliced
    return cases


def _plot(points: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = [p["rows_seen"] for p in points]
    for name in ("eval", "heldout", "public"):
        ax.plot(rows, [p[name]["exact_match"] for p in points], marker="o", label=f"{name} exact match")
    ax.set_xlabel("training rows seen")
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--eval-cases", type=int, default=80)
    parser.add_argument("--heldout-cases", type=int, default=40)
    parser.add_argument("--run-dir", type=Path, default=None, help="reuse a finished run's checkpoints")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "learning_curve.png")
    args = parser.parse_args()

    params = load_params(args.params)
    name, config = params.training.resolve(args.profile)
    lake, artifacts = default_lake(), default_artifacts()
    from pipelines.model.base_model import resolve_base_model

    base_dir = Path(resolve_base_model(config.base_model, artifacts).path)
    data = read_table(ensure_augmented_table(lake))
    rows_per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    run_dir = args.run_dir or artifacts / "learning_curve" / f"{name}-{time.strftime('%Y%m%dT%H%M')}"
    if args.run_dir is None:
        train_rows = len(select_rows(data, "train", config.max_train_samples, config.seed, config.row_sampling))
        total_steps = math.ceil(train_rows / rows_per_step) * math.ceil(config.num_train_epochs)
        # Checkpoints on an even grid, and no evaluation along the way that could stop the curve short.
        config = dataclasses.replace(
            config, eval_strategy="end", save_steps=max(1, math.ceil(total_steps / args.points)),
            save_total_limit=args.points + 1,
        )
        log(f"training {name}: {train_rows} rows, {total_steps} steps, checkpoint every {config.save_steps}")
        train_lora(config, base_dir, data, run_dir, log=log)

    from pipelines.model.model_io import load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    settings = params.eval.for_profile(name)
    cases = _slices(lake, settings, args.eval_cases, args.heldout_cases)
    decoding = settings.decoding_config(constrained=True)
    points = []
    for step, checkpoint in _checkpoints(run_dir):
        model = _merged(base_dir, checkpoint)
        point: dict[str, Any] = {"step": step, "rows_seen": step * rows_per_step}
        for slice_name, slice_cases in cases.items():
            results, wall_s = run_evaluation(model, tokenizer, slice_cases, decoding)
            point[slice_name] = {"cases": len(slice_cases), **compute_metrics(results, wall_s).headline()}
        log(json.dumps(point))
        points.append(point)

    print("| optimizer step | rows seen | eval exact | held-out exact | public exact (of 20) |")
    print("| --- | --- | --- | --- | --- |")
    for p in points:
        public = p["public"]
        print(
            f"| {p['step']} | {p['rows_seen']} | {p['eval']['exact_match']:.3f} | {p['heldout']['exact_match']:.3f} "
            f"| {public['exact_match']:.2f} ({round(public['exact_match'] * public['cases'])}) |"
        )
    _plot(points, args.png)
    command = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    write_json(
        {"machine": machine_info(), "profile": name, "config": config.to_dict(), "run_dir": str(run_dir),
         "points": points, "command": "bench/learning_curve.py " + command},
        args.output,
    )


if __name__ == "__main__":
    main()
