"""The 20 public gold examples are all readable, valid and canonical."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts.forms import parse_text_commands, render_json_commands, render_text_commands
from data_contracts.validation import validate_commands
from tests.helpers import EXAMPLES, EXAMPLES_PATH, gold_text

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_EXAMPLES = REPO_ROOT.parent / "shared" / "examples" / "sop_examples.jsonl"
# The copy regression_metrics evaluates as its `public` slice (params.yaml eval.public_cases).
EVAL_EXAMPLES = REPO_ROOT / "data" / "eval" / "sop_examples.jsonl"


def test_fixture_holds_the_twenty_examples() -> None:
    assert len(EXAMPLES) == 20
    assert len({example["id"] for example in EXAMPLES}) == 20


def test_the_evaluation_copy_is_the_fixture() -> None:
    assert EVAL_EXAMPLES.read_bytes() == EXAMPLES_PATH.read_bytes()


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared is not beside this checkout")
@pytest.mark.parametrize("copy", [EXAMPLES_PATH, EVAL_EXAMPLES], ids=["tests/fixtures", "data/eval"])
def test_project_copies_are_exact_copies_of_the_shared_examples(copy: Path) -> None:
    assert copy.read_bytes() == SHARED_EXAMPLES.read_bytes()


def test_the_public_and_heldout_slices_are_outside_the_training_data() -> None:
    """The data half reads data.raw_dir only; the evaluation files must not sit under it."""
    import yaml

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw_dir = (REPO_ROOT / params["data"]["raw_dir"]).resolve()
    public = (REPO_ROOT / params["eval"]["public_cases"]).resolve()
    heldout = (REPO_ROOT / params["eval"]["heldout_cases"]).resolve()
    assert public == EVAL_EXAMPLES
    for path in (public, heldout):
        assert not path.is_relative_to(raw_dir), f"{path} is under the raw corpus directory {raw_dir}"


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
