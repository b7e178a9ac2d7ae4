"""Wells in the text's order: the k-th well list is the text's k-th well statement, and none comes after the last.

First the rule on every gold plan (corpus, held-out families, public examples), then the byte-level check on
hand-made prefixes, then the processor on the tiny model's real tokenizer.
"""

from __future__ import annotations

import pytest

from pipelines.serve.well_order import WellOrderRow, well_statements
from tests.helpers import gold_refusals, pick_after_prefix

# Aspirate from the first run, Dispense into the second, a second Dispense into the third.
TWO_DISPENSES = "从血清板A12,B12孔每个孔吸取8ul。排到裂解液槽中A8,B8,每通道4ul。试剂槽C4,D4每孔加4ul(通道1,2)。"
ASPIRATE = (
    '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"血清板",'
    '"wells":["A12","B12"],"vols":[8,8]}},'
)
DISPENSE = (
    '{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":"裂解液槽",'
    '"wells":["A8","B8"],"vols":[4,4]}},'
)
SECOND_DISPENSE_WELLS = (
    '{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":"试剂槽","wells":["'
)


def row_after(description: str, prefix: str) -> WellOrderRow:
    row = WellOrderRow(description)
    row.accept_bytes(prefix.encode())
    return row


def test_every_gold_plan_keeps_its_wells_in_the_texts_order_byte_by_byte(gold):
    assert len(gold) > 4000
    assert gold_refusals(gold, WellOrderRow, lambda row: row.keeps_grounding) == []


def test_every_gold_well_list_is_its_own_statement(gold):
    """In every gold plan, the well lists are the text's well statements, one for one and in order."""
    unmatched = []
    for where, text, plan in gold:
        lists = [
            tuple(f'"{well}"'.encode() for well in value)
            for command in plan
            for field, value in command["func_parameters"].items()
            if field in ("wells", "srcWells", "dstWells")
        ]
        if lists != well_statements(text):
            unmatched.append((where, text))
    assert unmatched == []


@pytest.mark.parametrize(
    ("description", "statements"),
    [
        ("从样品板A1,B1,C1吸取", [(b'"A1"', b'"B1"', b'"C1"')]),
        ("pull 5ul from B9 and C9, then add to Plate2 E10、F10", [(b'"B9"', b'"C9"'), (b'"E10"', b'"F10"')]),
        ("Plate3 D11 -> PCR_Plate G4", [(b'"D11"',), (b'"G4"',)]),
        ("移动Plate2到Deck_4, A13孔不算", []),  # labels and non-wells are no statements
    ],
)
def test_well_statements_are_runs_of_well_names(description, statements):
    assert well_statements(description) == statements


def test_a_list_is_the_next_statement_not_an_earlier_one():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + SECOND_DISPENSE_WELLS)
    assert row.keeps_grounding(b"C4")
    assert not row.keeps_grounding(b"A8")


def test_a_list_is_the_whole_statement_in_its_order():
    row = row_after(TWO_DISPENSES, ASPIRATE + '{"func_name":"Dispense","func_parameters":{"channels":[1,2],'
                    '"labware":"裂解液槽","wells":["A8",')
    assert row.keeps_grounding(b'"B8"]')
    assert not row.keeps_grounding(b'"A8"]')
    assert not row.keeps_grounding(b'"B8","C8"')


def test_no_command_with_wells_after_the_last_statement():
    row = row_after("从血清板A12,B12吸取8ul, 排到裂解液槽A8,B8, 然后静置30s", ASPIRATE + DISPENSE + '{"func_name":"')
    assert not row.keeps_grounding(b"Dispense")
    assert not row.keeps_grounding(b"Mix")
    assert row.keeps_grounding(b"Delay")
    assert row.keeps_grounding(b"D")  # may still become Delay or DropDiti


def test_a_text_without_a_statement_leaves_the_lists_to_the_other_rules():
    row = row_after("通道1,2吸液, 然后加到检测板", ASPIRATE)
    assert row.keeps_grounding(b'{"func_name":"Dispense')


@pytest.mark.parametrize("ordered", [True, False])
def test_the_processor_keeps_the_step_on_the_next_statement(tiny, ordered):
    texts = [TWO_DISPENSES] if ordered else None
    # "A" starts the first Dispense's A8 again, "C" the second Dispense's own C4.
    picked = pick_after_prefix(tiny, ASPIRATE + DISPENSE + SECOND_DISPENSE_WELLS, ["A", "C"],
                               well_order_texts=texts)
    assert picked == ("C" if ordered else "A")
