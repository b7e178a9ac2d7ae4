"""One small valid frame of every table contract in data_contracts.tables, for tests to break one cell at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pandas as pd

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


# Table name (data_contracts.tables.TABLE_MODELS) -> its valid frame.
VALID_FRAMES: dict[str, Callable[[], pd.DataFrame]] = {
    "raw_training_data": raw_frame,
    "quarantine": quarantine_frame,
    "normalized_samples": normalized_frame,
    "augmented_training_set": augmented_frame,
    "regression_results": regression_frame,
}
