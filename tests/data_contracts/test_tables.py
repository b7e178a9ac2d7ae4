from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pytest

from data_contracts.tables import (
    TABLE_MODELS,
    AugmentedSampleTable,
    NormalizedSampleTable,
    QuarantineTable,
    RawRecordTable,
    RegressionResultTable,
)
from tests.support.contract_frames import (
    PLAN,
    VALID_FRAMES,
    augmented_frame,
    normalized_frame,
    quarantine_frame,
    raw_frame,
    regression_frame,
)


def arrow_round_trip(df: pd.DataFrame) -> pd.DataFrame:
    """What a Delta read hands back: pandas 3 string dtype, numpy arrays in list columns."""
    return pa.Table.from_pandas(df, preserve_index=False).to_pandas()


def failed_checks(model: type, df: pd.DataFrame) -> set[tuple[str, str]]:
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        model.validate(df, lazy=True)
    cases = caught.value.failure_cases
    return {(str(column), str(check)) for column, check in zip(cases["column"], cases["check"], strict=True)}


@pytest.mark.parametrize("table", list(VALID_FRAMES))
def test_valid_frames_pass(table: str) -> None:
    df = VALID_FRAMES[table]()
    model = TABLE_MODELS[table]
    assert len(model.validate(df, lazy=True)) == len(df)
    assert len(model.validate(arrow_round_trip(df), lazy=True)) == len(df)
    assert len(model.validate(df.head(0), lazy=True)) == 0


def test_raw_table_rejects_bad_rows() -> None:
    df = raw_frame()
    df.loc[0, "line_number"] = 0
    df.loc[1, "file_sha256"] = "not-a-hash"
    failed = failed_checks(RawRecordTable, df)
    assert ("line_number", "greater_than_or_equal_to(1)") in failed
    assert any(column == "file_sha256" and check.startswith("str_matches") for column, check in failed)


def test_raw_table_rejects_a_duplicate_line() -> None:
    df = raw_frame()
    df.loc[1, "line_number"] = 1
    with pytest.raises(pandera.errors.SchemaErrors, match="source_file"):
        RawRecordTable.validate(df, lazy=True)


def test_raw_table_rejects_a_missing_column() -> None:
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        RawRecordTable.validate(raw_frame().drop(columns=["file_sha256"]), lazy=True)
    cases = caught.value.failure_cases
    assert list(cases["check"]) == ["column_in_dataframe"]
    assert list(cases["failure_case"]) == ["file_sha256"]


def test_raw_table_rejects_an_extra_column() -> None:
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        RawRecordTable.validate(raw_frame().assign(extra=1), lazy=True)
    cases = caught.value.failure_cases
    assert list(cases["check"]) == ["column_in_schema"]
    assert list(cases["failure_case"]) == ["extra"]


def test_quarantine_rejects_unknown_stage_and_empty_reason() -> None:
    df = quarantine_frame()
    df.loc[0, "stage"] = "train"
    df.loc[1, "reason"] = ""
    failed = failed_checks(QuarantineTable, df)
    assert ("stage", "isin(['raw', 'normalize'])") in failed
    assert any(column == "reason" for column, _ in failed)


def test_normalized_rejects_duplicate_ids_bad_names_and_count_mismatch() -> None:
    df = normalized_frame()
    df.loc[1, "source_index"] = "s1"
    df.at[0, "command_names"] = ["Dealy"]
    df.loc[1, "n_commands"] = 3
    df.loc[0, "lang"] = "fr"
    failed = failed_checks(NormalizedSampleTable, df)
    assert ("source_index", "unique") in failed
    assert ("command_names", "list_of_catalog_commands") in failed
    assert ("lang", "isin(['zh', 'en'])") in failed
    assert any(check == "n_commands_matches_command_names" for _, check in failed)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (["GetDiti", "Aspirate"], True),
        (np.array(["GetDiti"], dtype=object), True),
        (("PCR",), True),
        ([], False),
        ("GetDiti", False),
        ([1], False),
        ([None], False),
        (None, False),
        (["getditi"], False),
    ],
)
def test_command_names_column_must_hold_lists_of_catalog_commands(value: object, ok: bool) -> None:
    df = augmented_frame()
    df["command_names"] = pd.Series([["Delay"], value, ["PCR"]], dtype=object)
    if ok:
        AugmentedSampleTable.validate(df, lazy=True)
    else:
        with pytest.raises(pandera.errors.SchemaErrors) as caught:
            AugmentedSampleTable.validate(df, lazy=True)
        cases = caught.value.failure_cases
        assert set(cases.loc[cases["column"] == "command_names", "index"]) == {1}


def test_augmented_rejects_bad_rows() -> None:
    df = augmented_frame()
    df.loc[1, "sample_id"] = "s1-t0-v0"
    df.loc[0, "split"] = "test"
    df.loc[2, "weight"] = 0.0
    df.loc[1, "completion"] = PLAN
    failed = failed_checks(AugmentedSampleTable, df)
    assert ("sample_id", "unique") in failed
    assert ("split", "isin(['train', 'eval'])") in failed
    assert ("weight", "greater_than(0)") in failed
    assert ("completion", "str_endswith('<eoc>')") in failed


def test_augmented_rejects_non_finite_weight() -> None:
    df = augmented_frame()
    df.loc[0, "weight"] = np.inf
    assert ("weight", "finite") in failed_checks(AugmentedSampleTable, df)


def test_regression_rejects_bad_rows() -> None:
    df = regression_frame()
    df.loc[0, "split_source"] = "train"
    df.loc[1, "exact_match"] = True
    df.loc[0, "latency_s"] = -1.0
    failed = failed_checks(RegressionResultTable, df)
    assert ("split_source", "isin(['eval', 'mismatched', 'heldout', 'public'])") in failed
    assert ("latency_s", "greater_than_or_equal_to(0)") in failed
    assert any(check == "exact_match_implies_catalog_valid" for _, check in failed)


def test_regression_requires_bool_flags() -> None:
    df = regression_frame()
    df["json_valid"] = ["yes", "no"]
    assert any(column == "json_valid" for column, _ in failed_checks(RegressionResultTable, df))
