"""Batched greedy generation, one-at-a-time parity and constrained decoding, on the tiny random model (CPU, fp32)."""

from __future__ import annotations

import pytest

from bench.baseline_decode import generate_one_at_a_time
from pipelines.model.plan_layout import render_commands
from pipelines.serve.constrained import DecodingLimits, GrammarCache, decoding_schema, model_vocab_size
from pipelines.serve.decode import DecodingConfig, generate_batched, shared_prefix_length
from pipelines.serve.plan_output import check_plan

# Varied lengths so that batches really are left-padded.
DESCRIPTIONS = [
    "行1:用通道1-4从样品板A1-D1各吸取20ul，分配到反应板B3-E3，每孔20微升，然后弃去枪头。",
    "Wait 2 minutes",
    "程序暂停3分钟",
    "Shake Plate1 at 700 rpm for 1 minute, then move it to Deck3.",
    "Pick up 200ul tips on channel 3",
]
# Cross-field rules a JSON grammar cannot express; every other catalog rule is enforced while decoding.
RULES_OUTSIDE_THE_GRAMMAR = {"duplicate_channel", "tip_capacity"}
TIGHT = DecodingLimits(max_commands=2, max_string_chars=8, max_number=1000)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-core shared machine: one thread is several times faster for a tiny model
    # seed 3: its constrained outputs differ between these prompts, which the parity test relies on.
    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny_decode"), seed=3)
    yield load_model_and_tokenizer(model_dir)
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("constrained", "grounded"), [(False, False), (True, False), (True, True)], ids=["free", "constrained", "grounded"]
)
def test_batched_equals_one_at_a_time(tiny, constrained, grounded):
    model, tokenizer = tiny
    config = DecodingConfig(
        max_new_tokens=24 if not constrained else 600,
        batch_size=3,
        constrained=constrained,
        grounded=grounded,
        limits=TIGHT,
    )
    batched = generate_batched(model, tokenizer, DESCRIPTIONS, config)
    single = generate_one_at_a_time(model, tokenizer, DESCRIPTIONS, config)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    if constrained:  # free outputs of this random model all repeat one token; constrained ones differ per prompt
        assert len({g.token_ids for g in batched}) > 1  # so the order of results is really checked


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert shared_prefix_length([[1, 2], [1, 2]]) == 1
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0


def test_constrained_random_model_gives_parseable_plans(tiny):
    """What is asserted: every output ends with <eoc> within the budget, parses as a {"commands": [...]} plan,
    and breaks no catalog rule except the cross-field ones a grammar cannot express (duplicate channels,
    tip capacity across commands). Unknown commands/parameters, missing parameters, types, channel
    ranges, wells, list lengths, volumes, tip types, ranges, blank labels and (grounding being on by
    default) labels the description does not contain are impossible by construction."""
    from pipelines.model.model_io import eoc_token_id
    from pipelines.model.prompts import serving_user_message

    model, tokenizer = tiny
    config = DecodingConfig(max_new_tokens=600, batch_size=5, constrained=True, limits=TIGHT)
    generations = generate_batched(model, tokenizer, DESCRIPTIONS, config)
    eoc = eoc_token_id(tokenizer)
    for description, generation in zip(DESCRIPTIONS, generations, strict=True):
        assert generation.stopped and generation.token_ids[-1] == eoc
        checked = check_plan(generation.text, description=serving_user_message(description))
        assert checked.json_valid, generation.text
        assert {issue.rule for issue in checked.issues} <= RULES_OUTSIDE_THE_GRAMMAR, checked.error_message()
        # the training targets' form: the model's layout, parameters in catalog order
        assert generation.text == render_commands(checked.commands)
        assert len(checked.commands) <= TIGHT.max_commands


def test_free_generation_of_a_random_model_is_not_a_plan(tiny):
    model, tokenizer = tiny
    free = DecodingConfig(max_new_tokens=24, constrained=False)
    generations = generate_batched(model, tokenizer, DESCRIPTIONS[:2], free)
    assert not any(check_plan(g.text).json_valid for g in generations)
    assert all(g.new_tokens == 24 and not g.stopped for g in generations)


def test_decoding_schema_ties_list_lengths_to_channels():
    schema = decoding_schema()
    alternatives = schema["properties"]["commands"]["items"]["anyOf"]
    aspirates = [a for a in alternatives if a["properties"]["func_name"]["const"] == "Aspirate"]
    assert len(aspirates) == 8
    for count, alternative in enumerate(aspirates, start=1):
        params = alternative["properties"]["func_parameters"]["properties"]
        for name in ("channels", "wells", "vols"):
            assert params[name]["minItems"] == params[name]["maxItems"] == count
    delay = next(a for a in alternatives if a["properties"]["func_name"]["const"] == "Delay")
    assert delay["properties"]["func_parameters"]["properties"]["seconds"]["maximum"] == DecodingLimits().max_number
    assert aspirates[0]["properties"]["func_parameters"]["properties"]["labware"] == {"$ref": "#/$defs/label"}
    assert schema["$defs"]["label"]["pattern"].startswith('^[^\\s"')


def test_compiled_grammars_are_cached_per_tokenizer(tiny):
    model, tokenizer = tiny
    cache = GrammarCache()
    schema = decoding_schema(limits=TIGHT)
    first = cache.compiled_grammar(tokenizer, model_vocab_size(model), [3], schema)
    assert cache.compiled_grammar(tokenizer, model_vocab_size(model), [3], schema) is first
    assert cache.compiled_grammar(tokenizer, model_vocab_size(model), [3], decoding_schema()) is not first
