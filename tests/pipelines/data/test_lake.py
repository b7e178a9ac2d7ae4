"""Delta helpers: each write is a new version, old versions stay readable, empty tables keep their schema."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.delta_safety import SchemaDriftError
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZE_QUARANTINE_TABLE,
    NORMALIZED_TABLE,
    RAW_QUARANTINE_TABLE,
    RAW_TABLE,
    RESULTS_TABLE,
    SCHEMAS,
    empty_frame,
    frame,
    read_table,
    table_version,
    write_table,
)


def _quarantine(n: int) -> pd.DataFrame:
    return frame(
        {
            "stage": ["raw"] * n,
            "source_file": ["a.jsonl"] * n,
            "line_number": list(range(1, n + 1)),
            "raw_line": ["{"] * n,
            "reason": ["invalid_json"] * n,
            "detail": ["truncated"] * n,
        },
        RAW_QUARANTINE_TABLE,
    )


def test_each_write_is_a_new_version_and_old_ones_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "quarantine" / "raw"
    assert table_version(path) is None
    assert write_table(empty_frame(RAW_QUARANTINE_TABLE), path, table=RAW_QUARANTINE_TABLE) == 0
    assert write_table(_quarantine(3), path, table=RAW_QUARANTINE_TABLE) == 1
    assert write_table(_quarantine(2), path, table=RAW_QUARANTINE_TABLE) == 2

    assert table_version(path) == 2
    assert len(read_table(path)) == 2
    assert len(read_table(path, version=1)) == 3
    empty = read_table(path, version=0)
    assert empty.empty
    assert list(empty.columns) == list(_quarantine(1).columns)
    assert read_table(path, columns=["line_number"])["line_number"].tolist() == [1, 2]


def test_a_frame_missing_a_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks columns \\['detail'\\]"):
        write_table(_quarantine(1).drop(columns=["detail"]), tmp_path / "q", table=RAW_QUARANTINE_TABLE)


def test_schema_drift_is_refused_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "t"
    write_table(pd.DataFrame({"a": [1], "b": ["x"]}), path)
    with pytest.raises(SchemaDriftError, match="'b'"):
        write_table(pd.DataFrame({"a": [1], "b": [2]}), path)
    assert table_version(path) == 0


def test_every_table_has_the_columns_of_its_contract() -> None:
    """One schema per table (lake.SCHEMAS), with exactly the columns of its Pandera contract, in order."""
    from data_contracts.tables import TABLE_MODELS

    contracts = {
        RAW_TABLE: "raw_training_data",
        RAW_QUARANTINE_TABLE: "quarantine",
        NORMALIZE_QUARANTINE_TABLE: "quarantine",
        NORMALIZED_TABLE: "normalized_samples",
        AUGMENTED_TABLE: "augmented_training_set",
        RESULTS_TABLE: "regression_results",
    }
    assert set(SCHEMAS) == set(contracts)
    for table, schema in SCHEMAS.items():
        assert schema.names == list(TABLE_MODELS[contracts[table]].to_schema().columns), table
