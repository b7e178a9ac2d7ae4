"""Volumes in the text's order: each vols list is the text's next volume statement, or its last one again.

First the rule on every gold plan (corpus, held-out families, public examples), then the byte-level check on
hand-made prefixes, then the processor on the tiny model's real tokenizer.
"""

from __future__ import annotations

import pytest

from pipelines.serve.volume_order import VolumeOrderRow, volume_statements
from tests.helpers import gold_refusals, pick_after_prefix

# The Dispense states its own volume; the Mix's comes after it.
DISPENSE_THEN_MIX = (
    "通道1,2从样品板A1,B1各吸取30ul, 然后加样到检测板A3,B3, 各30ul, 之后于检测板A3,B3每个通道以120ul混匀5遍"
)
ASPIRATE_30 = (
    '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"样品板",'
    '"wells":["A1","B1"],"vols":[30,30]}},'
)
DISPENSE_VOLS = (
    '{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":"检测板",'
    '"wells":["A3","B3"],"vols":['
)
RUN = "通道1,2,3向试剂槽A6,B6,C6孔分别加入1ul、8ul、10ul"
RUN_VOLS = (
    '{"commands":[{"func_name":"Dispense","func_parameters":{"channels":[1,2,3],"labware":"试剂槽",'
    '"wells":["A6","B6","C6"],"vols":['
)


def row_after(description: str, prefix: str) -> VolumeOrderRow:
    row = VolumeOrderRow(description)
    row.accept_bytes(prefix.encode())
    return row


def test_every_gold_plan_keeps_its_volumes_in_the_texts_order_byte_by_byte(gold):
    assert len(gold) > 4000
    assert gold_refusals(gold, VolumeOrderRow, lambda row: row.keeps_grounding) == []


def test_every_gold_vols_list_is_its_own_statement(gold):
    """In every gold plan, the k-th vols list is the list the k-th statement gives: the rule reads a statement
    for every list, and no step relies on reusing one."""
    unmatched = []
    for where, text, plan in gold:
        lists = [command["func_parameters"]["vols"] for command in plan if "vols" in command["func_parameters"]]
        statements = [[float(number) for number in statement] for statement in volume_statements(text)]
        expected = [statement * len(vols) if len(statement) == 1 else statement
                    for statement, vols in zip(statements, lists)]
        if len(statements) != len(lists) or expected != lists:
            unmatched.append((where, text))
    assert unmatched == []


@pytest.mark.parametrize(
    ("description", "statements"),
    [
        (DISPENSE_THEN_MIX, [(b"30",), (b"30",), (b"120",)]),
        (RUN, [(b"1", b"8", b"10")]),
        ("依次吸取12.5ul、5ul、45ul", [(b"12.5", b"5", b"45")]),
        ("分别吸取150ul and 400ul", [(b"150", b"400")]),
        ("取1000ul枪头, 吸取200ul, 换200ul tips", [(b"200",)]),  # tip sizes are no volumes
        ("Triturate 5 strokes with 10ul each.\nDrop tips", [(b"10",)]),  # a line's last volume is no tip size
        ("孵育300s, 1600rpm振荡", []),
    ],
)
def test_volume_statements_are_runs_in_microlitres_without_tip_sizes(description, statements):
    assert volume_statements(description) == statements


def test_a_list_may_not_skip_the_statement_of_its_own_step():
    row = row_after(DISPENSE_THEN_MIX, ASPIRATE_30 + DISPENSE_VOLS)
    assert row.keeps_grounding(b"30")
    assert not row.keeps_grounding(b"120")


def test_a_step_without_its_own_statement_may_reuse_the_last_one():
    row = row_after("通道1,2从样品板A1,B1各吸取30ul, 加到检测板A3,B3, 然后以120ul混匀", ASPIRATE_30 + DISPENSE_VOLS)
    assert row.keeps_grounding(b"30") and row.keeps_grounding(b"120")


def test_a_list_keeps_one_statement():
    row = row_after("通道1,2,5,6向稀释板的A1,B1,E1,F1孔各加入175ul,随后混匀稀释板中A1、B1、E1、F1,各120ul", RUN_VOLS)
    row.accept_bytes(b"175,175,")
    assert row.keeps_grounding(b"175")
    assert not row.keeps_grounding(b"120")


def test_a_run_is_written_in_its_order():
    row = row_after(RUN, RUN_VOLS)
    row.accept_bytes(b"1,")
    assert row.keeps_grounding(b"8")
    assert not row.keeps_grounding(b"1")
    row.accept_bytes(b"8, 10")
    assert row.keeps_grounding(b"]")
    assert not row.keeps_grounding(b"0]")


def test_a_text_without_a_statement_leaves_the_lists_to_the_other_rules():
    row = row_after("通道1,2从样品板A1,B1吸液, 加到检测板A3,B3", ASPIRATE_30 + DISPENSE_VOLS)
    assert row.keeps_grounding(b"120")


@pytest.mark.parametrize("ordered", [True, False])
def test_the_processor_keeps_the_step_on_its_own_statement(tiny, ordered):
    texts = [DISPENSE_THEN_MIX] if ordered else None
    # The tokenizer writes one digit per token: "1" starts the Mix's 120, "3" the Dispense's own 30.
    picked = pick_after_prefix(tiny, ASPIRATE_30 + DISPENSE_VOLS, ["1", "3"], volume_order_texts=texts)
    assert picked == ("3" if ordered else "1")

