"""Grounded amounts: volumes, durations, temperatures, speeds, counts, tip sizes and channels are ones the text
states for them.

First the rules on every gold plan (corpus, held-out families, public examples), then the byte-level check on
hand-made prefixes, then the processor on the tiny model's real tokenizer, then untrained tiny models decoding
with amounts grounded and without.
"""

from __future__ import annotations

import pytest

from pipelines.model.prompts import serving_user_message
from pipelines.serve.amount_grounding import GROUNDED_AMOUNT_FIELDS, AmountRow
from pipelines.serve.constrained import DecodingLimits
from pipelines.serve.decode import DecodingConfig, generate_batched
from pipelines.serve.plan_output import check_plan
from pipelines.serve.stated_amounts import stated_numbers_by_field, tip_sizes
from tests.helpers import first_refusal, gold_refusals, pick_after_prefix

MIX_15_AT_500 = "channels 7,8 deposit 800ul per channel in Cell_Plate wells D4,E4, after that mix 15 times at 500ul"
MIX_PREFIX = (
    '{"commands":[{"func_name":"Mix","func_parameters":{"channels":[7,8],"labware":"Cell_Plate",'
    '"wells":["D4","E4"],"vols":['
)
NEW_TIPS = "channels 1,2 pick up 1000ul DiTis, eject the tips and then take new 200ul tips"
FIRST_TIPS = '{"commands":[{"func_name":"GetDiti","func_parameters":{"ditiType":"'
SECOND_TIPS = (
    FIRST_TIPS + '1000ul","channels":[1,2]}},{"func_name":"DropDiti","func_parameters":{"channels":[1,2]}},'
    '{"func_name":"GetDiti","func_parameters":{"ditiType":"'
)


def test_every_gold_plan_keeps_its_amounts_grounded_byte_by_byte(gold):
    assert len(gold) > 4000
    assert gold_refusals(gold, AmountRow, lambda row: row.keeps_grounding) == []


def test_every_grounded_field_of_a_gold_plan_is_constrained(gold):
    """The rules read something for every amount of every gold plan: none is left to the model."""
    unread = set()
    for _, text, plan in gold:
        row, sizes = AmountRow(text), tip_sizes(text)
        fields = {field for command in plan for field in command["func_parameters"]}
        numeric = fields & set(GROUNDED_AMOUNT_FIELDS) - {"ditiType"}
        unread |= {field for field in numeric if not row.allowed_for(field)}
        gets = sum(command["func_name"] == "GetDiti" for command in plan)
        if gets > sum(size is not None for size in sizes):
            unread.add("ditiType")
    assert unread == set()


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        (MIX_15_AT_500, {"vols": {b"800", b"500"}, "times": {b"15"}}),
        ("通道5,6,7转移质控板E2,F2,G2 -> 子板中E2,F2,G2, 依次175、180、75ul", {"vols": {b"175", b"180", b"75"}}),
        ("Plate3: shake 180s at 1200rpm, then 37°C for 12.5s, 3x 0.5ul", {
            "seconds": {b"180", b"12.5"}, "rpm": {b"1200"}, "temperature": {b"37"}, "times": {b"3"},
            "vols": {b"0.5"},
        }),
        ("Run HotStart_30x on Plate_2ml", {}),  # numbers inside labels are no amounts
    ],
)
def test_numbers_are_read_with_their_unit(description, expected):
    assert stated_numbers_by_field(serving_user_message(description)) == expected


def test_tip_sizes_are_read_before_each_word_for_tips():
    assert tip_sizes(NEW_TIPS) == ["1000ul", None, "200ul"]
    assert tip_sizes("取1000ul枪头, 吸取200ul, 弃tip, 重新取10ul Tip") == ["1000ul", None, "10ul"]


def row_after(description: str, prefix: str) -> AmountRow:
    row = AmountRow(description)
    row.accept_bytes(prefix.encode())
    return row


@pytest.mark.parametrize(
    ("token", "keeps"),
    [(b"5", True), (b"500", True), (b"500, 8", True), (b"500]", True), (b"1", False), (b"15", False),
     (b"50]", False), (b"500, 15", False)],
)
def test_a_volume_is_one_the_text_writes_in_ul(token, keeps):
    assert row_after(MIX_15_AT_500, MIX_PREFIX).keeps_grounding(token) is keeps


@pytest.mark.parametrize(("token", "keeps"), [(b"15", True), (b"15}}", True), (b"1}", False), (b"500", False)])
def test_a_count_is_one_the_text_writes_with_times(token, keeps):
    assert row_after(MIX_15_AT_500, MIX_PREFIX + '500,500],"times":').keeps_grounding(token) is keeps


def test_a_value_closed_before_the_token_is_not_checked_again():
    row = row_after(MIX_15_AT_500, MIX_PREFIX + '500,500],"times":15}}')
    assert row.keeps_grounding(b",{") and row.keeps_grounding(b"]}")


def test_each_tip_pickup_takes_the_size_written_before_its_own_word_for_tips():
    assert row_after(NEW_TIPS, FIRST_TIPS).keeps_grounding(b'1000ul"')
    assert not row_after(NEW_TIPS, FIRST_TIPS).keeps_grounding(b"2")
    assert row_after(NEW_TIPS, SECOND_TIPS).keeps_grounding(b'200ul"')
    assert not row_after(NEW_TIPS, SECOND_TIPS).keeps_grounding(b'1000ul"')


@pytest.mark.parametrize(
    ("token", "keeps"),
    [(b"1", True), (b"1, 2]", True), (b"2]", True), (b"1, 2, 3", False), (b"2, 1", False), (b"1, 1", False),
     (b"3", False)],
)
def test_channels_are_stated_numbers_in_rising_order(token, keeps):
    prefix = FIRST_TIPS + '50ul","channels":['
    assert row_after("Load 50ul tips onto channels 1,2, then take up 22ul", prefix).keeps_grounding(token) is keeps


def test_a_field_the_text_states_nothing_for_is_left_to_the_model():
    row = row_after("Mix wells D4,E4 of Cell_Plate", MIX_PREFIX)
    assert row.keeps_grounding(b"123]")


@pytest.mark.parametrize("grounded", [True, False])
def test_the_processor_replaces_a_number_of_the_wrong_unit(tiny, grounded):
    texts = [MIX_15_AT_500] if grounded else None
    picked = pick_after_prefix(tiny, MIX_PREFIX, ["1", "5"], amount_texts=texts)
    assert picked == ("5" if grounded else "1")


# --- untrained tiny models ----------------------------------------------------------------------------

DESCRIPTIONS = [
    "通道1,2从样品板A1,B1各吸取20ul, 然后在反应板B3,C3混匀5次, 每孔150ul",
    "Shake Plate1 at 700 rpm for 60s, then incubate it at 37°C for 300s",
    "channels 3,4 take 50ul tips, drop them, then take 200ul tips and mix 3 times at 40ul in Plate2 A1,B1",
    "等待45s后, 反应板在55°C孵育600s",
]
SEEDS = (0, 1)
LIMITS = DecodingLimits(max_commands=4, max_string_chars=12, max_number=1000)


def amounts_written(text: str) -> list[tuple[str, str, object]]:
    checked = check_plan(text)
    assert checked.json_valid, text
    return [
        (c.func_name, name, value) for c in checked.commands for name, value in c.func_parameters.items()
        if name in GROUNDED_AMOUNT_FIELDS
    ]


def ungrounded(description: str, text: str) -> bytes | None:
    """Where a plan's amounts first break the rules (checked byte by byte, as decoding does); None if nowhere."""
    row = AmountRow(serving_user_message(description))
    return first_refusal(row, row.keeps_grounding, text)


@pytest.fixture(scope="module")
def untrained_runs(tmp_path_factory) -> dict[bool, list]:
    """Outputs of untrained tiny models for DESCRIPTIONS, with amounts grounded and without (coverage off)."""
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs: dict[bool, list] = {True: [], False: []}
    try:
        for seed in SEEDS:
            model_dir = build_tiny_model(tmp_path_factory.mktemp(f"amounts{seed}"), seed=seed)
            model, tokenizer = load_model_and_tokenizer(model_dir)
            for grounded in (True, False):
                config = DecodingConfig(
                    max_new_tokens=600, batch_size=4, coverage=False, grounded_amounts=grounded, limits=LIMITS
                )
                runs[grounded] += generate_batched(model, tokenizer, DESCRIPTIONS, config)
    finally:
        torch.set_num_threads(threads)
    return runs


def test_grounded_amounts_of_an_untrained_model_are_stated_ones(untrained_runs):
    outputs = list(zip(DESCRIPTIONS * len(SEEDS), untrained_runs[True], strict=True))
    assert any(amounts_written(generation.text) for _, generation in outputs)
    for description, generation in outputs:
        assert generation.stopped, generation.text
        assert ungrounded(description, generation.text) is None, generation.text


def test_without_grounding_the_same_models_write_other_amounts(untrained_runs):
    outputs = zip(DESCRIPTIONS * len(SEEDS), untrained_runs[False], strict=True)
    assert any(ungrounded(description, generation.text) for description, generation in outputs)
