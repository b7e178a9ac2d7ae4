"""Pandera contracts (pandas backend) for every table the data and evaluation stages write.

Checks are vectorized: the augmented table is the largest table the pipeline writes (sizes and timings
in docs/benchmarks.md, "Data pipeline") and is validated with lazy=True, so no check calls a Python
function per row except the one type test of the list column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.typing.pandas import Series

from data_contracts.catalog import load_catalog

SPLITS = ("train", "eval")
QUARANTINE_STAGES = ("raw", "normalize")
LANGS = ("zh", "en")
# Evaluation slices (pipelines.serve.evaluate.SLICES): eval split, past failures, held-out phrasings, public examples.
REGRESSION_SOURCES = ("eval", "mismatched", "heldout", "public")
EOC_TOKEN = "<eoc>"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
REASON_PATTERN = r"^[a-z][a-z0-9_]*$"

# Delta/Arrow reads list columns back as numpy arrays; freshly built frames hold lists.
_LIST_TYPES = (list, tuple, np.ndarray)


def _list_column_ok(series: pd.Series, allowed: frozenset[str], min_len: int = 1) -> pd.Series:
    """Per row: the value is a list of at least `min_len` strings, each one of `allowed`."""
    try:
        # One C-level conversion instead of a Python call per row (the augmented table is the largest).
        arrow = pa_arrow.array(series, type=pa_arrow.list_(pa_arrow.string()), from_pandas=True)
    except (pa_arrow.ArrowInvalid, pa_arrow.ArrowTypeError):
        return _list_column_ok_slow(series, allowed, min_len)
    ok = pc.fill_null(pc.greater_equal(pc.list_value_length(arrow), min_len), False).to_numpy(zero_copy_only=False)
    known = pc.fill_null(pc.is_in(pc.list_flatten(arrow), value_set=pa_arrow.array(sorted(allowed))), False)
    # A bare string converts to the list of its characters, which are not names, so it fails here too.
    unknown_rows = np.asarray(pc.list_parent_indices(arrow))[~known.to_numpy(zero_copy_only=False)]
    ok[unknown_rows] = False
    return pd.Series(ok, index=series.index)


def _list_column_ok_slow(series: pd.Series, allowed: frozenset[str], min_len: int) -> pd.Series:
    def row_ok(value: object) -> bool:
        return (
            isinstance(value, _LIST_TYPES)
            and len(value) >= min_len
            and all(isinstance(v, str) and v in allowed for v in value)
        )

    return series.map(row_ok).astype(bool)


def _unique(series: pd.Series) -> pd.Series:
    # duplicated() hashes once and names every offending row; pandera's unique=True goes through
    # is_unique (pyarrow unique), which is slower on the augmented table's ids.
    return ~series.duplicated(keep=False)


def _command_names() -> frozenset[str]:
    return frozenset(load_catalog().commands)


def _catalog_command_names_check() -> classmethod:
    """A new check that `command_names` lists catalog commands, for one table model.

    Each model needs its own: pandera consumes a check's name when it first builds a schema from it,
    so a check inherited by two models would lose its name in the second.
    """

    @pa.check("command_names", name="list_of_catalog_commands")
    def check(cls: type, series: pd.Series) -> pd.Series:
        return _list_column_ok(series, _command_names())

    return check


class _ContractModel(pa.DataFrameModel):
    """Shared config: exact column set, no silent dtype coercion."""

    class Config:
        strict = True
        coerce = False


class RawRecordTable(_ContractModel):
    """raw_training_data: one row per raw line that parsed and passed the catalog."""

    source_file: Series[str] = pa.Field(str_length={"min_value": 1})
    line_number: Series[int] = pa.Field(ge=1)
    raw_line: Series[str]
    input_text: Series[str] = pa.Field(str_length={"min_value": 1})
    output_text: Series[str] = pa.Field(str_length={"min_value": 1})
    commands_json: Series[str] = pa.Field(str_startswith='{"commands": [')
    file_sha256: Series[str] = pa.Field(str_matches=SHA256_PATTERN)

    class Config:
        name = "raw_training_data"
        unique = ["source_file", "line_number"]


class QuarantineTable(_ContractModel):
    """quarantine: every line a stage refused, with a category and a human message."""

    stage: Series[str] = pa.Field(isin=list(QUARANTINE_STAGES))
    source_file: Series[str] = pa.Field(str_length={"min_value": 1})
    line_number: Series[int] = pa.Field(ge=1)
    raw_line: Series[str]
    reason: Series[str] = pa.Field(str_matches=REASON_PATTERN)
    detail: Series[str] = pa.Field(str_length={"min_value": 1})

    class Config:
        name = "quarantine"


class NormalizedSampleTable(_ContractModel):
    """normalized_samples: one row per distinct description, keyed by a stable content id."""

    source_index: Series[str] = pa.Field(str_length={"min_value": 1})
    input_text: Series[str] = pa.Field(str_length={"min_value": 1})
    raw_input: Series[str] = pa.Field(str_length={"min_value": 1})
    commands_json: Series[str] = pa.Field(str_startswith='{"commands": [')
    command_names: Series[Any]
    n_commands: Series[int] = pa.Field(ge=1)
    lang: Series[str] = pa.Field(isin=list(LANGS))
    source_file: Series[str] = pa.Field(str_length={"min_value": 1})
    line_number: Series[int] = pa.Field(ge=1)

    class Config:
        name = "normalized_samples"

    _command_names_are_catalog_commands = _catalog_command_names_check()

    @pa.check("source_index", name="unique")
    def _source_index_unique(cls, series: pd.Series) -> pd.Series:
        return _unique(series)

    @pa.dataframe_check(name="n_commands_matches_command_names")
    def _n_commands_matches(cls, df: pd.DataFrame) -> pd.Series:
        lengths = df["command_names"].map(len, na_action="ignore")
        return lengths.eq(df["n_commands"]).fillna(False).astype(bool)


class AugmentedSampleTable(_ContractModel):
    """augmented_training_set: prompt/completion rows with long-tail weights and a leak-free split."""

    sample_id: Series[str] = pa.Field(str_length={"min_value": 1})
    source_index: Series[str] = pa.Field(str_length={"min_value": 1})
    template: Series[str] = pa.Field(str_length={"min_value": 1})
    variant: Series[str] = pa.Field(str_length={"min_value": 1})
    prompt: Series[str] = pa.Field(str_length={"min_value": 1})
    completion: Series[str] = pa.Field(str_startswith='{"commands": [', str_endswith=EOC_TOKEN)
    command_names: Series[Any]
    weight: Series[float] = pa.Field(gt=0)
    split: Series[str] = pa.Field(isin=list(SPLITS))

    class Config:
        name = "augmented_training_set"

    _command_names_are_catalog_commands = _catalog_command_names_check()

    @pa.check("sample_id", name="unique")
    def _sample_id_unique(cls, series: pd.Series) -> pd.Series:
        return _unique(series)

    @pa.check("weight", name="finite")
    def _weight_is_finite(cls, series: pd.Series) -> pd.Series:
        return pd.Series(np.isfinite(series.to_numpy(dtype=float)), index=series.index)


class RegressionResultTable(_ContractModel):
    """regression_metrics rows: one per evaluated case, constrained or not."""

    case_id: Series[str] = pa.Field(str_length={"min_value": 1})
    source_index: Series[str] = pa.Field(nullable=True)
    split_source: Series[str] = pa.Field(isin=list(REGRESSION_SOURCES))
    prompt: Series[str] = pa.Field(str_length={"min_value": 1})
    gold_json: Series[str] = pa.Field(str_startswith='{"commands": [')
    raw_output: Series[str]
    predicted_json: Series[str] = pa.Field(nullable=True)
    json_valid: Series[bool]
    catalog_valid: Series[bool]
    exact_match: Series[bool]
    error: Series[str] = pa.Field(nullable=True)
    latency_s: Series[float] = pa.Field(ge=0)
    constrained: Series[bool]

    class Config:
        name = "regression_results"

    @pa.dataframe_check(name="exact_match_implies_catalog_valid")
    def _exact_match_implies_valid(cls, df: pd.DataFrame) -> pd.Series:
        return ~df["exact_match"] | (df["catalog_valid"] & df["json_valid"])


TABLE_MODELS: dict[str, type[pa.DataFrameModel]] = {
    "raw_training_data": RawRecordTable,
    "quarantine": QuarantineTable,
    "normalized_samples": NormalizedSampleTable,
    "augmented_training_set": AugmentedSampleTable,
    "regression_results": RegressionResultTable,
}
