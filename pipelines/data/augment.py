"""Normalized samples -> the augmented, long-tail-weighted training set.

Rows: every sample x its prompt templates x the instruction variants.
- Templates: with `template_languages: matched` a zh sample gets the zh_* templates and an en sample
  the en_* ones (a lab writes its notes in one language); with `all`, every sample gets every template.
- Variants: `without_prefix` is the normalized description; `with_prefix` numbers each line again,
  reusing the raw text's own marker ("步骤3:", "Step 2.") where it had one, else "行N:" / "Line N:".

Weights (one per sample, shared by its rows):
1. rarity: let n(c) be the number of samples containing command c and n_max the largest n(c);
   a sample's base weight is min(weight_cap, sqrt(n_max / n(rarest command of the sample))).
   The square root boosts the tail without letting 5 samples drown out 5,000.
2. exposure floor: exposure(c) = sum of the weights of the train rows whose command_names contain c.
   For each command, lowest exposure first, if exposure(c) < min_train_exposure the train rows
   containing c are scaled by min_train_exposure / exposure(c). Scaling only raises weights, so a
   command that reached the floor stays there; the floor may lift a weight above weight_cap.
   Eval rows keep their base weights (they are never trained on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.tables import EOC_TOKEN
from pipelines.config import AugmentParams
from pipelines.data.lake import AUGMENTED_TABLE, SCHEMAS
from pipelines.data.normalize import detect_lang, line_prefixes
from pipelines.data.split import TRAIN, assign_splits

WITH_PREFIX = "with_prefix"
WITHOUT_PREFIX = "without_prefix"
_DEFAULT_PREFIX = {"zh": "行{n}:", "en": "Line {n}:"}


def with_prefix(normalized: str, raw_input: str, lang: str) -> str:
    lines = normalized.split("\n")
    prefixes = line_prefixes(raw_input)
    if len(prefixes) != len(lines):
        prefixes = [""] * len(lines)
    joiner = "" if lang == "zh" else " "
    out = []
    for number, (prefix, line) in enumerate(zip(prefixes, lines), start=1):
        prefix = prefix or _DEFAULT_PREFIX[lang].format(n=number)
        out.append(f"{prefix}{joiner}{line}")
    return "\n".join(out)


def templates_for(params: AugmentParams, lang: str) -> list[str]:
    names = list(params.templates)
    if params.template_languages == "all":
        return names
    return [name for name in names if name.startswith(f"{lang}_")]


@dataclass(frozen=True)
class AugmentResult:
    table: pd.DataFrame
    # The same rows as Arrow, the form written to Delta (no second conversion of the largest table of the pipeline).
    arrow: pa.Table
    # One row per command: samples, train/eval sources, train rows, train exposure before and after weighting.
    distribution: pd.DataFrame
    single_source_commands: list[str] = field(default_factory=list)
    unstratified_commands: list[str] = field(default_factory=list)


def sample_weights(
    command_matrix: np.ndarray,
    is_train: np.ndarray,
    rows_per_sample: np.ndarray,
    weight_cap: float,
    min_train_exposure: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(base weights, final weights) per sample; `command_matrix` is samples x commands (bool)."""
    n_samples = command_matrix.shape[0]
    if n_samples == 0:
        return np.zeros(0), np.zeros(0)
    counts = command_matrix.sum(axis=0).astype(float)
    ratio = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
    rarest_ratio = (command_matrix * ratio).max(axis=1)
    base = np.minimum(weight_cap, np.sqrt(np.maximum(rarest_ratio, 1.0)))
    final = base.copy()
    train_rows = np.where(is_train, rows_per_sample, 0).astype(float)
    while True:
        exposure = (final * train_rows) @ command_matrix
        present = (train_rows @ command_matrix) > 0
        short = np.flatnonzero(present & (exposure < min_train_exposure * (1 - 1e-12)))
        if short.size == 0:
            return base, final
        command = short[np.argmin(exposure[short])]
        rows = command_matrix[:, command] & is_train
        final[rows] *= min_train_exposure / exposure[command]


def build_rows(
    sids: list[str],
    descriptions: dict[str, list[str]],
    completions: list[str],
    names: list[list[str]],
    langs: list[str],
    weights: np.ndarray,
    splits: np.ndarray,
    combos_by_lang: dict[str, list[tuple[str, str]]],
    templates: dict[str, str],
) -> pa.Table:
    """One row per (sample, template, variant), samples in order, built with Arrow kernels.

    The table reaches ~1M rows for 100k samples, so strings are joined column-wise in C++
    instead of formatting one Python string per row.
    """
    schema = SCHEMAS[AUGMENTED_TABLE]
    combos = list(dict.fromkeys(combo for lang in ("zh", "en") for combo in combos_by_lang[lang]))
    if not sids or not combos:
        return schema.empty_table()
    combo_id = {combo: i for i, combo in enumerate(combos)}
    lang_codes = np.array([0 if lang == "zh" else 1 for lang in langs], dtype=np.int64)
    per_lang = [[combo_id[c] for c in combos_by_lang[lang]] for lang in ("zh", "en")]
    counts = np.array([len(ids) for ids in per_lang], dtype=np.int64)[lang_codes]
    width = max(1, max(len(ids) for ids in per_lang))
    lookup = np.full((2, width), -1, dtype=np.int64)
    for code, ids in enumerate(per_lang):
        lookup[code, : len(ids)] = ids

    position = np.repeat(np.arange(len(sids), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    offset = np.arange(len(position), dtype=np.int64) - np.repeat(starts, counts)
    combo = lookup[lang_codes[position], offset]
    position_arr = pa.array(position)
    combo_arr = pa.array(combo)

    heads, tails = zip(*(templates[template].split("{description}") for template, _ in combos))
    # One take over [without..., with...] instead of an if_else over two full-length takes.
    is_with = np.array([variant == WITH_PREFIX for _, variant in combos], dtype=np.int64)[combo]
    description = pc.take(
        pa.array(descriptions[WITHOUT_PREFIX] + descriptions[WITH_PREFIX], pa.string()),
        pa.array(position + is_with * len(sids)),
    )
    source = pc.take(pa.array(sids, pa.string()), position_arr)
    columns = {
        "sample_id": pc.binary_join_element_wise(
            source, pc.take(pa.array([f"{t}-{v}" for t, v in combos]), combo_arr), "-"
        ),
        "source_index": source,
        "template": pc.take(pa.array([t for t, _ in combos]), combo_arr),
        "variant": pc.take(pa.array([v for _, v in combos]), combo_arr),
        "prompt": pc.binary_join_element_wise(
            pc.take(pa.array(heads, pa.string()), combo_arr),
            description,
            pc.take(pa.array(tails, pa.string()), combo_arr),
            "",
        ),
        "completion": pc.take(pa.array(completions, pa.string()), position_arr),
        "command_names": pc.take(pa.array(names, pa.list_(pa.string())), position_arr),
        "weight": pa.array(np.asarray(weights, dtype=np.float64)[position]),
        "split": pc.take(pa.array(list(splits), pa.string()), position_arr),
    }
    return pa.table(columns, schema=schema)


def augment_samples(samples: pd.DataFrame, params: AugmentParams) -> AugmentResult:
    sids = samples["source_index"].tolist()
    names = [list(n) for n in samples["command_names"].tolist()]
    normalized = samples["input_text"].tolist()
    langs = samples["lang"].tolist() if "lang" in samples else [detect_lang(t) for t in normalized]
    raw_inputs = samples["raw_input"].tolist()
    completions = [cmds + EOC_TOKEN for cmds in samples["commands_json"].tolist()]

    split = assign_splits(sids, names, params.eval_fraction, params.split_seed)
    sample_split = np.array([split.split_of[sid] for sid in sids], dtype=object)

    commands = sorted({name for row in names for name in row})
    column = {name: i for i, name in enumerate(commands)}
    matrix = np.zeros((len(sids), len(commands)), dtype=bool)
    for i, row in enumerate(names):
        matrix[i, [column[name] for name in row]] = True

    combos_by_lang = {
        lang: [(t, v) for t in templates_for(params, lang) for v in params.variants] for lang in ("zh", "en")
    }
    rows_per_sample = np.array([len(combos_by_lang[lang]) for lang in langs], dtype=np.int64)
    is_train = sample_split == TRAIN
    base, final = sample_weights(matrix, is_train, rows_per_sample, params.weight_cap, params.min_train_exposure)

    with_prefix_texts = (
        [with_prefix(n, r, lang) for n, r, lang in zip(normalized, raw_inputs, langs)]
        if WITH_PREFIX in params.variants
        else normalized
    )
    arrow = build_rows(
        sids=sids,
        descriptions={WITHOUT_PREFIX: normalized, WITH_PREFIX: with_prefix_texts},
        completions=completions,
        names=names,
        langs=langs,
        weights=final,
        splits=sample_split,
        combos_by_lang=combos_by_lang,
        templates=params.templates,
    )

    train_rows = np.where(is_train, rows_per_sample, 0)
    distribution = pd.DataFrame(
        {
            "command": commands,
            "samples": matrix.sum(axis=0),
            "train_sources": matrix[is_train].sum(axis=0),
            "eval_sources": matrix[~is_train].sum(axis=0),
            "train_rows": train_rows @ matrix,
            "exposure_base_weight": (base * train_rows) @ matrix,
            "exposure_weighted": (final * train_rows) @ matrix,
        }
    )
    return AugmentResult(
        table=arrow.to_pandas(),
        arrow=arrow,
        distribution=distribution,
        single_source_commands=split.single_source_commands,
        unstratified_commands=split.unstratified_commands,
    )
