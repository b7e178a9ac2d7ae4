"""Normalization: NFKC, prefixes, whitespace, idempotence, stable ids and duplicate removal."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.data.normalize import (
    detect_lang,
    line_prefixes,
    normalize_records,
    normalize_text,
    source_index,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("行1:用通道1-4从样品板A1-D1各吸取20ul", "用通道1,2,3,4从样品板A1,B1,C1,D1各吸取20ul"),
        ("行1：吸取２０µｌ，", "吸取20ul,"),
        ("步骤3：混匀", "混匀"),
        ("第2步、混匀", "混匀"),
        ("Line 2: Aspirate 1.5 ml", "Aspirate 1500ul"),
        ("step 4. Drop tips", "Drop tips"),
        ("1. Pick up tips", "Pick up tips"),
        ("(1) Pick up tips", "Pick up tips"),
        ("（２） Pick up tips", "Pick up tips"),
        ("行1: 1. nested markers", "nested markers"),
        ("Step 1:2 channels", "channels 1,2"),
        ("1.5 ml water", "1500ul water"),
        ("Step 1.5 ml", "Step 1500ul"),
        ("行2.5ml", "行2500ul"),
        ("3.", "3."),
        ("  spaced \t out\u200b  text  ", "spaced out text"),
        ("行1:吸取\n\n行2:  分配  ", "吸取\n分配"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_micro_sign_and_greek_mu_become_the_same_text() -> None:
    assert normalize_text("20µl") == normalize_text("20μl") == "20ul"


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("行步骤第Line step1234567890.:：、)（）() \t\n\u3000µμＡａ，。abc吸取")),
        max_size=40,
    )
)
def test_normalization_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_normalization_is_idempotent_on_any_text(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_line_prefixes_are_reported_per_line() -> None:
    assert line_prefixes("步骤3：混匀\nno marker\n\nLine 4: go") == ["步骤3:", "", "Line 4:"]


def test_language_detection() -> None:
    assert detect_lang("用通道1吸取") == "zh"
    assert detect_lang("Aspirate 20 ul from Plate1 A1") == "en"
    assert detect_lang("Plate1 样品") == "zh"


def test_source_index_is_a_stable_content_id() -> None:
    first = source_index("吸取20μl", '{"commands": []}')
    assert first == source_index("吸取20μl", '{"commands": []}')
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != source_index("吸取20μl", '{"commands": [1]}')
    assert first != source_index("吸取21μl", '{"commands": []}')


def _raw_frame(inputs: list[str], commands: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": ["a.jsonl"] * len(inputs),
            "line_number": list(range(1, len(inputs) + 1)),
            "raw_line": [f"line {i}" for i in range(len(inputs))],
            "input_text": inputs,
            "output_text": ["x"] * len(inputs),
            "commands_json": commands,
            "file_sha256": ["0" * 64] * len(inputs),
        }
    )


CMDS = '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60}}]}'
OTHER = '{"commands": [{"func_name": "PCR", "func_parameters": {"labware": "P", "program": "A"}}]}'


def test_duplicates_after_normalization_are_removed_and_recorded() -> None:
    raw = _raw_frame(
        ["行1：等待1分钟", "等待 1 分钟", "Step 2. 等待1分钟", "等待1分钟", "wait"], [CMDS, CMDS, CMDS, OTHER, OTHER]
    )

    result = normalize_records(raw)

    samples = result.samples
    assert samples["line_number"].tolist() == [1, 2, 4, 5]
    assert samples["input_text"].tolist() == ["等待60s", "等待 60s", "等待60s", "wait"]
    assert samples["command_names"].tolist() == [["Delay"], ["Delay"], ["PCR"], ["PCR"]]
    assert samples["lang"].tolist() == ["zh", "zh", "zh", "en"]
    assert samples["source_index"].is_unique
    assert samples["raw_input"].iloc[0] == "行1：等待1分钟"

    quarantine = result.quarantine
    assert quarantine[["stage", "line_number", "reason"]].values.tolist() == [["normalize", 3, "duplicate"]]
    kept = samples["source_index"].iloc[0]
    assert quarantine["detail"].iloc[0] == f"same normalized sample as source_index {kept} (kept a.jsonl:1)"
    assert quarantine["raw_line"].iloc[0] == "line 2"


def test_ids_survive_appended_data() -> None:
    base = normalize_records(_raw_frame(["等待1分钟", "wait"], [CMDS, OTHER])).samples
    grown = normalize_records(_raw_frame(["new one", "等待1分钟", "wait"], [OTHER, CMDS, OTHER])).samples
    assert set(base["source_index"]) <= set(grown["source_index"])


def test_normalizing_normalized_samples_changes_nothing() -> None:
    first = normalize_records(_raw_frame(["行1：等待 1分钟", "(2) wait  now"], [CMDS, OTHER])).samples
    again = normalize_records(_raw_frame(first["input_text"].tolist(), first["commands_json"].tolist())).samples
    assert again["input_text"].tolist() == first["input_text"].tolist()
    assert again["source_index"].tolist() == first["source_index"].tolist()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("行步骤1234.:：、 \u3000\u200b\nab吸⒈①⑴¹Ｌｌline(（)）")), max_size=60))
def test_one_prefix_per_kept_line(text: str) -> None:
    normalized = normalize_text(text)
    kept_lines = normalized.split("\n") if normalized else []
    assert len(line_prefixes(text)) == len(kept_lines)
