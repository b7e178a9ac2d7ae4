"""Merging the adapter: parity with base+adapter, safetensors output, lineage."""

from __future__ import annotations

import json

import pytest

from pipelines.manifest import MANIFEST_NAME, sha256_weights
from pipelines.merge import PARITY_TOLERANCE, merge_adapter, merge_parity
from pipelines.model_io import load_causal_lm, load_tokenizer
from pipelines.train import train_lora
from tests.training.conftest import make_augmented_frame, smoke_config


@pytest.fixture(scope="module")
def adapter_dir(tiny_base_dir, tmp_path_factory):
    # A high learning rate so the adapter is far from identity and parity is a real test.
    result = train_lora(smoke_config(learning_rate=5e-2, eval_strategy="no", max_steps=4), tiny_base_dir,
                        make_augmented_frame(), tmp_path_factory.mktemp("run"), manifest={"marker": "lineage"})
    return result.adapter_dir


def test_merged_logits_match_base_plus_adapter(tiny_base_dir, adapter_dir, tmp_path):
    import torch

    result = merge_adapter(tiny_base_dir, adapter_dir, tmp_path / "merged")
    assert merge_parity(tiny_base_dir, adapter_dir, result.merged_dir) <= PARITY_TOLERANCE

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
    assert not list(tmp_path.glob(".merged.staging-*"))


def test_parity_detects_a_wrong_merge(tiny_base_dir, adapter_dir, tmp_path):
    # The base model is not base+adapter: the check must report a difference above the tolerance.
    assert merge_parity(tiny_base_dir, adapter_dir, tiny_base_dir) > PARITY_TOLERANCE
