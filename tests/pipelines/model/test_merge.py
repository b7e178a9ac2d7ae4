"""Merging the adapter: parity with base+adapter, safetensors output, lineage."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
from pipelines.model.merge import FP32_EPS, PARITY_ATOL, compare_logits, merge_adapter, merge_parity, parity_rtol
from pipelines.model.model_io import load_causal_lm, load_tokenizer
from pipelines.model.train import train_lora
from tests.helpers import make_augmented_frame, smoke_config


@pytest.fixture(scope="module")
def adapter_dir(tiny_base_dir, tmp_path_factory):
    # A high learning rate so the adapter is far from identity and parity is a real test.
    result = train_lora(smoke_config(learning_rate=5e-2, eval_strategy="no", max_steps=4), tiny_base_dir,
                        make_augmented_frame(), tmp_path_factory.mktemp("run"), manifest={"marker": "lineage"})
    return result.adapter_dir


def test_merged_logits_match_base_plus_adapter(tiny_base_dir, adapter_dir, tmp_path):
    import torch

    result = merge_adapter(tiny_base_dir, adapter_dir, tmp_path / "merged")
    report = merge_parity(tiny_base_dir, adapter_dir, result.merged_dir)
    assert report.passed, report
    assert report.decisive_positions > 0 and report.argmax_agreements == report.decisive_positions

    # Parity must not be trivial: the merged model differs from the base model.
    base = load_causal_lm(tiny_base_dir)
    merged = load_causal_lm(result.merged_dir)
    ids = torch.tensor([[1, 5, 9, 40, 3]])
    with torch.no_grad():
        assert (base(input_ids=ids).logits - merged(input_ids=ids).logits).abs().max() > 1e-3


def test_merged_directory_is_a_plain_safetensors_model_with_lineage(tiny_base_dir, adapter_dir, tmp_path):
    result = merge_adapter(tiny_base_dir, adapter_dir, tmp_path / "merged", manifest={"marker": "lineage"})
    files = {p.name for p in result.merged_dir.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert "adapter_config.json" not in files  # peft is not needed to serve it
    manifest = json.loads((result.merged_dir / MANIFEST_NAME).read_text())
    assert manifest["marker"] == "lineage"
    assert manifest["adapter_sha256"] == sha256_weights(adapter_dir)
    assert manifest["merged_weights_sha256"] == sha256_weights(result.merged_dir)

    tokenizer = load_tokenizer(result.merged_dir)
    generation = json.loads((result.merged_dir / "generation_config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<eoc>") in generation["eos_token_id"]


def test_remerging_replaces_the_previous_output(tiny_base_dir, adapter_dir, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    merge_adapter(tiny_base_dir, adapter_dir, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no staging, aside copy or lock left


def test_merge_killed_between_the_renames_leaves_the_previous_model_for_the_next_reader(
        tiny_base_dir, adapter_dir, tmp_path):
    import signal
    import subprocess

    from tests.helpers import REPO_ROOT, subprocess_env, worker_command

    out = tmp_path / "merged"
    previous = merge_adapter(tiny_base_dir, adapter_dir, out, manifest={"marker": "previous"})
    # A second merge in a real process, SIGKILLed by its own rename of the new model into place, after
    # the previous model was moved aside: the one moment `out` does not exist.
    command = worker_command("replace_killed", "between_renames", "merge", out, tiny_base_dir, adapter_dir)
    killed = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert not out.exists()
    (aside,) = tmp_path.glob(".merged.old-*")
    assert json.loads((aside / MANIFEST_NAME).read_text())["marker"] == "previous"

    # The next reader (the parity check) finds the previous model whole, and nothing of the dead merge is left.
    report = merge_parity(tiny_base_dir, adapter_dir, out)
    assert report.passed, report
    assert json.loads((out / MANIFEST_NAME).read_text())["marker"] == "previous"
    assert sha256_weights(out) == previous.weights_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_parity_detects_a_wrong_merge(tiny_base_dir, adapter_dir, tmp_path):
    # The base model is not base+adapter: the check must report a difference above the tolerance.
    report = merge_parity(tiny_base_dir, adapter_dir, tiny_base_dir)
    assert not report.passed and report.max_abs_diff > report.tolerance


# --- what the tolerance accepts and what it does not --------------------------------------------


def _edited_copy(source: Path, destination: Path, edit_weights: Callable[[dict], None] | None = None,
                 edit_config: Callable[[dict], None] | None = None, config_name: str = "adapter_config.json") -> Path:
    """A copy of a model or adapter directory with its safetensors weights and/or its config edited."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, destination)
    if edit_weights is not None:
        (weights_file,) = destination.glob("*.safetensors")
        tensors = load_file(str(weights_file))
        edit_weights(tensors)
        save_file(tensors, str(weights_file), metadata={"format": "pt"})
    if edit_config is not None:
        config = json.loads((destination / config_name).read_text())
        edit_config(config)
        (destination / config_name).write_text(json.dumps(config))
    return destination


def test_float_rounding_noise_in_the_merged_weights_passes(tiny_base_dir, adapter_dir, tmp_path):
    import torch

    def add_rounding_noise(tensors: dict) -> None:
        # A merge rounds each weight once (half an ulp); a few ulps either way is rounding, nothing more.
        generator = torch.Generator().manual_seed(0)
        for name, value in tensors.items():
            ulps = torch.rand(value.shape, generator=generator) * 8 - 4
            tensors[name] = value + value * ulps * FP32_EPS

    merged = merge_adapter(tiny_base_dir, adapter_dir, tmp_path / "merged").merged_dir
    noisy = _edited_copy(merged, tmp_path / "noisy", edit_weights=add_rounding_noise)
    report = merge_parity(tiny_base_dir, adapter_dir, noisy)
    assert report.max_abs_diff > 0  # the noise reached the logits
    assert report.passed, report


def test_one_lora_matrix_off_by_one_percent_fails(tiny_base_dir, adapter_dir, tmp_path):
    def scale_first_lora_b(tensors: dict) -> None:
        name = sorted(name for name in tensors if "lora_B" in name)[0]
        tensors[name] = tensors[name] * 1.01

    wrong_adapter = _edited_copy(adapter_dir, tmp_path / "wrong_adapter", edit_weights=scale_first_lora_b)
    merged = merge_adapter(tiny_base_dir, wrong_adapter, tmp_path / "merged").merged_dir
    report = merge_parity(tiny_base_dir, adapter_dir, merged)
    assert not report.passed and report.max_abs_diff > 10 * report.tolerance


def test_adapter_merged_with_twice_its_scale_fails(tiny_base_dir, adapter_dir, tmp_path):
    def double_alpha(config: dict) -> None:
        config["lora_alpha"] *= 2

    wrong_scale = _edited_copy(adapter_dir, tmp_path / "wrong_scale", edit_config=double_alpha)
    merged = merge_adapter(tiny_base_dir, wrong_scale, tmp_path / "merged").merged_dir
    report = merge_parity(tiny_base_dir, adapter_dir, merged)
    assert not report.passed and report.max_abs_diff > 10 * report.tolerance
    assert report.argmax_agreements < report.decisive_positions  # it changes what the model generates


# --- the comparison itself, on hand-made logits -----------------------------------------------

# SmolLM2-135M's shape: the rtol a real merge is held to.
SMOLLM2_SHAPE = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536)


def _logits(rows: list[list[float]]):
    import torch

    return torch.tensor(rows, dtype=torch.float32)


def test_rounding_at_large_logits_passes_and_a_real_difference_does_not():
    # Issue #10: logits up to 20 that differ by 1.38e-4, which a fixed tolerance of 1e-4 rejected.
    rtol = parity_rtol(SMOLLM2_SHAPE)
    expected = [_logits([[20.0, -3.0, 1.0], [0.5, 7.0, -20.0]])]
    rounded = [expected[0] + _logits([[1.38e-4, 0.0, 0.0], [0.0, -5e-5, 0.0]])]
    report = compare_logits(expected, rounded, rtol)
    assert report.max_abs_diff > 1e-4 and report.passed
    assert report.tolerance == pytest.approx(PARITY_ATOL + rtol * 20.0)

    shifted = [expected[0] + _logits([[0.0, 0.0, 0.0], [0.0, 0.0, 0.05]])]
    assert not compare_logits(expected, shifted, rtol).passed


def test_a_near_tie_may_flip_but_a_clear_choice_may_not():
    rtol = 1e-6
    tied = [_logits([[1.0, 1.0, -1.0], [2.0, 0.0, 0.0]])]  # position 0: an exact tie between tokens 0 and 1
    flipped_tie = [_logits([[1.0, 1.0 + 1e-6, -1.0], [2.0, 0.0, 0.0]])]
    report = compare_logits(tied, flipped_tie, rtol)
    assert (report.positions, report.decisive_positions, report.argmax_agreements) == (2, 1, 1)
    assert report.passed

    flipped_choice = [_logits([[1.0, 1.0, -1.0], [2.0, 2.5, 0.0]])]
    report = compare_logits(tied, flipped_choice, rtol)
    assert report.argmax_agreements == 0 and not report.passed


def test_blocking_check_reports_both_measures_and_blocks_a_wrong_merge(tiny_base_dir, adapter_dir, tmp_path):
    from assets.resources import ArtifactsResource
    from assets.training_assets import merged_model_dir, merged_model_matches_adapter

    def double_alpha(config: dict) -> None:
        config["lora_alpha"] *= 2

    artifacts = ArtifactsResource(root=str(tmp_path / "artifacts"))
    lineage = {"base_model_dir": str(tiny_base_dir), "adapter_dir": str(adapter_dir)}  # what the merged asset records
    wrong_scale = _edited_copy(adapter_dir, tmp_path / "wrong_scale", edit_config=double_alpha)
    outcomes = {}
    for name, merged_from in (("right", adapter_dir), ("wrong_scale", wrong_scale)):
        merge_adapter(tiny_base_dir, merged_from, merged_model_dir(artifacts.path()), manifest=lineage)
        outcomes[name] = merged_model_matches_adapter(artifacts=artifacts)

    right, wrong = outcomes["right"], outcomes["wrong_scale"]
    assert right.passed and not wrong.passed
    metadata = {key: value.value for key, value in right.metadata.items()}
    assert 0 < metadata["max_abs_logit_diff"] <= metadata["tolerance"]
    assert 0 < metadata["argmax_agreements"] == metadata["decisive_positions"] <= metadata["positions"]
    assert wrong.metadata["max_abs_logit_diff"].value > wrong.metadata["tolerance"].value


def test_logits_of_another_vocabulary_fail_the_parity_check_instead_of_crashing() -> None:
    import torch

    from pipelines.model.merge import compare_logits

    expected = [torch.zeros(3, 10)]
    report = compare_logits(expected, [torch.zeros(3, 12)], rtol=1e-6)
    assert not report.passed and report.argmax_agreements == 0
