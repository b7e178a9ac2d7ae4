"""Greedy generation of command plans, a batch of descriptions per `generate` call.

Prompts come from `pipelines.model.prompts` only, and generation stops on `<eoc>` (and the tokenizer's eos).
Greedy decoding is deterministic, so a description gives the same tokens in a batch as alone; the
unoptimized baseline the benchmark compares against (`bench/baseline_decode.py`, one `generate` call per
description), `bench/inference_throughput.py` and the tests check that.

Batches are left-padded with an attention mask: generation appends on the right, so every row's
last prompt token sits in the same column, and transformers derives position ids from the mask, so a
padded row sees the same positions as the row alone. Descriptions are grouped by prompt length before
batching (less padding, less wasted compute); results come back in input order.

Every prompt starts with the same chat-template tokens and system prompt (most of a prompt's tokens),
so a batch runs that shared prefix once, copies its keys and values into every row of a static cache
and prefills only the suffixes: the padding then sits between prefix and suffix, where the mask hides
it and the positions derived from the mask stay those of the row alone.

Constrained decoding is grounded by default: labels may only copy text from the row's own user message
(the normalized description, `serving_user_message`), see `pipelines.serve.grounding`. Each row's
processor state is its own, so grounding keeps a row's tokens the same in a batch as alone.

Constrained decoding is coverage-guided by default too (`pipelines.serve.coverage`): a plan may not end
while its description states a number, well name or ASCII label it has not used, or a word for tips it has no
GetDiti or DropDiti for (unless going on yields no valid plan that uses more: then the plan the model closed is
the output); a GetDiti or DropDiti is named only where the text has a word for tips left for it; a command that
states nothing new is cut from the output with all after it, and a row stops with its stop token as soon as
its plan is complete.

And its amounts are grounded by default (`pipelines.serve.amount_grounding`): a volume, duration, temperature,
speed or count is a number the description writes with that unit, a tip size is the one written before the
command's word for tips, and channels are stated numbers in rising order. A liquid class the text names goes on
the Aspirate or Dispense it names it for (`pipelines.serve.liquid_class`). Vols lists follow the text's volume
statements in order (`pipelines.serve.volume_order`), and well lists its runs of wells
(`pipelines.serve.well_order`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from data_contracts.tables import EOC_TOKEN
from pipelines.model.prompts import build_prompt_ids, serving_user_message
from pipelines.serve.constrained import DecodingLimits, plan_logits_processor

# The longest gold plan of the generated corpus is 579 tokens (SmolLM2's tokenizer), and 6% are over 384:
# a budget below the longest plan turns a right plan into a cut-off one.
MAX_PLAN_TOKENS = 640


@dataclass(frozen=True)
class DecodingConfig:
    max_new_tokens: int = MAX_PLAN_TOKENS
    batch_size: int = 16
    constrained: bool = True
    # Labels (labware, program, position, liquidClass) only copy text from the description; needs constrained.
    grounded: bool = True
    # Ground well names too. Off: a range ("A1-D1" on 4 channels) names wells the text never spells out (B1, C1).
    grounded_wells: bool = False
    # Volumes, durations, temperatures, speeds, counts and tip sizes are amounts the text states for them; needs
    # constrained.
    grounded_amounts: bool = True
    # A liquid class the text names goes on the Aspirate or Dispense it names it for, and on no other; needs
    # constrained.
    grounded_liquid_class: bool = True
    # Each vols list is the text's next volume statement or its last one again, never skipping one; needs
    # constrained.
    grounded_volume_order: bool = True
    # The k-th well list is the text's k-th well statement, and none comes after the last; needs constrained.
    grounded_well_order: bool = True
    # The labware of a command with wells is the label the text writes next to them; needs constrained.
    grounded_label_binding: bool = True
    # No more PCR or MoveLabware steps than the text has words for; needs constrained.
    grounded_command_cues: bool = True
    # No plan ends leaving a stated value unused, and none goes on restating used ones; needs constrained.
    coverage: bool = True
    limits: DecodingLimits = field(default_factory=DecodingLimits)
    eoc_token: str = EOC_TOKEN


@dataclass(frozen=True)
class Generation:
    """One description's output. `text` is the model's output without padding or the stop token, as coverage
    settled it (`CoverageRow.settle`, `trim_plan_text`); `token_ids` are what the model generated."""

    text: str
    token_ids: tuple[int, ...]  # generated ids, stop token included when there was one
    stopped: bool  # ended on a stop token (False: cut off at max_new_tokens)
    latency_s: float  # wall time of the generate call that produced it (its whole batch)

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class _Prompt:
    user_message: str  # what the model reads, and the only text grounded labels may copy
    ids: list[int]


def _prompts_for(tokenizer: Any, descriptions: Sequence[str]) -> list[_Prompt]:
    messages = [serving_user_message(description) for description in descriptions]
    return [_Prompt(message, build_prompt_ids(tokenizer, message)) for message in messages]


def prompt_ids_for(tokenizer: Any, descriptions: Sequence[str]) -> list[list[int]]:
    return [prompt.ids for prompt in _prompts_for(tokenizer, descriptions)]


def _stop_ids(tokenizer: Any, eoc_token: str) -> list[int]:
    from pipelines.model.model_io import stop_token_ids

    return stop_token_ids(tokenizer, eoc_token)


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Leading tokens every row has, leaving each row at least one token of its own to prefill."""
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def _prefilled_cache(model: Any, prefix: list[int], rows: int, max_length: int) -> Any:
    """A static KV cache for `rows` rows of up to `max_length` tokens, holding `prefix` (run once) in every row.

    Static rather than dynamic: a dynamic cache concatenates every layer's keys and values at each decoding
    step, which costs more as the outputs grow, while a static one writes in place with the same greedy
    outputs (docs/benchmarks.md, "Inference throughput"). Call under inference_mode.
    """
    import torch
    from transformers import DynamicCache, StaticCache

    device = next(model.parameters()).device
    cache = StaticCache(config=model.config, max_cache_len=max_length)
    if not prefix:
        return cache
    prefix_cache = DynamicCache(config=model.config)
    prefix_ids = torch.tensor([prefix], device=device)
    model(input_ids=prefix_ids, past_key_values=prefix_cache, use_cache=True, logits_to_keep=1)
    positions = torch.arange(len(prefix), device=device)
    for index, layer in enumerate(prefix_cache.layers):
        keys = layer.keys.expand(rows, -1, -1, -1).contiguous()
        values = layer.values.expand(rows, -1, -1, -1).contiguous()
        cache.update(keys, values, index, {"cache_position": positions})
    return cache


def _generate(model: Any, tokenizer: Any, prompts: list[_Prompt], config: DecodingConfig) -> list[Generation]:
    """One `generate` call over `prompts`: the shared prefix once, the suffixes left-padded after it."""
    import torch

    rows = [prompt.ids for prompt in prompts]
    stop_ids = _stop_ids(tokenizer, config.eoc_token)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[-1]
    prefix = shared_prefix_length(rows) if len(rows) > 1 else 0
    input_ids, attention_mask = _padded_after_prefix(rows, prefix, pad_id)
    width = input_ids.shape[1]
    device = next(model.parameters()).device
    processors = []
    if config.constrained:
        texts = [prompt.user_message for prompt in prompts]
        processors.append(
            plan_logits_processor(
                model, tokenizer, stop_ids[0], config.limits,
                grounding_texts=texts if config.grounded else None, grounded_wells=config.grounded_wells,
                coverage_texts=texts if config.coverage else None,
                amount_texts=texts if config.grounded_amounts else None,
                liquid_class_texts=texts if config.grounded_liquid_class else None,
                volume_order_texts=texts if config.grounded_volume_order else None,
                well_order_texts=texts if config.grounded_well_order else None,
                label_binding_texts=texts if config.grounded_label_binding else None,
                command_cue_texts=texts if config.grounded_command_cues else None,
            )
        )
    coverage_rows = processors[0].coverage_rows if processors else None
    started = time.perf_counter()
    with torch.inference_mode():
        # A single row has no prefix to share: it keeps transformers' default cache, as the unoptimized
        # baseline does.
        cache = None
        if len(rows) > 1:
            cache = _prefilled_cache(model, rows[0][:prefix], len(rows), width + config.max_new_tokens)
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            past_key_values=cache,
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            logits_processor=processors or None,
        )
    latency = time.perf_counter() - started
    generations = [
        _to_generation(tokenizer, output[i, width:].tolist(), stop_ids, pad_id, latency) for i in range(len(rows))
    ]
    if coverage_rows is not None:
        generations = [
            replace(generation, text=row.settle(generation.text))
            for generation, row in zip(generations, coverage_rows, strict=True)
        ]
    return generations


def _padded_after_prefix(rows: list[list[int]], prefix: int, pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask): the shared prefix first, then each row's suffix left-padded to one width."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :prefix] = torch.tensor(row[:prefix], dtype=torch.long)
        input_ids[i, width - (len(row) - prefix) :] = torch.tensor(row[prefix:], dtype=torch.long)
        attention_mask[i, :prefix] = 1
        attention_mask[i, width - (len(row) - prefix) :] = 1
    return input_ids, attention_mask


def _to_generation(tokenizer: Any, new_ids: list[int], stop_ids: list[int], pad_id: int, latency: float) -> Generation:
    # generate pads finished rows on the right; the first stop token ends the output.
    stop_at = next((i for i, token in enumerate(new_ids) if token in stop_ids), None)
    if stop_at is not None:
        kept, body = new_ids[: stop_at + 1], new_ids[:stop_at]
    else:
        kept = body = new_ids
    text = tokenizer.decode(body, skip_special_tokens=False)
    return Generation(text=text, token_ids=tuple(kept), stopped=stop_at is not None, latency_s=latency)


def generate_batched(
    model: Any,
    tokenizer: Any,
    descriptions: Sequence[str],
    config: DecodingConfig | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Generation]:
    """Greedy plans for `descriptions`, `config.batch_size` at a time, in input order.

    `on_batch(done, total)` is called after each batch with the number of descriptions generated so far.
    """
    config = config or DecodingConfig()
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    prompts = _prompts_for(tokenizer, descriptions)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].ids))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), config.batch_size):
        chunk = order[start : start + config.batch_size]
        generations = _generate(model, tokenizer, [prompts[i] for i in chunk], config)
        # strict: a batch that returned a different number of rows would pair outputs with the wrong descriptions.
        for index, generation in zip(chunk, generations, strict=True):
            results[index] = generation
        if on_batch is not None:
            on_batch(start + len(chunk), len(order))
    return [results[index] for index in range(len(prompts))]

