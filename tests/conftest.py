"""Fixtures shared by the whole suite: the repo root, small generated corpora, temporary lakes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_PATH = REPO_ROOT / "params.yaml"


def jsonl_bytes(records: Sequence[dict]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def raw_record(input_text: str, output_text: str) -> dict:
    return {"conversation": [{"input": input_text, "output": output_text}]}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def small_corpus() -> list[dict]:
    """120 generated raw records (a different seed from the bundled corpus)."""
    from pipelines.corpus_generator import generate_corpus

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
