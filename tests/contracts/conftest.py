"""The 20 public gold examples, from the copy in tests/fixtures (the project never reads ../shared at run time)."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLES_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "sop_examples.jsonl"


def load_examples() -> list[dict]:
    with EXAMPLES_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


EXAMPLES = load_examples()
EXAMPLE_IDS = [example["id"] for example in EXAMPLES]


def gold_text(example: dict) -> str:
    return example["conversation"][0]["output"]
