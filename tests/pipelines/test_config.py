"""params.yaml parses into typed sections and rejects mistakes with a message naming them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import (
    AugmentParams,
    CorpusParams,
    DataParams,
    EvalSettings,
    TrainingParams,
    lake_root,
    load_params,
    parse_params,
)
from tests.helpers import PARAMS_PATH


def test_bundled_params_load() -> None:
    params = load_params(PARAMS_PATH)
    assert params.data.raw_dir == "data/raw"
    assert params.augment.variants == ("with_prefix", "without_prefix")
    assert params.augment.min_train_exposure == 10
    assert sum(name.startswith("zh_") for name in params.augment.templates) >= 4
    assert sum(name.startswith("en_") for name in params.augment.templates) >= 4
    assert {"direct", "goal", "bench_note", "qa"} <= {name.split("_", 1)[1] for name in params.augment.templates}
    assert params.corpus.output == _raw()["corpus"]["output"]


def _raw() -> dict:
    return yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("augment", "variants", ["sideways"], "augment.variants"),
        ("augment", "template_languages", "some", "template_languages"),
        ("augment", "eval_fraction", 1.5, "eval_fraction"),
        ("augment", "weight_cap", 0.5, "weight_cap"),
        ("augment", "templates", {"zh_x": "no placeholder", "en_x": "{description}"}, "zh_x"),
        ("augment", "templates", {"fr_x": "{description}"}, "fr_x"),
        ("augment", "templates", {"zh_x": "{description}"}, "'en_' template"),
        ("data", "raw_folder", "x", "unknown keys \\['raw_folder'\\]"),
    ],
)
def test_mistakes_are_named(section: str, key: str, value: object, message: str) -> None:
    raw = _raw()
    raw[section][key] = value
    with pytest.raises(ValueError, match=message):
        parse_params(raw)


@pytest.mark.parametrize(
    ("key", "value", "a_choice"), [("eval_strategy", "finally", "end"), ("row_sampling", "sometimes", "weighted")]
)
def test_an_unknown_choice_is_refused_when_params_are_read_naming_the_profile_and_the_choices(
    key: str, value: str, a_choice: str
) -> None:
    # Refused while params.yaml is read, not after a training run has loaded the model and tokenized the rows.
    raw = _raw()
    raw["training"]["profiles"]["default"][key] = value
    message = rf"training\.profiles\.default: {key} must be one of .*'{a_choice}'.*got '{value}'"
    with pytest.raises(ValueError, match=message):
        parse_params(raw)


def test_lake_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SOP2CMD_LAKE", raising=False)
    assert lake_root() == Path("lake")
    monkeypatch.setenv("SOP2CMD_LAKE", str(tmp_path))
    assert lake_root() == tmp_path


def _typed_child(node: Any, key: str, where: str) -> Any:
    """What the typed tree holds for `key` under `node`: a dataclass field, or a key of a typed mapping."""
    if dataclasses.is_dataclass(node):
        assert key in {f.name for f in dataclasses.fields(node)}, f"{where} is read by no typed field"
        return getattr(node, key)
    assert isinstance(node, dict) and key in node, f"{where} is read by no typed field"
    return node[key]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_every_key_of_params_yaml_is_read_by_a_typed_field() -> None:
    raw = _raw()
    leaves: list[str] = []

    def walk(tree: dict, node: Any, path: list[str]) -> None:
        for key, value in tree.items():
            where = ".".join([*path, key])
            typed = _typed_child(node, key, where)
            if isinstance(value, dict):
                walk(value, typed, [*path, key])
            else:
                assert _plain(typed) == value, where
                leaves.append(where)

    walk(raw, parse_params(raw), [])
    assert {"training.profiles.default.lora_r", "eval.profiles.smoke.limits.max_commands",
            "gate.default.min_exact_match", "augment.templates.zh_qa"} <= set(leaves)


@pytest.mark.parametrize(
    "dotted",
    [
        "training.profiles.default.lorra_r",
        "training.profile_name",
        "eval.profiles.smoke.foo",
        "eval.batchsize",
        "eval.limits.max_comands",
        "eval.profiles.smoke.limits.max_strings",
        "gate.default.min_exactt",
        "corpus.seeds",
        "augment.eoc_token",
        "trainig",
    ],
)
def test_an_unknown_key_anywhere_fails_with_its_dotted_path(dotted: str) -> None:
    raw = _raw()
    *parents, key = dotted.split(".")
    node = raw
    for name in parents:
        node = node[name]
    node[key] = 1
    with pytest.raises(ValueError, match=re.escape(dotted)):
        parse_params(raw)


def test_the_defaults_in_code_are_the_values_params_yaml_spells_out() -> None:
    params = parse_params(_raw())
    assert CorpusParams() == params.corpus
    assert DataParams() == params.data
    # The templates have no default: at least one per language is required.
    assert dataclasses.replace(AugmentParams(), templates=params.augment.templates) == params.augment
    assert TrainingParams().profile == params.training.profile
    base = params.eval.for_profile("a profile without overrides")
    assert dataclasses.replace(EvalSettings(), limits=base.limits) == base
    assert EvalSettings().decoding_config() == base.decoding_config()  # no limits: the grammar's own defaults


def test_the_training_profile_is_chosen_once_by_one_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    training = parse_params(_raw()).training
    monkeypatch.delenv("SOP2CMD_PROFILE", raising=False)
    assert training.resolve()[0] == training.profile
    monkeypatch.setenv("SOP2CMD_PROFILE", "smoke")
    name, config = training.resolve()
    assert (name, config) == ("smoke", training.profiles["smoke"]) and config.base_model == "tiny"
    assert training.resolve("gpu")[0] == "gpu"  # an explicit choice (the run's) wins over the environment
    with pytest.raises(ValueError, match="'nope' not in params.yaml training.profiles"):
        training.resolve("nope")
