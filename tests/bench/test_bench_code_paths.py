"""The benchmarks' own logic: FLOP accounting, the baseline/optimized configurations, the GPU code path on CPU.

"seed" in the benchmarks' loop and result names is the unoptimized baseline they measure against.

No timings are asserted; these tests only keep the benchmark code paths alive and their bookkeeping right.
"""

from __future__ import annotations

import math

import pytest

from bench.gpu_train_throughput import QWEN3_ARCHS, FlopModel, gpu_benchmark
from bench.train_throughput import BASELINE_KNOBS, SAMPLES_PER_STEP, build_configs, parse_args


@pytest.mark.parametrize(("arch", "non_embedding_params"), [("qwen3-0.6b", 0.44e9), ("qwen3-4b", 3.6e9)])
def test_flop_model_matches_published_qwen3_sizes(arch, non_embedding_params):
    flops = FlopModel.from_config(QWEN3_ARCHS[arch])
    assert flops.linear_params_per_layer * flops.layers == pytest.approx(non_embedding_params, rel=0.02)


def test_lora_flops_count_frozen_backward_and_causal_attention():
    flops = FlopModel(linear_params_per_layer=10, layers=2, attention_width=4, hidden=3, vocab=7)
    # 4 FLOPs per frozen weight per token, 12 * width per causal pair per layer, 4 * hidden * vocab per target
    expected = 4 * 10 * 2 * 5 + 12 * 4 * 2 * (5 * 6 / 2) + 4 * 3 * 7 * 2
    assert flops.lora_training_flops([5], target_tokens=2) == expected


def test_baseline_and_optimized_configs_share_everything_but_throughput_knobs():
    profile = {
        "base_model": "tiny", "learning_rate": 1e-3, "per_device_train_batch_size": 8, "gradient_checkpointing": False,
    }
    baseline, optimized, _ = build_configs(profile, "cpu")
    assert baseline["per_device_train_batch_size"] * baseline["gradient_accumulation_steps"] == SAMPLES_PER_STEP
    assert optimized["per_device_train_batch_size"] * optimized["gradient_accumulation_steps"] == SAMPLES_PER_STEP
    assert baseline["gradient_checkpointing"] is True and baseline["max_length"] == optimized["max_length"] == 512
    differing = {k for k in baseline.keys() | optimized.keys() if baseline.get(k) != optimized.get(k)}
    assert differing <= set(BASELINE_KNOBS)


def test_gpu_code_path_runs_on_cpu_with_the_tiny_architecture():
    args = parse_args(["--gpu", "--arch", "tiny", "--device", "cpu", "--dtype", "float32", "--steps", "2",
                       "--micro-batch", "2", "--warmup", "1", "--synthetic-lengths"])
    result = gpu_benchmark(args)
    assert result["mode"] == "gpu" and result["arch"] == "tiny"
    assert result["real_tokens"] > 0 and result["padded_tokens"] >= result["real_tokens"]
    assert 0 < result["mfu"] < 1 and math.isfinite(result["last_loss"])


def test_inference_loops_decode_the_way_they_are_named(tmp_path):
    """Each loop of bench/inference_throughput.py really runs its mode; a constrained loop ends every plan with <eoc>.

    The baseline loop (`seed_one_at_a_time`, `bench/baseline_decode.py`) gives the batched loop's tokens.
    """
    import torch

    from bench.inference_throughput import LOOP_MODES, run_loop
    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model
    from pipelines.serve.constrained import DecodingLimits
    from pipelines.serve.decode import DecodingConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tokenizer = load_model_and_tokenizer(build_tiny_model(tmp_path / "tiny", seed=3))
        descriptions = ["Wait 2 minutes", "程序暂停3分钟"]
        config = DecodingConfig(max_new_tokens=600, batch_size=2,
                                limits=DecodingLimits(max_commands=2, max_string_chars=8, max_number=1000))
        runs = {
            name: run_loop(name, model, tokenizer, descriptions, config, *modes) for name, modes in LOOP_MODES.items()
        }
        constrained_one_at_a_time = run_loop("check", model, tokenizer, descriptions, config,
                                             one_at_a_time=True, constrained=True)
    finally:
        torch.set_num_threads(threads)
    # The random tiny model never emits <eoc> on its own; under the grammar every plan ends with it.
    assert runs["seed_one_at_a_time"]["stopped"] == runs["batched"]["stopped"] == 0
    assert runs["batched_constrained"]["stopped"] == constrained_one_at_a_time["stopped"] == len(descriptions)
    assert runs["seed_one_at_a_time"]["_token_ids"] == runs["batched"]["_token_ids"]
    assert constrained_one_at_a_time["_token_ids"] == runs["batched_constrained"]["_token_ids"]
