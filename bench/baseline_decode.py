"""The unoptimized baseline the inference benchmark measures batched generation against.

One `model.generate(do_sample=False)` per description, with transformers' default cache: no batching, no
shared prompt prefix. It builds its prompts and stop tokens exactly as `pipelines.serve.decode` does, so
its greedy outputs must match batched generation token for token (`bench/inference_throughput.py` and the
decoding tests check that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pipelines.serve.decode import DecodingConfig, Generation, generate_batched


def generate_one_at_a_time(
    model: Any, tokenizer: Any, descriptions: Sequence[str], config: DecodingConfig | None = None
) -> list[Generation]:
    """Greedy plans for `descriptions`, one `generate` call per description, in input order."""
    single = replace(config or DecodingConfig(), batch_size=1)
    return [generate_batched(model, tokenizer, [description], single)[0] for description in descriptions]
