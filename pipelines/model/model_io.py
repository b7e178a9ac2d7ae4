"""Safe loading of model artifacts: safetensors only, never remote code.

Pickle-based weights (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`) execute code when unpickled and a config
with `auto_map` asks transformers to import code shipped with the model, so a directory holding either
is refused before anything in it is opened by torch or transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_contracts.tables import EOC_TOKEN

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
# Files a trainer checkpoint legitimately keeps next to its safetensors; they are never model weights
# and are only read by our own resume code (see pipelines.model.checkpoints), so they do not make a model dir unsafe.
_TRAINER_STATE_FILES = frozenset({"optimizer.pt", "scheduler.pt", "training_args.bin", "scaler.pt"})
_CONFIG_FILES = ("config.json", "adapter_config.json", "tokenizer_config.json")


class UnsafeModelArtifactError(ValueError):
    """A model directory holds something we refuse to load (pickled weights or remote code)."""


def check_model_dir(model_dir: Path, *, allow_trainer_state: bool = False) -> None:
    """Raise UnsafeModelArtifactError naming the offending file if `model_dir` is not safe to load."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    for path in sorted(model_dir.rglob("*")):
        if not path.is_file():
            continue
        is_rng_state = path.name.startswith("rng_state") and path.suffix == ".pth"
        if allow_trainer_state and (path.name in _TRAINER_STATE_FILES or is_rng_state):
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeModelArtifactError(
                f"refusing to load {model_dir}: {path.relative_to(model_dir)} is a pickle-format file "
                f"({path.suffix}); only safetensors weights are accepted"
            )
    for name in _CONFIG_FILES:
        config_path = model_dir / name
        if not config_path.is_file():
            continue
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UnsafeModelArtifactError(
                f"refusing to load {model_dir}: {name} is not valid JSON ({error})"
            ) from error
        if isinstance(config, dict) and config.get("auto_map"):
            raise UnsafeModelArtifactError(
                f"refusing to load {model_dir}: {name} has 'auto_map', which asks for remote code "
                f"(trust_remote_code is never enabled)"
            )
    has_weights = any(model_dir.glob("*.safetensors"))
    if (model_dir / "config.json").is_file() and not has_weights:
        raise UnsafeModelArtifactError(f"refusing to load {model_dir}: no .safetensors weights found")


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model_dir: Path, *, dtype: Any = None, device: str | None = None) -> Any:
    """Load a causal LM from a checked directory (safetensors only, no remote code)."""
    import torch
    from transformers import AutoModelForCausalLM

    check_model_dir(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        use_safetensors=True,
        trust_remote_code=False,
        dtype=dtype if dtype is not None else torch.float32,
    )
    if device is not None:
        model.to(device)
    model.eval()
    return model


def load_model_and_tokenizer(model_dir: Path, *, dtype: Any = None, device: str | None = None) -> tuple[Any, Any]:
    """A model to decode with (evaluation, `predict`, serving), once `check_trained_prompt` allows it."""
    check_trained_prompt(model_dir)
    return load_causal_lm(model_dir, dtype=dtype, device=device), load_tokenizer(model_dir)


def check_trained_prompt(model_dir: Path) -> None:
    """Refuse a model whose lineage records another system prompt than the one this checkout sends.

    The prompt builder sends this checkout's system prompt; a model trained under another one would decode
    prompts it never saw, and its plans could still pass the catalog. A directory without the record (a base
    model, a hub model) is not checked.
    """
    from pipelines.lineage.manifest import MANIFEST_NAME, read_manifest
    from pipelines.model.prompts import system_prompt

    manifest_path = Path(model_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return
    trained, current = read_manifest(model_dir).get("system_prompt"), system_prompt()
    if trained is not None and trained != current:
        raise ValueError(
            f"{model_dir} was trained with the system prompt {trained!r}, but this checkout sends {current!r}: "
            f"decode it with the commit that trained it ({manifest_path} names it under 'git') or retrain it"
        )


def eoc_token_id(tokenizer: Any, eoc_token: str = EOC_TOKEN) -> int:
    token_id = tokenizer.convert_tokens_to_ids(eoc_token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"tokenizer has no {eoc_token!r} token; was the base model prepared by pipelines.model.base_model?"
        )
    return int(token_id)


def stop_token_ids(tokenizer: Any, eoc_token: str = EOC_TOKEN) -> list[int]:
    """Token ids generation must stop on: `<eoc>` first, then the tokenizer's eos."""
    ids = [eoc_token_id(tokenizer, eoc_token)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids
