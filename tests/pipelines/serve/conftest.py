"""Fixtures the decoding tests share: the gold plans every decoding rule must allow, and the tiny model."""

from __future__ import annotations

import json

import pytest

from data_contracts.forms import parse_text_commands, render_json_commands
from pipelines.config import load_params
from pipelines.corpus.generator import generate_heldout_records, generate_records
from pipelines.corpus.near_copy import read_protected_texts
from pipelines.model.prompts import serving_user_message
from tests.helpers import EXAMPLES_PATH, PARAMS_PATH, REPO_ROOT


def gold_pairs() -> list[tuple[str, str, list[dict]]]:
    """(where, normalized description, gold commands) for the corpus, the held-out families and the public set."""
    settings = load_params(PARAMS_PATH).corpus
    protected = read_protected_texts(REPO_ROOT / settings.public_examples)
    records = [
        *(("corpus", r) for r in generate_records(settings.n_records, settings.seed, protected)),
        *(("heldout", r) for r in generate_heldout_records(settings.heldout_records, settings.seed, protected)),
    ]
    pairs = [(where, r.text, render_json_commands(r.commands)) for where, r in records]
    for line in EXAMPLES_PATH.read_text(encoding="utf-8").splitlines():
        turn = json.loads(line)["conversation"][0]
        pairs.append(("public", turn["input"], render_json_commands(parse_text_commands(turn["output"]))))
    return [(where, serving_user_message(text), json.loads(plan)["commands"]) for where, text, plan in pairs]


@pytest.fixture(scope="session")
def gold() -> list[tuple[str, str, list[dict]]]:
    return gold_pairs()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """An untrained tiny model, its tokenizer and its `<eoc>` id."""
    from pipelines.model.model_io import eoc_token_id, load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    model, tokenizer = load_model_and_tokenizer(build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0))
    return model, tokenizer, eoc_token_id(tokenizer)
