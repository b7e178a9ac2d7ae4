"""Augmentation: row counts, fields, prefix variants, long-tail weights and the exposure floor."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_params
from pipelines.data.augment import augment_samples, sample_weights, with_prefix
from pipelines.data.normalize import command_names, detect_lang, normalize_text, source_index
from pipelines.data.split import EVAL, TRAIN
from tests.helpers import PARAMS_PATH

PARAMS = load_params(PARAMS_PATH).augment


def _commands(*names: str) -> str:
    return json.dumps({"commands": [{"func_name": name, "func_parameters": {}} for name in names]}, ensure_ascii=False)


def _samples(rows: list[tuple[str, str]]) -> pd.DataFrame:
    records = []
    for number, (raw_input, commands_json) in enumerate(rows, start=1):
        text = normalize_text(raw_input)
        names = command_names(commands_json)
        records.append(
            {
                "source_index": source_index(text, commands_json),
                "input_text": text,
                "raw_input": raw_input,
                "commands_json": commands_json,
                "command_names": names,
                "n_commands": len(names),
                "lang": detect_lang(text),
                "source_file": "a.jsonl",
                "line_number": number,
            }
        )
    return pd.DataFrame(records)


def _corpus(n_common: int = 40) -> pd.DataFrame:
    rows = [(f"行{i}:用通道1吸取{i}ul", _commands("GetDiti", "Aspirate")) for i in range(n_common)]
    rows += [(f"Step {i}. aspirate {i} ul", _commands("GetDiti", "Aspirate")) for i in range(n_common)]
    rows += [(f"运行PCR程序{i}", _commands("PCR")) for i in range(3)]
    rows += [(f"wait {i} minutes", _commands("Delay")) for i in range(2)]
    return _samples(rows)


def test_rows_are_samples_times_language_templates_times_variants() -> None:
    samples = _corpus()
    result = augment_samples(samples, PARAMS)
    table = result.table

    zh_templates = [t for t in PARAMS.templates if t.startswith("zh_")]
    en_templates = [t for t in PARAMS.templates if t.startswith("en_")]
    assert len(zh_templates) >= 4 and len(en_templates) >= 4
    n_zh = (samples["lang"] == "zh").sum()
    n_en = (samples["lang"] == "en").sum()
    assert len(table) == 2 * (n_zh * len(zh_templates) + n_en * len(en_templates))
    assert table["sample_id"].is_unique
    assert list(table.columns) == [
        "sample_id",
        "source_index",
        "template",
        "variant",
        "prompt",
        "completion",
        "command_names",
        "weight",
        "split",
    ]
    zh_ids = set(samples.loc[samples["lang"] == "zh", "source_index"])
    assert set(table.loc[table["source_index"].isin(zh_ids), "template"]) == set(zh_templates)
    assert set(table["variant"]) == {"with_prefix", "without_prefix"}


def test_all_templates_mode_wraps_every_sample_in_every_template() -> None:
    samples = _corpus(5)
    params = dataclasses.replace(PARAMS, template_languages="all")
    table = augment_samples(samples, params).table
    assert len(table) == len(samples) * len(PARAMS.templates) * 2


def test_prompt_and_completion_contents() -> None:
    samples = _samples([("步骤3：用通道1吸取20ul", _commands("Aspirate"))])
    table = augment_samples(samples, PARAMS).table.set_index(["template", "variant"])

    assert table.loc[("zh_direct", "without_prefix"), "prompt"] == "用通道1吸取20ul"
    assert table.loc[("zh_direct", "with_prefix"), "prompt"] == "步骤3:用通道1吸取20ul"
    assert table.loc[("zh_goal", "without_prefix"), "prompt"] == (
        "请把下面的实验步骤转换成机器人指令：用通道1吸取20ul"
    )
    assert table.loc[("zh_qa", "with_prefix"), "prompt"] == (
        "问：以下操作对应哪些机器人命令？\n步骤3:用通道1吸取20ul\n答："
    )
    assert (table["completion"] == _commands("Aspirate") + "<eoc>").all()
    assert table["command_names"].map(list).tolist() == [["Aspirate"]] * len(table)


def test_with_prefix_adds_numbered_markers_where_the_text_had_none() -> None:
    assert with_prefix("吸取\n分配", "吸取\n分配", "zh") == "行1:吸取\n行2:分配"
    assert with_prefix("draw\ndispense", "Step 4. draw\ndispense", "en") == "Step 4. draw\nLine 2: dispense"


def test_source_rows_share_one_split_and_one_weight() -> None:
    table = augment_samples(_corpus(), PARAMS).table
    per_source = table.groupby("source_index").agg(splits=("split", "nunique"), weights=("weight", "nunique"))
    assert (per_source["splits"] == 1).all()
    assert (per_source["weights"] == 1).all()
    assert set(table["split"]) == {TRAIN, EVAL}


def test_rarity_weights_follow_the_documented_formula() -> None:
    matrix = np.array([[1, 0, 0]] * 16 + [[1, 1, 0]] * 4 + [[0, 0, 1]], dtype=bool)
    is_train = np.ones(len(matrix), dtype=bool)
    rows = np.full(len(matrix), 8)
    base, final = sample_weights(matrix, is_train, rows, weight_cap=3.0, min_train_exposure=0)

    # n = [20, 4, 1], n_max = 20: weights sqrt(20/20), sqrt(20/4), min(3, sqrt(20/1)).
    assert base[0] == pytest.approx(1.0)
    assert base[16] == pytest.approx(math.sqrt(5.0))
    assert base[20] == pytest.approx(3.0)
    np.testing.assert_allclose(final, base)


def test_exposure_floor_lifts_rare_commands_in_train_only() -> None:
    matrix = np.array([[1, 0]] * 30 + [[0, 1]] * 2, dtype=bool)
    is_train = np.array([True] * 30 + [True, False])
    rows = np.full(len(matrix), 2)
    base, final = sample_weights(matrix, is_train, rows, weight_cap=2.0, min_train_exposure=10)

    assert base[30] == pytest.approx(2.0)  # capped: sqrt(30/2) > 2
    # One train row pair of the rare command: exposure 2 * 2.0 = 4 < 10, lifted to 10.
    assert final[30] * 2 == pytest.approx(10.0)
    assert final[31] == pytest.approx(base[31])
    np.testing.assert_allclose(final[:30], base[:30])


def test_every_command_reaches_the_minimum_train_exposure() -> None:
    params = dataclasses.replace(PARAMS, min_train_exposure=100.0, weight_cap=1.5)
    result = augment_samples(_corpus(), params)
    table = result.table
    train = table[table["split"] == TRAIN].explode("command_names")
    exposure = train.groupby("command_names")["weight"].sum()
    assert (exposure >= 100.0 - 1e-6).all()
    distribution = result.distribution.set_index("command")
    assert distribution.loc["Delay", "exposure_weighted"] == pytest.approx(exposure["Delay"])
    assert (
        distribution.loc["GetDiti", "train_rows"]
        == ((table["split"] == TRAIN) & table["command_names"].map(lambda n: "GetDiti" in n)).sum()
    )
    assert distribution.loc["PCR", "exposure_weighted"] > distribution.loc["PCR", "train_rows"]


def test_rare_samples_weigh_more_than_common_ones() -> None:
    table = augment_samples(_corpus(), PARAMS).table
    weight_of = table.groupby("source_index")["weight"].first()
    names_of = table.groupby("source_index")["command_names"].first().map(tuple)
    common = weight_of[names_of == ("GetDiti", "Aspirate")]
    rare = weight_of[names_of == ("PCR",)]
    assert rare.min() > common.max()
    assert weight_of.min() >= 1.0


def test_empty_input_gives_an_empty_table() -> None:
    result = augment_samples(_samples([]).reindex(columns=_corpus(1).columns), PARAMS)
    assert result.table.empty
    assert "weight" in result.table.columns
