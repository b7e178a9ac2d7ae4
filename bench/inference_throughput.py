"""Inference throughput: the unoptimized one-at-a-time greedy loop against the project's batched generation.

Three loops over the same cases of the regression set (eval split + mismatched cases), with the same model,
all greedy through `pipelines.serve.decode`:

- `seed_one_at_a_time`, the unoptimized baseline: one `model.generate(do_sample=False)` per description,
  unconstrained (`bench/baseline_decode.py`). "seed" in loop names and result keys means this baseline,
  the original project's loop;
- batched: `generate_batched`, unconstrained;
- batched + constrained: `generate_batched` with the catalog grammar (xgrammar).

Figures per loop (medians over repeats): cases/s (cases / wall time of the loop), p50/p95 latency per case
(the wall time of the generate call that produced the case: what a caller waits), generated tokens.
Greedy outputs of the baseline loop and the batched loop must be token-for-token identical; the benchmark
exits with status 1 naming the differing cases otherwise. The grammar is compiled before timing (once per
process, reported separately) because a server compiles it once, not per request.

    .venv/bin/python bench/inference_throughput.py --cases 32 --batch-size 32 --max-new-tokens 256 --repeats 3 \
        --out bench/results/inference_throughput.json
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Stopwatch,
    default_artifacts,
    default_lake,
    ensure_augmented_table,
    load_average,
    log,
    machine_info,
    percentile,
    summarize,
    write_json,
)

# loop -> (one description per generate call, constrained decoding)
LOOP_MODES = {"seed_one_at_a_time": (True, False), "batched": (False, False), "batched_constrained": (False, True)}
LOOPS = tuple(LOOP_MODES)


def resolve_model_dir(choice: str | None) -> tuple[Path, str]:
    """The merged (fine-tuned) model when there is one, else the prepared base model; or what `choice` names."""
    from pipelines.model.base_model import resolve_base_model

    artifacts = default_artifacts()
    if choice in (None, "merged"):
        merged = artifacts / "merged_model"
        if (merged / "config.json").is_file():
            return merged, "merged_model"
        if choice == "merged":
            raise FileNotFoundError(f"no merged model at {merged}; materialize merged_model first")
        choice = "smollm2-gguf"
    if Path(choice).is_dir():
        return Path(choice), str(choice)
    return Path(resolve_base_model(choice, artifacts).path), choice


def regression_descriptions(lake: Path, limit: int, seed: int) -> list[str]:
    from bench.common import REPO_ROOT
    from pipelines.data.lake import NORMALIZED_TABLE, read_table, table_path
    from pipelines.serve.eval_slices import eval_split_cases, read_mismatched_cases, regression_set

    augmented = read_table(ensure_augmented_table(lake))
    normalized = read_table(table_path(lake, NORMALIZED_TABLE))
    cases = regression_set(
        eval_split_cases(augmented, normalized),
        read_mismatched_cases(REPO_ROOT / "data/regression/mismatched_cases.jsonl"),
    )
    if limit and len(cases) > limit:
        cases = random.Random(seed).sample(cases, limit)
    return [case.description for case in cases]


def run_loop(
    name: str, model: Any, tokenizer: Any, descriptions: list[str], config: Any, one_at_a_time: bool, constrained: bool
) -> dict[str, Any]:
    """One loop over `descriptions`: the baseline one-at-a-time loop or batched generation, free or constrained."""
    from bench.baseline_decode import generate_one_at_a_time
    from pipelines.serve.decode import generate_batched

    generate = generate_one_at_a_time if one_at_a_time else generate_batched
    loop_config = replace(config, constrained=constrained)
    load_before = load_average()
    with Stopwatch() as watch:
        generations = generate(model, tokenizer, descriptions, loop_config)
    latencies = [g.latency_s for g in generations]
    new_tokens = sum(g.new_tokens for g in generations)
    return {
        "loop": name,
        "wall_s": watch.wall_s,
        "cpu_s": watch.cpu_s,
        "cases_per_s": len(generations) / watch.wall_s,
        "p50_latency_s": percentile(latencies, 50),
        "p95_latency_s": percentile(latencies, 95),
        "new_tokens": new_tokens,
        "new_tokens_per_s": new_tokens / watch.wall_s,
        "stopped": sum(g.stopped for g in generations),
        "load_before": load_before,
        "load_after": load_average(),
        "_token_ids": [list(g.token_ids) for g in generations],
    }


def differing_cases(a: list[list[int]], b: list[list[int]], descriptions: list[str]) -> list[dict[str, Any]]:
    diffs = []
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            first = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            diffs.append({"case": index, "description": descriptions[index][:80], "first_differing_token": first,
                          "lengths": [len(x), len(y)]})
    return diffs


def benchmark(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer, stop_token_ids
    from pipelines.serve.constrained import plan_logits_processor
    from pipelines.serve.decode import DecodingConfig

    model_dir, model_name = resolve_model_dir(args.model)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    descriptions = regression_descriptions(Path(args.lake) if args.lake else default_lake(), args.cases, 0)
    config = DecodingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    log(f"model {model_name} ({model_dir}), {len(descriptions)} cases, batch {args.batch_size}, "
        f"max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")

    with Stopwatch() as compile_watch:  # the grammar is compiled once per process and cached
        plan_logits_processor(model, tokenizer, stop_token_ids(tokenizer)[0], config.limits)

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LOOPS}
    for repeat in range(args.repeats):
        order = LOOPS[repeat % len(LOOPS):] + LOOPS[: repeat % len(LOOPS)]  # rotate: drift hits every loop
        for name in order:
            result = run_loop(name, model, tokenizer, descriptions, config, *LOOP_MODES[name])
            log(f"repeat {repeat + 1}/{args.repeats} {name}: {result['cases_per_s']:.3f} cases/s, "
                f"p50 {result['p50_latency_s']:.2f}s, p95 {result['p95_latency_s']:.2f}s "
                f"(load {result['load_before']})")
            runs[name].append(result)

    reference = runs["seed_one_at_a_time"][0]["_token_ids"]
    identity = {
        "batched_vs_seed": differing_cases(reference, runs["batched"][0]["_token_ids"], descriptions),
        "seed_repeats": [
            d
            for r in runs["seed_one_at_a_time"][1:]
            for d in differing_cases(reference, r["_token_ids"], descriptions)
        ],
        "constrained_repeats": [
            d for r in runs["batched_constrained"][1:]
            for d in differing_cases(runs["batched_constrained"][0]["_token_ids"], r["_token_ids"], descriptions)
        ],
    }
    if args.check_constrained_loop:
        one_at_a_time = run_loop("seed_one_at_a_time_constrained", model, tokenizer, descriptions, config,
                                 one_at_a_time=True, constrained=True)
        identity["constrained_batched_vs_one_at_a_time"] = differing_cases(
            one_at_a_time["_token_ids"], runs["batched_constrained"][0]["_token_ids"], descriptions
        )
    for results in runs.values():
        for result in results:
            result.pop("_token_ids")

    keys = ("cases_per_s", "wall_s", "cpu_s", "p50_latency_s", "p95_latency_s", "new_tokens_per_s", "new_tokens")
    summary = {name: {key: summarize([r[key] for r in results]) for key in keys} for name, results in runs.items()}
    for name, results in runs.items():
        summary[name]["load_1min"] = [r["load_before"][0] for r in results]
    median = {name: summary[name]["cases_per_s"]["median"] for name in LOOPS}
    overhead = summary["batched_constrained"]["wall_s"]["median"] / summary["batched"]["wall_s"]["median"] - 1
    # When the two modes generate different amounts (an untrained model rambles without the grammar), the cost
    # per generated token is the fairer comparison; both are reported.
    per_token = {name: summary[name]["wall_s"]["median"] / max(summary[name]["new_tokens"]["median"], 1)
                 for name in ("batched", "batched_constrained")}
    identical = not any(identity.values())
    result = {
        "benchmark": "inference_throughput",
        "machine": machine_info(),
        "model": model_name,
        "model_dir": str(model_dir),
        "cases": len(descriptions),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "grammar_compile_s": compile_watch.wall_s,
        "summary": summary,
        "ratio_batched_vs_seed": median["batched"] / median["seed_one_at_a_time"],
        "ratio_batched_constrained_vs_seed": median["batched_constrained"] / median["seed_one_at_a_time"],
        "constrained_overhead_vs_batched": overhead,
        "constrained_overhead_per_new_token": per_token["batched_constrained"] / per_token["batched"] - 1,
        "targets": {"ratio_cpu": 5.0, "constrained_overhead_max": 0.15},
        "greedy_outputs_identical": identical,
        "identity_check": identity,
        "runs": runs,
    }
    return result, identical


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="'merged' (default when present), a base model source (smollm2-gguf, tiny) "
                             "or a directory")
    parser.add_argument("--cases", type=int, default=32, help="cases drawn from the regression set (0 = all)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch (params.yaml eval.batch_size: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-constrained-loop", action="store_true",
                        help="also run the constrained one-at-a-time loop and check it matches constrained batched")
    parser.add_argument("--lake", default=None, help="lake root (default $SOP2CMD_LAKE or ./lake)")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result, identical = benchmark(args)
    write_json(result, args.out)
    if not identical:
        log(f"FAIL: greedy outputs differ between loops: {result['identity_check']}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
