"""Constrained decoding: the catalog's JSON Schema as an xgrammar grammar, followed by `<eoc>`.

The schema comes from `data_contracts.catalog.catalog_json_schema()`. Before compiling, it is tightened
in two ways that only make it stricter (every output it allows, the catalog schema allows too):

- per-channel lists (`wells`, `vols`, `srcWells`, `dstWells`) get exactly as many items as `channels`,
  by expanding each such command into one alternative per channel count. JSON Schema cannot relate two
  lengths, but a grammar with one branch per length can, so `length_mismatch` cannot be generated;
- unbounded strings, lists and numbers get decoding bounds (`DecodingLimits`), so even an untrained
  model reaches the end of the JSON within a finite number of tokens; free-text labels (one shared
  `$defs/label` rule) must start with a visible character (the catalog's `empty_string` rule) and
  contain no quote, backslash or control character.

What stays for `validate_commands` after decoding: duplicate channels, tip capacity, a tip on the
channel before liquid handling; those depend on other values or on earlier commands.

The grammar's only stop token is `<eoc>`: once the JSON object is complete, `<eoc>` is the one token
left to generate, so constrained output always ends with the terminator the model was trained on.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from dataclasses import dataclass
from typing import Any

from data_contracts.catalog import CHANNEL_MAX, catalog_json_schema

# Lists that carry one element per channel (see the catalog's rules).
PER_CHANNEL_LISTS = ("wells", "vols", "srcWells", "dstWells")


@dataclass(frozen=True)
class DecodingLimits:
    """Bounds the grammar adds where the catalog sets none; far above anything a real plan needs."""

    max_commands: int = 32
    max_string_chars: int = 64
    max_list_items: int = CHANNEL_MAX
    # Magnitude bound for numbers without a maximum (seconds, volumes): 10^6 s is 11 days, 10^6 ul a litre.
    max_number: int = 1_000_000


LABEL_REF = "#/$defs/label"


def _label_schema(limits: DecodingLimits) -> dict[str, Any]:
    # Starts with a visible character (the catalog rejects blank labels), no quote, backslash or control
    # character (keeps the string one plain JSON token sequence). xgrammar ignores minLength/maxLength
    # next to a pattern, so the pattern carries both bounds.
    return {"type": "string", "pattern": r'^[^\s"\\][^"\\\x00-\x1f]{0,%d}$' % (limits.max_string_chars - 1)}


def _bound(node: Any, limits: DecodingLimits) -> None:
    """Add missing bounds in place, recursively; free-text strings become a reference to the one label rule."""
    if isinstance(node, list):
        for item in node:
            _bound(item, limits)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "string" and not {"enum", "const", "pattern"} & node.keys():
        # One shared rule instead of one regex per occurrence: compiling a bounded regex against a 49k
        # vocabulary costs seconds, and the catalog has a dozen label fields (x8 after expansion).
        node.clear()
        node["$ref"] = LABEL_REF
        return
    if kind == "array":
        node.setdefault("maxItems", limits.max_list_items)
    elif kind in ("number", "integer"):
        node.setdefault("maximum", limits.max_number)
    for value in node.values():
        _bound(value, limits)


def _expand_per_channel(command_schema: dict[str, Any]) -> list[dict[str, Any]]:
    """One alternative per channel count for a command whose lists go one per channel."""
    params = command_schema["properties"]["func_parameters"]["properties"]
    per_channel = [name for name in PER_CHANNEL_LISTS if name in params]
    if "channels" not in params or not per_channel:
        return [command_schema]
    low = params["channels"].get("minItems", 1)
    high = params["channels"].get("maxItems", CHANNEL_MAX)
    variants = []
    for count in range(low, high + 1):
        variant = copy.deepcopy(command_schema)
        variant_params = variant["properties"]["func_parameters"]["properties"]
        for name in ("channels", *per_channel):
            variant_params[name]["minItems"] = count
            variant_params[name]["maxItems"] = count
        variants.append(variant)
    return variants


def decoding_schema(schema: dict[str, Any] | None = None, limits: DecodingLimits | None = None) -> dict[str, Any]:
    """The catalog plan schema, tightened for decoding (see the module docstring)."""
    schema = copy.deepcopy(schema if schema is not None else catalog_json_schema())
    limits = limits or DecodingLimits()
    items = schema["properties"]["commands"]["items"]
    alternatives = items["anyOf"] if "anyOf" in items else [items]
    items.clear()
    items["anyOf"] = [variant for command in alternatives for variant in _expand_per_channel(command)]
    schema["properties"]["commands"].setdefault("maxItems", limits.max_commands)
    _bound(schema, limits)
    schema["$defs"] = {"label": _label_schema(limits)}
    return schema


# Canonical JSON (`render_json_commands`) uses json.dumps' default separators and no other whitespace;
# the grammar allows exactly that layout, so constrained output already looks like a training target.
_SEPARATORS = (", ", ": ")


class GrammarCache:
    """Compiled grammars per (tokenizer, vocab size, stop tokens, schema): compiling costs far more than a step.

    Tokenizers are keyed by identity; the cache holds a reference to each, so an id is never reused
    for a different tokenizer while its entry lives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compilers: dict[tuple[int, int, tuple[int, ...]], tuple[Any, Any]] = {}
        self._grammars: dict[tuple[int, int, tuple[int, ...], str], Any] = {}

    def compiled_grammar(
        self,
        tokenizer: Any,
        vocab_size: int,
        stop_token_ids: list[int],
        schema: dict[str, Any],
    ) -> Any:
        import xgrammar as xgr

        compiler_key = (id(tokenizer), int(vocab_size), tuple(stop_token_ids))
        # Key order matters: the grammar emits properties in schema order (the catalog order of canonical JSON).
        schema_text = json.dumps(schema, ensure_ascii=False)
        grammar_key = (*compiler_key, schema_text)
        with self._lock:
            if grammar_key in self._grammars:
                return self._grammars[grammar_key]
            if compiler_key not in self._compilers:
                info = xgr.TokenizerInfo.from_huggingface(
                    tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
                )
                self._compilers[compiler_key] = (tokenizer, xgr.GrammarCompiler(info, max_threads=2))
            compiler = self._compilers[compiler_key][1]
            compiled = compiler.compile_json_schema(schema_text, any_whitespace=False, separators=_SEPARATORS)
            self._grammars[grammar_key] = compiled
            return compiled


_CACHE = GrammarCache()


def model_vocab_size(model: Any) -> int:
    """Rows of the output layer: the logits' width, which can exceed len(tokenizer) (padded vocab)."""
    return int(model.get_output_embeddings().weight.shape[0])


def plan_logits_processor(
    model: Any,
    tokenizer: Any,
    eoc_token_id: int,
    limits: DecodingLimits | None = None,
) -> Any:
    """A fresh logits processor for one greedy `generate` call (xgrammar's processor is single use)."""
    schema = _cached_decoding_schema(limits or DecodingLimits())
    compiled = _CACHE.compiled_grammar(tokenizer, model_vocab_size(model), [eoc_token_id], schema)
    return _greedy_processor_class()(compiled)


@functools.lru_cache(maxsize=1)
def _greedy_processor_class() -> type:
    import torch
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    class GreedyPlanLogitsProcessor(LogitsProcessor):
        """xgrammar's HF processor for greedy decoding: masks only the rows whose argmax the grammar forbids.

        Greedy decoding keeps the argmax; when a row's argmax is allowed it is also the argmax of the masked
        row (the first maximum among allowed tokens), so that row needs no mask. On CPU, applying the
        49k-wide mask to every row is most of the grammar's cost per step (bench/inference_throughput.py);
        filling the mask (to know what is allowed) stays, and is cheap.
        """

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if not self.matchers:  # first call: the parent allocates matchers and the bitmask
                return super().__call__(input_ids, scores)
            for i, matcher in enumerate(self.matchers):
                if not matcher.is_terminated():
                    if not matcher.accept_token(int(input_ids[i, -1])):
                        raise RuntimeError(f"row {i}: the grammar rejected token {int(input_ids[i, -1])}")
            for i, matcher in enumerate(self.matchers):
                if not matcher.is_terminated():
                    matcher.fill_next_token_bitmask(self.token_bitmask, i)
            best = scores.argmax(dim=-1).cpu()
            words = self.token_bitmask[torch.arange(best.numel()), best // 32]
            forbidden = (((words >> (best % 32)) & 1) == 0).nonzero().flatten().tolist()
            if forbidden:
                xgr.apply_token_bitmask_inplace(scores, self.token_bitmask.to(scores.device), indices=forbidden)
            return scores

    return GreedyPlanLogitsProcessor


@functools.lru_cache(maxsize=8)
def _cached_decoding_schema(limits: DecodingLimits) -> dict[str, Any]:
    return decoding_schema(limits=limits)
