from __future__ import annotations

import hashlib

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

SHA = hashlib.sha256(b"x").hexdigest()
PLAN = '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60}}]}'


def raw_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": ["a.jsonl", "a.jsonl"],
            "line_number": [1, 2],
            "raw_line": ["{...}", "{...}"],
            "input_text": ["wait a minute", "等一分钟"],
            "output_text": ["Delay(seconds=60)", "Delay(seconds=60)"],
            "commands_json": [PLAN, PLAN],
            "file_sha256": [SHA, SHA],
        }
    )


def quarantine_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": ["raw", "normalize"],
            "source_file": ["a.jsonl", "a.jsonl"],
            "line_number": [3, 4],
            "raw_line": ["{", "{...}"],
            "reason": ["invalid_json", "duplicate"],
            "detail": ["Expecting value", "same normalized sample as source_index abc"],
        }
    )


def normalized_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_index": ["s1", "s2"],
            "input_text": ["wait a minute", "取枪头"],
            "raw_input": ["行1: wait a minute", "取枪头"],
            "commands_json": [PLAN, PLAN],
            "command_names": [["Delay"], ["GetDiti", "DropDiti"]],
            "n_commands": [1, 2],
            "lang": ["en", "zh"],
            "source_file": ["a.jsonl", "a.jsonl"],
            "line_number": [1, 2],
        }
    )


def augmented_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["s1-t0-v0", "s1-t1-v0", "s2-t0-v0"],
            "source_index": ["s1", "s1", "s2"],
            "template": ["direct", "goal", "direct"],
            "variant": ["plain", "plain", "prefixed"],
            "prompt": ["p1", "p2", "p3"],
            "completion": [PLAN + "<eoc>"] * 3,
            "command_names": [["Delay"], ["Delay"], ["GetDiti", "PCR"]],
            "weight": [1.0, 1.0, 2.5],
            "split": ["train", "train", "eval"],
        }
    )


def regression_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "case_id": ["E001", "E001"],
            "source_index": [None, "s9"],
            "split_source": ["eval", "mismatched"],
            "prompt": ["p", "p"],
            "gold_json": [PLAN, PLAN],
            "raw_output": [PLAN + "<eoc>", "garbage"],
            "predicted_json": [PLAN, None],
            "json_valid": [True, False],
            "catalog_valid": [True, False],
            "exact_match": [True, False],
            "error": [None, "invalid JSON"],
            "latency_s": [0.5, 1.25],
            "constrained": [False, True],
        }
    )


VALID = {
    "raw_training_data": raw_frame,
    "quarantine": quarantine_frame,
    "normalized_samples": normalized_frame,
    "augmented_training_set": augmented_frame,
    "regression_results": regression_frame,
}


def arrow_round_trip(df: pd.DataFrame) -> pd.DataFrame:
    """What a Delta read hands back: pandas 3 string dtype, numpy arrays in list columns."""
    return pa.Table.from_pandas(df, preserve_index=False).to_pandas()


def failed_checks(model: type, df: pd.DataFrame) -> set[tuple[str, str]]:
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        model.validate(df, lazy=True)
    cases = caught.value.failure_cases
    return {(str(column), str(check)) for column, check in zip(cases["column"], cases["check"], strict=True)}


@pytest.mark.parametrize("table", list(VALID))
def test_valid_frames_pass(table: str) -> None:
    df = VALID[table]()
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
