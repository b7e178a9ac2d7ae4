"""The rows a LoRA run trains and evaluates on, tokenized through the one prompt builder.

- Completion-only loss: every row is tokenized through `pipelines.model.prompts`, prompt positions get label -100,
  so TRL uses our ids as they are and the model is trained on exactly the prompt ids evaluation and `predict` build.
- Sample weights: the augmented set's long-tail `weight` becomes each row's `sample_weight`, normalized to mean 1
  so it shifts emphasis, not the learning rate; evaluation rows stay unweighted.
- Decision tokens: `token_weights` weighs the tokens where a plan is decided (`decision_token_flags`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.config import ROW_SAMPLINGS, TrainConfig
from pipelines.model.plan_layout import ITEM_SEPARATOR, model_target, string_opener
from pipelines.model.prompts import build_completion_ids, build_prompt_ids


def select_rows(df: pd.DataFrame, split: str, limit: int | None, seed: int, sampling: str = "uniform") -> pd.DataFrame:
    """At most `limit` rows of `split`, drawn without replacement (uniformly, or in proportion to `weight`)."""
    if sampling not in ROW_SAMPLINGS:
        raise ValueError(f"row_sampling must be one of {ROW_SAMPLINGS}, got {sampling!r}")
    rows = df[df["split"] == split]
    if limit is not None and len(rows) > limit:
        if sampling == "weighted":
            # Efraimidis-Spirakis: the `limit` largest keys u**(1/w) are a weighted draw without replacement
            # (pandas refuses one when a few weights dominate, which is the long tail's whole point).
            import numpy as np

            uniform = np.random.default_rng(seed).random(len(rows))
            keys = np.log(uniform) / rows["weight"].to_numpy(dtype=float)
            rows = rows.iloc[np.argsort(-keys, kind="stable")[:limit]]
        else:
            rows = rows.sample(n=limit, random_state=seed)
    return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)


# Where a plan is decided, in the model's layout: the first character of a command name, and the character after
# a command's closing braces ("," goes on to another command, "]" ends the plan).
_COMMAND_NAME_START = re.compile(re.escape(string_opener("func_name").decode()))
_COMMAND_END = re.compile(r"\}\}(?=" + re.escape(ITEM_SEPARATOR) + r"\{|\]\})")


def decision_token_flags(tokenizer: Any, completion: str) -> list[bool]:
    """Per token of `build_completion_ids(completion)`: whether it holds a decision character of the plan."""
    target = model_target(completion)
    encoded = tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != build_completion_ids(tokenizer, completion):
        raise ValueError("the tokenizer's offsets do not follow the completion ids the prompt builder makes")
    decisions = sorted(
        {match.end() for match in _COMMAND_NAME_START.finditer(target)}
        | {match.end() for match in _COMMAND_END.finditer(target)}
    )
    return [any(start <= char < end for char in decisions) for start, end in encoded["offset_mapping"]]


def tokenize_rows(
    rows: pd.DataFrame,
    tokenizer: Any,
    max_length: int,
    normalize_weights: bool = True,
    decision_token_weight: float = 1.0,
) -> tuple[Any, int]:
    """Rows -> a datasets.Dataset of input_ids / labels (prompt masked) / sample_weight / token_weights.

    A row longer than `max_length` is dropped rather than truncated: a cut target would teach the model
    to stop without `<eoc>`. `token_weights` (one per input id) is `decision_token_weight` on the completion's
    decision tokens (`decision_token_flags`) and 1 elsewhere.
    """
    from datasets import Dataset

    records = []
    for row in rows.itertuples(index=False):
        prompt_ids = build_prompt_ids(tokenizer, row.prompt)
        completion_ids = build_completion_ids(tokenizer, row.completion)
        if len(prompt_ids) + len(completion_ids) > max_length:
            continue
        if decision_token_weight == 1.0:
            completion_weights = [1.0] * len(completion_ids)
        else:
            flags = decision_token_flags(tokenizer, row.completion)
            completion_weights = [decision_token_weight if flag else 1.0 for flag in flags]
        records.append({
            "input_ids": prompt_ids + completion_ids,
            "labels": [-100] * len(prompt_ids) + completion_ids,
            "sample_weight": float(getattr(row, "weight", 1.0)),
            "token_weights": [1.0] * len(prompt_ids) + completion_weights,
            "sample_id": str(row.sample_id),
        })
    if not records:
        raise ValueError(f"no training rows fit max_length={max_length}")
    if normalize_weights:
        mean = sum(r["sample_weight"] for r in records) / len(records)
        for record in records:
            record["sample_weight"] = record["sample_weight"] / mean if mean > 0 else 1.0
    return Dataset.from_list(records), len(rows) - len(records)


@dataclass(frozen=True)
class TrainingDatasets:
    """The selected rows of both splits and their tokenized datasets (`datasets.Dataset`)."""

    train_rows: pd.DataFrame
    eval_rows: pd.DataFrame
    train: Any
    eval: Any
    dropped_train: int  # rows over max_length
    dropped_eval: int

    def describe(self) -> str:
        return (f"train rows {len(self.train)} (dropped {self.dropped_train} over max_length), "
                f"eval rows {len(self.eval)}")

    def data_used(self) -> dict[str, list[str]]:
        """What the run really saw: profiles may train on a subset of the split."""
        return {
            "train_source_index": _used_sources(self.train_rows, self.train["sample_id"]),
            "eval_source_index": _used_sources(self.eval_rows, self.eval["sample_id"]),
            "train_sample_ids": sorted(self.train["sample_id"]),
            "eval_sample_ids": sorted(self.eval["sample_id"]),
        }


def build_datasets(config: TrainConfig, data: pd.DataFrame, tokenizer: Any) -> TrainingDatasets:
    """The `train` split's rows (sampled and weighted per `config`) and the `eval` split's, tokenized."""
    train_rows = select_rows(data, "train", config.max_train_samples, config.seed, config.row_sampling)
    eval_rows = select_rows(data, "eval", config.max_eval_samples, config.seed)
    train_dataset, dropped_train = tokenize_rows(
        train_rows, tokenizer, config.max_length, config.use_sample_weights, config.decision_token_weight
    )
    eval_dataset, dropped_eval = tokenize_rows(eval_rows, tokenizer, config.max_length, normalize_weights=False)
    if not config.use_sample_weights:
        train_dataset = train_dataset.map(lambda _: {"sample_weight": 1.0})
    return TrainingDatasets(train_rows, eval_rows, train_dataset, eval_dataset, dropped_train, dropped_eval)


def _used_sources(rows: pd.DataFrame, sample_ids: list[str]) -> list[str]:
    used = rows[rows["sample_id"].astype(str).isin(set(sample_ids))]
    return sorted(set(used["source_index"].astype(str)))
