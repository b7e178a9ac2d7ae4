"""Fixtures for the reliability tests."""

from __future__ import annotations

import json

import pytest

from tests.reliability._support import FIXTURES


@pytest.fixture(scope="session")
def gold_examples() -> list[dict]:
    """The 20 public gold cases (the copy in tests/fixtures; never read from ../shared)."""
    lines = (FIXTURES / "sop_examples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
