"""The 20 public gold examples are all readable, valid and canonical."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts.forms import parse_text_commands, render_json_commands, render_text_commands
from data_contracts.validation import validate_commands

from .conftest import EXAMPLES, EXAMPLES_PATH, gold_text

SHARED_EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "examples" / "sop_examples.jsonl"


def test_fixture_holds_the_twenty_examples() -> None:
    assert len(EXAMPLES) == 20
    assert len({example["id"] for example in EXAMPLES}) == 20


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared is not beside this checkout")
def test_fixture_is_an_exact_copy_of_the_shared_examples() -> None:
    assert EXAMPLES_PATH.read_bytes() == SHARED_EXAMPLES.read_bytes()


def test_all_examples_parse_validate_and_are_canonical() -> None:
    names: set[str] = set()
    for example in EXAMPLES:
        commands = parse_text_commands(gold_text(example))
        assert commands, example["id"]
        assert validate_commands(commands) == [], example["id"]
        assert render_text_commands(commands) == gold_text(example), example["id"]
        assert render_json_commands(commands).startswith('{"commands": [{"func_name": ')
        names.update(c.func_name for c in commands)
    assert len(names) == 11  # the examples exercise every catalog command
