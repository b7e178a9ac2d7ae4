"""Steps the text has a word or an amount for: no more PCR or MoveLabware steps than the description has words for
them, no more steps stating a duration, temperature, speed or count than it has statements of it, and no liquid
step where it states no volume.

First the rule on every gold plan (corpus, held-out families, public examples), then the words on hand-made texts,
then the byte-level check, then the processor on the tiny model's real tokenizer.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.serve.command_cues import STEP_WORDS, CommandCueRow, step_bounds, step_words, steps_named, steps_stating
from pipelines.serve.stated_amounts import AMOUNT_FIELDS
from tests.helpers import gold_refusals, pick_after_prefix

PLAN_OPEN = '{"commands":[{"func_name":"'
AFTER_A_PCR = (
    '{"commands":[{"func_name":"PCR","func_parameters":{"labware":"Plate1","program":"Melt_60"}},'
    '{"func_name":"'
)


def test_every_step_word_names_a_catalog_command():
    from data_contracts.catalog import load_catalog

    assert set(STEP_WORDS) <= set(load_catalog().commands)


def test_every_gold_plan_keeps_within_its_step_bounds(gold):
    assert len(gold) > 4000
    def over(text: str, plan: list[dict]) -> bool:
        steps = Counter(command["func_name"] for command in plan)
        return any(sum(steps[name] for name in names) > bound for names, bound in step_bounds(text))

    assert [(where, text) for where, text, plan in gold if over(text, plan)] == []
    assert gold_refusals(gold, CommandCueRow, lambda row: row.allows) == []
    # Not vacuous: the gold plans do have these steps, and over a third of them use up an amount's bound.
    steps = Counter(command["func_name"] for _, _, plan in gold for command in plan)
    assert min(steps[name] for name in ("PCR", "MoveLabware", "Delay", "Incubate", "Shake", "Mix")) > 300
    assert sum(at_an_amount_bound(text, plan) for _, text, plan in gold) > len(gold) / 3


def at_an_amount_bound(text: str, plan: list[dict]) -> bool:
    steps = Counter(command["func_name"] for command in plan)
    amount_bounds = step_bounds(text)[len(STEP_WORDS):]
    return any(0 < bound == sum(steps[name] for name in names) for names, bound in amount_bounds)


def test_the_steps_that_state_each_amount_come_from_the_catalog():
    assert {amount: steps_stating(amount) for amount in AMOUNT_FIELDS} == {
        "vols": {"Aspirate", "Dispense", "Transfer", "Mix"},
        "seconds": {"Delay", "Incubate", "Shake"},
        "temperature": {"Incubate"},
        "rpm": {"Shake"},
        "times": {"Mix"},
    }


@pytest.mark.parametrize(
    ("text", "held_back"),
    [
        # No duration, temperature, speed or count stated: no step that states one (the 150 is a volume).
        ("dispense 150ul per tip to Plate_B2 A9,B9", {"Delay", "Incubate", "Shake", "Mix"}),
        # One duration: one timed step, whichever it is.
        ("incubate Deep_Block (65°C, 60s)", {"Shake", "Mix", "Aspirate", "Dispense", "Transfer"}),
        # No volume: no liquid step ("Standard_35" is a name, not an amount).
        ("Amplify Deep_Block using Standard_35", {"Aspirate", "Dispense", "Transfer", "Mix", "Delay", "Incubate",
                                                  "Shake"}),
    ],
)
def test_a_step_whose_amount_the_text_never_states_is_held_back(text, held_back):
    row = row_after(text, PLAN_OPEN)
    names = ("GetDiti", "DropDiti", "Aspirate", "Dispense", "Mix", "Transfer", "Delay", "Incubate", "Shake")
    assert {name for name in names if not row.allows(name.encode() + b'"')} == held_back


def test_each_statement_of_a_duration_allows_one_timed_step():
    delay = PLAN_OPEN + 'Delay","func_parameters":{"seconds":60}},{"func_name":"'
    assert not row_after("incubate Deep_Block (65°C, 60s)", delay).allows(b'Incubate"')
    assert row_after("wait 60s, then incubate Deep_Block (65°C, 60s)", delay).allows(b'Incubate"')


@pytest.mark.parametrize(
    ("text", "pcr", "moves"),
    [
        ("ch 1/2 move 20ul per channel from Plate3 A1,B1 to Deep_Block A5,B5", 0, 0),
        ("carry 15ul each from Src_Plate C1,D1 to wells C5,D5 of Deep_Block", 0, 0),
        ("通道4,5将洗脱板的D2,E2孔每个孔60ul移入Buffer_Res的F10,G10", 0, 0),
        ("把培养板的A4,B4孔各90ul转移到稀释板的A1,B1孔", 0, 0),
        ("Well C3 of Src_Plate -> Dil_Plate (C7): transfer 5ul with channel #2", 0, 0),
        ("Src_Plate B1,C1 → 稀释板C8,D8, 每孔各6ul", 0, 0),
        ("mix 10ul each in PCR_Plate A3,B3, 4x", 0, 0),
        ("Dil_Plate → Hotel_2, then amplify Dil_Plate using Fast_40", 1, 1),
        ("用夹爪把稀释板移到Deck_3,然后稀释板PCR扩增,程序Fast_40", 3, 2),
        ("relocate Std_Plate to Lid_Park; run qPCR on Std_Plate", 1, 1),
    ],
)
def test_liquid_verbs_wells_and_names_are_not_words_for_steps(text, pcr, moves):
    words = step_words(text)
    assert (words["PCR"], words["MoveLabware"]) == (pcr, moves)


def row_after(description: str, prefix: str) -> CommandCueRow:
    row = CommandCueRow(description)
    row.accept_bytes(prefix.encode())
    return row


def test_a_step_is_held_back_once_the_text_has_no_word_left_for_it():
    assert steps_named(AFTER_A_PCR.encode()) == {"PCR": 1} | {name: 0 for name in steps_named(b"") if name != "PCR"}
    row = row_after("Plate1 PCR (Melt_60), then wait 30s", AFTER_A_PCR)
    assert not row.allows(b"P")  # only PCR starts so
    assert row.allows(b"De")  # Delay
    twice = row_after("Plate1 PCR (Melt_60), then PCR again", AFTER_A_PCR)
    assert twice.allows(b"P")


def test_a_prefix_shared_with_a_free_command_is_kept_until_it_decides():
    row = row_after("transfer 5ul from Src_Plate A1 to Dil_Plate B1, mix 3 times", PLAN_OPEN)
    assert row.allows(b"M")  # may still become Mix
    assert not row.allows(b"Mo")
    assert not row.allows(b'MoveLabware"')
    assert row.allows(b'Mix"')


def test_a_name_written_before_the_token_is_not_judged_again():
    row = row_after("Plate1 on the thermocycler, program Melt_60", PLAN_OPEN + "PCR")
    assert row.allows(b'","func_parameters":{')


@pytest.mark.parametrize("cued", [True, False])
@pytest.mark.parametrize(("preferred", "taken"), [(["PCR", "G"], "G"), (["Mo", "Tr"], "Tr")])
def test_the_processor_names_a_step_the_text_has_a_word_for(tiny, cued, preferred, taken):
    """The model prefers a PCR ("PCR") or a MoveLabware ("Mo") the text has no word for; the rule takes its next pick,
    a GetDiti ("G") or a Transfer ("Tr")."""
    text = "Fit ch 1, 2 with 50ul DiTis; ch 1/2 move 20ul per channel from Plate3 A1, B1 to Deep_Block A5, B5."
    picked = pick_after_prefix(tiny, PLAN_OPEN, preferred, command_cue_texts=[text] if cued else None)
    assert picked == (taken if cued else preferred[0])
