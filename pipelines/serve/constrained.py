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

Grounding (`pipelines.serve.grounding`): the greedy processor also keeps every label a copy of text from
the row's own description, which no schema can say, and every volume, duration, temperature, speed, count,
tip size and channel an amount the description states for it (`pipelines.serve.amount_grounding`), every
vols list the description's next volume statement or its last one again (`pipelines.serve.volume_order`), every
well list its next well statement (`pipelines.serve.well_order`), the labware of a command with wells the label
the description writes next to them (`pipelines.serve.label_binding`), a liquid class on the Aspirate or Dispense
the description names it for (`pipelines.serve.liquid_class`), and no more PCR or MoveLabware steps than the
description has words for (`pipelines.serve.command_cues`). Coverage
(`pipelines.serve.coverage`): it keeps the commands array open while the description states a number or well
name the plan has not used.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from data_contracts.catalog import CHANNEL_MAX, catalog_json_schema
from pipelines.model.plan_layout import SEPARATORS
from pipelines.serve.amount_grounding import AmountRow
from pipelines.serve.command_cues import CommandCueRow
from pipelines.serve.coverage import CoverageRow
from pipelines.serve.grounding import GroundedFields, GroundedRow, GroundingVocab
from pipelines.serve.label_binding import LabelBindingRow
from pipelines.serve.liquid_class import LiquidClassRow
from pipelines.serve.volume_order import VolumeOrderRow
from pipelines.serve.well_order import WellOrderRow

# Lists that carry one element per channel (see the catalog's rules).
PER_CHANNEL_LISTS = ("wells", "vols", "srcWells", "dstWells")
# Candidates checked per step before giving up on grounding for that step (the grammar alone then
# decides). Lookups from the description give a few dozen; this bounds a pathological walk.
GROUNDING_SEARCH_LIMIT = 4096


@dataclass(frozen=True)
class DecodingLimits:
    """Bounds the grammar adds where the catalog sets none; far above anything a real plan needs."""

    max_commands: int = 32
    max_string_chars: int = 64
    max_list_items: int = CHANNEL_MAX
    # Magnitude bound for numbers without a maximum (seconds, volumes): 10^6 s is 11 days, 10^6 ul a litre.
    max_number: int = 1_000_000


LABEL_REF = "#/$defs/label"


class ValueRule(Protocol):
    """A batch row's rule on the values it writes (`AmountRow`, `LiquidClassRow`, `VolumeOrderRow`,
    `WellOrderRow`, `LabelBindingRow`): fed every generated token, it says whether a candidate token keeps the value
    it writes on one the description states."""

    def accept_bytes(self, token: bytes) -> None: ...

    def keeps_grounding(self, token: bytes) -> bool: ...


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
        # One shared rule instead of one regex per occurrence: compiling a bounded regex against the whole
        # vocabulary is slow, and the catalog has a dozen label fields (x8 after expansion).
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


class GrammarCache:
    """Compiled grammars per (tokenizer, vocab size, stop tokens, schema): compiling costs far more than a step.

    Tokenizers are keyed by identity; the cache holds a reference to each, so an id is never reused
    for a different tokenizer while its entry lives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> (tokenizer, TokenizerInfo, GrammarCompiler)
        self._compilers: dict[tuple[int, int, tuple[int, ...]], tuple[Any, Any, Any]] = {}
        self._grammars: dict[tuple[int, int, tuple[int, ...], str], Any] = {}
        self._grounding_vocabs: dict[tuple[int, int, tuple[int, ...]], GroundingVocab] = {}

    def _compiler_entry(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> tuple[Any, Any, Any]:
        """(tokenizer, TokenizerInfo, GrammarCompiler) for this key; call with the lock held."""
        import xgrammar as xgr

        key = (id(tokenizer), int(vocab_size), tuple(stop_token_ids))
        if key not in self._compilers:
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
            )
            self._compilers[key] = (tokenizer, info, xgr.GrammarCompiler(info, max_threads=2))
        return self._compilers[key]

    def compiled_grammar(
        self,
        tokenizer: Any,
        vocab_size: int,
        stop_token_ids: list[int],
        schema: dict[str, Any],
    ) -> Any:
        compiler_key = (id(tokenizer), int(vocab_size), tuple(stop_token_ids))
        # Key order matters: the grammar emits properties in schema order (the catalog order of canonical JSON).
        schema_text = json.dumps(schema, ensure_ascii=False)
        grammar_key = (*compiler_key, schema_text)
        with self._lock:
            if grammar_key in self._grammars:
                return self._grammars[grammar_key]
            compiler = self._compiler_entry(tokenizer, vocab_size, stop_token_ids)[2]
            # Exactly the model's layout (no other whitespace), so constrained output looks like a training target.
            compiled = compiler.compile_json_schema(schema_text, any_whitespace=False, separators=SEPARATORS)
            self._grammars[grammar_key] = compiled
            return compiled

    def grounding_vocab(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> GroundingVocab:
        """The token tables grounded decoding looks continuations up in, built once per tokenizer."""
        key = (id(tokenizer), int(vocab_size), tuple(stop_token_ids))
        with self._lock:
            if key not in self._grounding_vocabs:
                info = self._compiler_entry(tokenizer, vocab_size, stop_token_ids)[1]
                # Special tokens (<eoc>, chat markers) decode to their names, not to text a label can copy.
                special = {*getattr(tokenizer, "all_special_ids", ()), *info.special_token_ids, *stop_token_ids}
                self._grounding_vocabs[key] = GroundingVocab.build(info.decoded_vocab, special)
            return self._grounding_vocabs[key]


_CACHE = GrammarCache()


def model_vocab_size(model: Any) -> int:
    """Rows of the output layer: the logits' width, which can exceed len(tokenizer) (padded vocab)."""
    return int(model.get_output_embeddings().weight.shape[0])


def plan_logits_processor(
    model: Any,
    tokenizer: Any,
    eoc_token_id: int,
    limits: DecodingLimits | None = None,
    grounding_texts: Sequence[str] | None = None,
    grounded_wells: bool = False,
    coverage_texts: Sequence[str] | None = None,
    amount_texts: Sequence[str] | None = None,
    liquid_class_texts: Sequence[str] | None = None,
    volume_order_texts: Sequence[str] | None = None,
    well_order_texts: Sequence[str] | None = None,
    label_binding_texts: Sequence[str] | None = None,
    command_cue_texts: Sequence[str] | None = None,
) -> Any:
    """A fresh logits processor for one greedy `generate` call (xgrammar's processor is single use).

    `grounding_texts` (one per batch row, in row order: the text each row's labels may copy from) turns
    grounding on; `grounded_wells` extends it to the elements of wells, srcWells and dstWells.
    `coverage_texts` (one per row: the description whose values the plan must use) turns coverage on.
    `amount_texts` (one per row: the description whose amounts the plan's volumes, durations, temperatures,
    speeds, counts, tip sizes and channels must be) grounds amounts. `liquid_class_texts` (one per row: the
    description whose liquid classes go on the Aspirate or Dispense it names them for) grounds liquidClass.
    `volume_order_texts` (one per row: the description whose volume statements the vols lists follow in order)
    orders volumes. `well_order_texts` (one per row: the description whose well statements the well lists are, in
    order) orders well lists. `label_binding_texts` (one per row: the description whose labels go with the runs of
    wells next to them) binds the labware of commands with wells. `command_cue_texts` (one per row: the description
    whose words for PCR and MoveLabware steps bound how many the plan has) holds back those steps.
    """
    schema = _cached_decoding_schema(limits or DecodingLimits())
    vocab_size = model_vocab_size(model)
    compiled = _CACHE.compiled_grammar(tokenizer, vocab_size, [eoc_token_id], schema)
    # Built (once per tokenizer) even when this call does not ground, so that a warm-up call, like the
    # benchmark's compile step, prepares grounded decoding too.
    vocab = _CACHE.grounding_vocab(tokenizer, vocab_size, [eoc_token_id])
    rows = None
    if grounding_texts is not None:
        fields = GroundedFields.for_catalog(grounded_wells)
        rows = [GroundedRow(text.encode("utf-8"), vocab, fields) for text in grounding_texts]
    coverage = None if coverage_texts is None else [CoverageRow(text) for text in coverage_texts]
    value_rows = _value_rows(
        {
            AmountRow: amount_texts, LiquidClassRow: liquid_class_texts, VolumeOrderRow: volume_order_texts,
            WellOrderRow: well_order_texts, LabelBindingRow: label_binding_texts,
        }
    )
    names = None if command_cue_texts is None else [CommandCueRow(text) for text in command_cue_texts]
    return _greedy_processor_class()(compiled, rows, coverage, vocab.token_bytes, eoc_token_id, value_rows, names)


def _value_rows(texts_by_rule: Mapping[type[ValueRule], Sequence[str] | None]) -> list[list[ValueRule]] | None:
    """Each batch row's value rules (a rule whose texts are None is off), or None when no rule is on."""
    rules = [(rule, texts) for rule, texts in texts_by_rule.items() if texts is not None]
    if not rules:
        return None
    lengths = {len(texts) for _, texts in rules}
    if len(lengths) != 1:
        raise ValueError(f"value rule texts for batches of different sizes: {sorted(lengths)}")
    return [[rule(texts[i]) for rule, texts in rules] for i in range(lengths.pop())]


@functools.lru_cache(maxsize=1)
def _greedy_processor_class() -> type:
    import torch
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    class GreedyPlanLogitsProcessor(LogitsProcessor):
        """xgrammar's HF processor for greedy decoding: masks only the rows whose argmax the grammar forbids.

        Greedy decoding keeps the argmax; when a row's argmax is allowed it is also the argmax of the masked
        row (the first maximum among allowed tokens), so that row needs no mask. On CPU, applying the
        vocabulary-wide mask to every row dominates the grammar's cost per step (docs/benchmarks.md,
        "Inference throughput"); filling the mask (to know what is allowed) stays, and is cheap.

        With `grounded_rows` (one `GroundedRow` per batch row), a row whose pick would put text the
        description lacks into a label gets the best token that is both allowed and grounded instead
        (every other score set to -inf, so greedy takes it); see `pipelines.serve.grounding`. With
        `value_rows` (each row's `ValueRule`s), likewise for an amount or a liquid class the description does
        not state for its field. With `name_rows` (one `CommandCueRow` per row), likewise for a step the
        description has no word or amount left for.
        """

        def __init__(
            self,
            compiled_grammar: Any,
            grounded_rows: list[GroundedRow] | None = None,
            coverage_rows: list[CoverageRow] | None = None,
            token_bytes: Sequence[bytes] = (),
            stop_token_id: int | None = None,
            value_rows: list[list[ValueRule]] | None = None,
            name_rows: list[CommandCueRow] | None = None,
        ) -> None:
            super().__init__(compiled_grammar)
            self.grounded_rows = grounded_rows
            self.coverage_rows = coverage_rows
            self.value_rows = value_rows
            self.name_rows = name_rows
            self.token_bytes = token_bytes
            self.stop_token_id = stop_token_id
            self.stopped_rows: set[int] = set()  # ended by coverage with the stop token, outside the grammar

        def _start(self, batch_size: int) -> None:
            for rows, what in (
                (self.grounded_rows, "grounding"), (self.coverage_rows, "coverage"), (self.value_rows, "value rule"),
                (self.name_rows, "step bound"),
            ):
                if rows is not None and len(rows) != batch_size:
                    raise ValueError(f"{len(rows)} {what} texts for a batch of {batch_size} rows")
            self.batch_size = batch_size
            self.compiled_grammars = self.compiled_grammars * batch_size
            self.matchers = [xgr.GrammarMatcher(grammar) for grammar in self.compiled_grammars]
            self.token_bitmask = xgr.allocate_token_bitmask(batch_size, self.full_vocab_size)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if not self.matchers:  # first call: nothing generated yet
                self._start(input_ids.shape[0])
            else:
                for i, matcher in enumerate(self.matchers):
                    if not matcher.is_terminated() and i not in self.stopped_rows:
                        token = int(input_ids[i, -1])
                        if not matcher.accept_token(token):
                            raise RuntimeError(f"row {i}: the grammar rejected token {token}")
                        if self.grounded_rows is not None:
                            self.grounded_rows[i].accept(token)
                        if self.coverage_rows is not None:
                            self.coverage_rows[i].accept_bytes(self._bytes_of(token))
                        for rule in self.value_rows[i] if self.value_rows is not None else ():
                            rule.accept_bytes(self._bytes_of(token))
                        if self.name_rows is not None:
                            self.name_rows[i].accept_bytes(self._bytes_of(token))
            active = [i for i, matcher in enumerate(self.matchers)
                      if not matcher.is_terminated() and i not in self.stopped_rows]
            for i in active:
                self.matchers[i].fill_next_token_bitmask(self.token_bitmask, i)
            best = scores.argmax(dim=-1).cpu()
            words = self.token_bitmask[torch.arange(best.numel()), best // 32]
            forbidden = (((words >> (best % 32)) & 1) == 0).nonzero().flatten().tolist()
            if forbidden:
                self._mask_rows(scores, forbidden)
            if all(rows is None for rows in (self.grounded_rows, self.coverage_rows, self.value_rows, self.name_rows)):
                return scores
            if forbidden:
                best[forbidden] = scores[forbidden].argmax(dim=-1).cpu()
            for i in active:  # every row's pick is allowed by the grammar now
                if self.grounded_rows is not None:
                    self._pick_grounded(i, int(best[i]), scores)
                row = self.coverage_rows[i] if self.coverage_rows is not None else None
                if row is not None and row.done and self.stop_token_id is not None:
                    self._stop_row(i, scores)
                    continue
                self._pick_by_rules(i, scores, row)
                if row is not None:
                    self._keep_open_if_incomplete(i, int(scores[i].argmax()), scores)
            return scores

        def _bytes_of(self, token: int) -> bytes:
            return self.token_bytes[token] if token < len(self.token_bytes) else b""

        def _keep_open_if_incomplete(self, i: int, best: int, scores: Any) -> None:
            """Replace a pick that would close the plan by the best allowed one that does not, while the
            description states a value the plan has not used (`CoverageRow.must_stay_open`)."""
            row = self.coverage_rows[i]
            if not row.closes_plan(self._bytes_of(best)) or not row.must_stay_open(self._bytes_of(best)):
                return
            self._keep_best_allowed(i, scores, lambda token: not row.closes_plan(token))

        def _stop_row(self, i: int, scores: Any) -> None:
            """End a row that coverage found done (`CoverageRow.done`) with the stop token, wherever its JSON
            stands: its output is the plan as it stood then, and whatever the model would write next is cut.
            The grammar would not let an open command end here, so the row leaves the grammar."""
            scores[i].fill_(float("-inf"))
            scores[i, self.stop_token_id] = 0.0
            self.stopped_rows.add(i)

        def _mask_rows(self, scores: Any, rows: list[int]) -> None:
            xgr.apply_token_bitmask_inplace(scores, self.token_bitmask.to(scores.device), indices=rows)

        def _pick_grounded(self, i: int, best: int, scores: Any) -> None:
            """Replace the row's pick `best` (which the grammar allows) by the best grounded one, if it is not."""
            row = self.grounded_rows[i]
            if row.keeps_grounding(best):  # outside a value, only a token holding a quote can fail
                return
            if row.partial is None:  # a token that opens a value and carries ungrounded bytes: rare
                candidates = self._allowed_ids(i)
            else:
                candidates = row.continuations()
                candidates = candidates[_bits_set(self.token_bitmask[i], candidates)]
            chosen = self._first_grounded(row, candidates, scores[i], lambda token: self._keeps_values(i, token))
            # None: nothing grounded is allowed (e.g. a blank description), so the grammar alone decides.
            if chosen is not None and chosen != best:
                kept = scores[i, chosen].clone()
                scores[i].fill_(float("-inf"))
                scores[i, chosen] = kept

        def _pick_by_rules(self, i: int, scores: Any, coverage: CoverageRow | None) -> None:
            """Replace the row's pick by the best allowed token that every value rule of the row keeps
            (`ValueRule.keeps_grounding`), coverage allows (`CoverageRow.allows`: a command name the text
            leaves room for) and the row's step bounds allow (`CommandCueRow.allows`), when it is not one; when
            none pleases them all, coverage and the step bounds alone decide, and without either the grammar does.

            A value rule may hold back a command name too (`WellOrderRow`), but not while coverage forces the plan
            open: the forced commands only probe for a plan that uses more of the text (`CoverageRow.settle` keeps
            the plan from before forcing otherwise), and one steered away from the model's pick tends to reuse a
            stated number for an unrelated field, which such a probe counts as a use. A step the text has no word
            for is held back while forcing too: no gold plan has one, forced or not."""
            forcing = coverage is not None and coverage.forcing
            names = self.name_rows[i] if self.name_rows is not None else None

            def named_as_written(token: bytes) -> bool:
                return (coverage is None or coverage.allows(token)) and (names is None or names.allows(token))

            def abides(token: bytes) -> bool:
                if not named_as_written(token):
                    return False
                return (forcing and coverage.names_command(token)) or self._keeps_values(i, token)

            if abides(self._bytes_of(int(scores[i].argmax()))):
                return
            if not self._keep_best_allowed(i, scores, abides) and (coverage is not None or names is not None):
                self._keep_best_allowed(i, scores, named_as_written)

        def _keeps_values(self, i: int, token: bytes) -> bool:
            """Whether every value rule of row `i` keeps `token` (True when no value rule is on)."""
            return self.value_rows is None or all(rule.keeps_grounding(token) for rule in self.value_rows[i])

        def _keep_best_allowed(self, i: int, scores: Any, accepts: Callable[[bytes], bool]) -> bool:
            """Leave row `i` only the best token the grammar allows whose bytes `accepts` takes, and say whether
            there was one; when there is none (e.g. max_commands reached), the row stays as it is."""
            candidates = self._allowed_ids(i)
            order = torch.sort(scores[i, candidates].float().cpu(), descending=True, stable=True).indices
            for token in candidates[order].tolist():
                if scores[i, token] == float("-inf"):
                    return False  # masked: the grammar allows nothing after it
                if accepts(self._bytes_of(token)):
                    kept = scores[i, token].clone()
                    scores[i].fill_(float("-inf"))
                    scores[i, token] = kept
                    return True
            return False

        def _allowed_ids(self, i: int) -> Any:
            shifts = torch.arange(32, dtype=torch.int32)
            bits = ((self.token_bitmask[i].unsqueeze(1) >> shifts) & 1).flatten()[: self.full_vocab_size]
            return bits.nonzero().flatten()

        def _first_grounded(
            self, row: GroundedRow, candidates: Any, row_scores: Any, keeps_values: Callable[[bytes], bool]
        ) -> int | None:
            """The highest-scoring candidate that keeps the row grounded and its value rules kept (ties: the lower
            id, as argmax); the best grounded one when no grounded candidate keeps them. Only the pick survives
            this step, so a value rule that judged it afterwards could not steer it to another candidate."""
            if candidates.numel() == 0:
                return None
            candidate_scores = row_scores[candidates.to(row_scores.device)].float().cpu()
            order = torch.sort(candidate_scores, descending=True, stable=True).indices[:GROUNDING_SEARCH_LIMIT]
            best_grounded = None
            for token in candidates[order].tolist():
                if not row.keeps_grounding(token):
                    continue
                if keeps_values(self._bytes_of(token)):
                    return token
                if best_grounded is None:
                    best_grounded = token
            return best_grounded

    return GreedyPlanLogitsProcessor


def _bits_set(row_bitmask: Any, token_ids: Any) -> Any:
    """Which of `token_ids` the row's bitmask allows (bit i%32 of word i//32)."""
    return ((row_bitmask[token_ids // 32] >> (token_ids % 32)) & 1).bool()


@functools.lru_cache(maxsize=8)
def _cached_decoding_schema(limits: DecodingLimits) -> dict[str, Any]:
    return decoding_schema(limits=limits)
