"""Merge a LoRA adapter into its base model and prove the merge changed nothing the model computes.

The merged directory is a plain transformers model (safetensors + tokenizer + generation config that
stops on `<eoc>`) with a lineage manifest, so serving needs neither peft nor the base model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.atomic_files import recover_directory, replace_directory, staging_directory, write_json_atomic
from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
from pipelines.model.model_card import explain_model_dir
from pipelines.model.model_io import check_model_dir, load_causal_lm, load_tokenizer
from pipelines.model.prompts import build_prompt_ids, serving_user_message

# Fixed prompts for the parity check: both languages, short and multi-step descriptions.
PARITY_DESCRIPTIONS: tuple[str, ...] = (
    "行1:用通道1-4从样品板A1-D1各吸取20ul",
    "Pick up 50ul tips on channels 1-2, then drop them.",
    "摇板：反应板A，700转每分钟，持续4分钟",
)
FP32_EPS = 2.0**-23
# For logits near zero, where a tolerance relative to the largest logit would shrink to nothing.
PARITY_ATOL = 1e-5


@dataclass(frozen=True)
class ParityReport:
    """How far the merged model's logits are from base+adapter's on the fixed prompts (fp32)."""

    max_abs_diff: float
    max_abs_logit: float  # of the reference (base+adapter)
    tolerance: float  # PARITY_ATOL + rtol * max_abs_logit
    positions: int
    decisive_positions: int  # positions whose greedy token no diff within tolerance can change
    argmax_agreements: int  # decisive positions where both models pick the same greedy token

    @property
    def within_tolerance(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    @property
    def passed(self) -> bool:
        # At a decisive position the greedy token can only change if a logit moves by more than the
        # tolerance, so agreement follows from the bound today; it is required anyway so that no future
        # loosening of the tolerance can let through a merge that changes what the model generates.
        return self.within_tolerance and self.argmax_agreements == self.decisive_positions


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
    with staging_directory(out_dir) as staging:
        merged = _load_base_with_adapter(base_model_dir, adapter_dir).merge_and_unload()
        merged.save_pretrained(str(staging), safe_serialization=True)
        load_tokenizer(base_model_dir).save_pretrained(str(staging))
        adapter_sha = sha256_weights(adapter_dir)
        weights_sha = sha256_weights(staging)
        full_manifest = {**(manifest or {}), "kind": "merged_model", "adapter_sha256": adapter_sha,
                         "merged_weights_sha256": weights_sha}
        write_json_atomic(staging / MANIFEST_NAME, full_manifest)
        # The chat template with the trained system prompt, plan.schema.json and the model card: plain HF tools
        # loading this directory get the model's real behaviour.
        explain_model_dir(staging, manifest=full_manifest, card_path=out_dir)
        # Serving and the parity check may be reading the previous merge: it stays whole until the swap.
        replace_directory(staging, out_dir)
    return MergeResult(out_dir, adapter_sha, weights_sha, full_manifest)


def _prompt_logits(model: Any, tokenizer: Any, descriptions: Sequence[str]) -> list[Any]:
    """Logits at every position of each description's serving prompt, [prompt length, vocab] each, fp32."""
    import torch

    logits = []
    with torch.no_grad():
        for description in descriptions:
            ids = build_prompt_ids(tokenizer, serving_user_message(description))
            logits.append(model(input_ids=torch.tensor([ids])).logits[0].float())
    return logits


def parity_rtol(config: Any) -> float:
    """Logit tolerance of a correct merge, relative to the largest logit, for a model of this shape.

    Merging reorders fp32 sums in every adapted projection (W x + s B(A x) becomes (W + s BA) x); a
    reordered sum of K terms moves by about sqrt(K) roundings (FP32_EPS) of its size, and the residual
    stream adds those moves up layer after layer, so the logits move by about layers * sqrt(K) * FP32_EPS
    of their magnitude, K the widest projection input. A wrong merge moves them by the adapter's effect.
    """
    width = max(config.hidden_size, getattr(config, "intermediate_size", None) or config.hidden_size)
    return config.num_hidden_layers * math.sqrt(width) * FP32_EPS


def compare_logits(
    expected: Sequence[Any], actual: Sequence[Any], rtol: float, atol: float = PARITY_ATOL
) -> ParityReport:
    """Compare per-prompt logits ([positions, vocab] each): largest difference and greedy-token agreement."""
    max_abs_logit = max(float(e.abs().max()) for e in expected)
    tolerance = atol + rtol * max_abs_logit
    if any(a.shape != e.shape for a, e in zip(actual, expected, strict=True)):
        # Another vocabulary (or another tokenization of the prompts): not the same model, nothing to compare.
        positions = sum(int(e.shape[0]) for e in expected)
        return ParityReport(math.inf, max_abs_logit, tolerance, positions, positions, 0)
    max_abs_diff = max(float((a - e).abs().max()) for a, e in zip(actual, expected, strict=True))
    positions = decisive = agreements = 0
    for a, e in zip(actual, expected, strict=True):
        top_two = e.topk(2, dim=-1).values
        # Two logits that each move by up to the tolerance can swap when they are less than twice it
        # apart: there (an exact tie included) the greedy token is float noise, not the merge's doing.
        is_decisive = (top_two[:, 0] - top_two[:, 1]) > 2 * tolerance
        same_token = a.argmax(dim=-1) == e.argmax(dim=-1)
        positions += e.shape[0]
        decisive += int(is_decisive.sum())
        agreements += int((is_decisive & same_token).sum())
    return ParityReport(max_abs_diff, max_abs_logit, tolerance, positions, decisive, agreements)


def merge_parity(base_model_dir: Path, adapter_dir: Path, merged_dir: Path,
                 descriptions: Sequence[str] = PARITY_DESCRIPTIONS) -> ParityReport:
    """Merged model vs base+adapter on fixed prompts (fp32): logit difference and greedy-token agreement."""
    import torch

    recover_directory(merged_dir)  # a merge killed mid-replacement left the previous model aside
    tokenizer = load_tokenizer(merged_dir)
    reference = _load_base_with_adapter(base_model_dir, adapter_dir).eval()
    expected = _prompt_logits(reference, tokenizer, descriptions)
    del reference
    merged = load_causal_lm(merged_dir, dtype=torch.float32)
    actual = _prompt_logits(merged, tokenizer, descriptions)
    return compare_logits(expected, actual, parity_rtol(merged.config))
