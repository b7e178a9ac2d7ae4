"""params.yaml parses into typed sections and rejects mistakes with a message naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import lake_root, load_params, parse_params
from tests.helpers import PARAMS_PATH


def test_bundled_params_load() -> None:
    params = load_params(PARAMS_PATH)
    assert params.data.raw_dir == "data/raw"
    assert params.augment.variants == ("with_prefix", "without_prefix")
    assert params.augment.min_train_exposure == 10
    assert sum(name.startswith("zh_") for name in params.augment.templates) >= 4
    assert sum(name.startswith("en_") for name in params.augment.templates) >= 4
    assert {"direct", "goal", "bench_note", "qa"} <= {name.split("_", 1)[1] for name in params.augment.templates}
    assert "corpus" in params.sections


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


def test_lake_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SOP2CMD_LAKE", raising=False)
    assert lake_root() == Path("lake")
    monkeypatch.setenv("SOP2CMD_LAKE", str(tmp_path))
    assert lake_root() == tmp_path
