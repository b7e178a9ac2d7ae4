"""Fixtures shared by the whole suite: corpora, temporary lakes and resources, Dagster instances, a tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.helpers import FIXTURES, REPO_ROOT, asset_resources, jsonl_bytes, make_augmented_frame, write_params


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def small_corpus() -> list[dict]:
    """120 generated raw records (a different seed from the bundled corpus)."""
    from pipelines.corpus.generator import generate_corpus

    return generate_corpus(120, seed=12345)


@pytest.fixture()
def raw_dir(tmp_path: Path, small_corpus: list[dict]) -> Path:
    directory = tmp_path / "raw"
    directory.mkdir()
    (directory / "corpus.jsonl").write_bytes(jsonl_bytes(small_corpus))
    return directory


@pytest.fixture()
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture()
def resources(tmp_path: Path, raw_dir: Path, lake: Path) -> dict[str, dg.ConfigurableResource]:
    """The Dagster resources over a temporary lake and artifacts dir, reading `raw_dir` with the smoke profile."""

    def edit(params: dict) -> None:
        params["data"]["raw_dir"] = str(raw_dir)
        params["training"]["profile"] = "smoke"

    return asset_resources(tmp_path, lake, write_params(tmp_path / "params.yaml", edit))


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def gold_examples() -> list[dict]:
    """The 20 public gold cases (the copy in tests/fixtures; never read from ../shared)."""
    lines = (FIXTURES / "sop_examples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared tiny base model (through pipelines.model.base_model, like the real one)."""
    from pipelines.model.base_model import resolve_base_model

    return Path(resolve_base_model("tiny", tmp_path_factory.mktemp("artifacts")).path)


@pytest.fixture()
def augmented_frame() -> pd.DataFrame:
    return make_augmented_frame()
