"""Merge a LoRA adapter into its base model and prove the merge changed nothing the model computes.

The merged directory is a plain transformers model (safetensors + tokenizer + generation config that
stops on `<eoc>`) with a lineage manifest, so serving needs neither peft nor the base model.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.manifest import MANIFEST_NAME, sha256_weights, write_json_atomic
from pipelines.model_io import check_model_dir, load_causal_lm, load_tokenizer
from pipelines.prompts import build_prompt_ids, serving_user_message

# Fixed prompts for the parity check: both languages, short and multi-step descriptions.
PARITY_DESCRIPTIONS: tuple[str, ...] = (
    "行1:用通道1-4从样品板A1-D1各吸取20ul",
    "Pick up 50ul tips on channels 1-2, then drop them.",
    "摇板：反应板A，700转每分钟，持续4分钟",
)
PARITY_TOLERANCE = 1e-4


@dataclass
class MergeResult:
    merged_dir: Path
    adapter_sha256: str
    weights_sha256: str
    manifest: dict[str, Any]


def _load_base_with_adapter(base_model_dir: Path, adapter_dir: Path) -> Any:
    import torch
    from peft import PeftModel

    check_model_dir(adapter_dir)
    base = load_causal_lm(base_model_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False, use_safetensors=True)


def merge_adapter(base_model_dir: Path, adapter_dir: Path, out_dir: Path,
                  manifest: dict[str, Any] | None = None) -> MergeResult:
    """Write base+adapter merged (fp32) to `out_dir`, replacing it only once the new one is complete."""
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    merged = _load_base_with_adapter(base_model_dir, adapter_dir).merge_and_unload()
    merged.save_pretrained(str(staging), safe_serialization=True)
    load_tokenizer(base_model_dir).save_pretrained(str(staging))
    adapter_sha = sha256_weights(adapter_dir)
    weights_sha = sha256_weights(staging)
    full_manifest = {**(manifest or {}), "kind": "merged_model", "adapter_sha256": adapter_sha,
                     "merged_weights_sha256": weights_sha}
    write_json_atomic(staging / MANIFEST_NAME, full_manifest)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out_dir)
    return MergeResult(out_dir, adapter_sha, weights_sha, full_manifest)


def _prompt_logits(model: Any, tokenizer: Any, descriptions: tuple[str, ...]) -> list[Any]:
    import torch

    logits = []
    with torch.no_grad():
        for description in descriptions:
            ids = build_prompt_ids(tokenizer, serving_user_message(description))
            logits.append(model(input_ids=torch.tensor([ids])).logits[0].float())
    return logits


def merge_parity(base_model_dir: Path, adapter_dir: Path, merged_dir: Path,
                 descriptions: tuple[str, ...] = PARITY_DESCRIPTIONS) -> float:
    """Largest absolute logit difference between merged and base+adapter on fixed prompts (fp32)."""
    import torch

    tokenizer = load_tokenizer(merged_dir)
    reference = _load_base_with_adapter(base_model_dir, adapter_dir).eval()
    expected = _prompt_logits(reference, tokenizer, descriptions)
    del reference
    merged = load_causal_lm(merged_dir, dtype=torch.float32)
    actual = _prompt_logits(merged, tokenizer, descriptions)
    return max(float((a - e).abs().max()) for a, e in zip(actual, expected))
