"""Grounded liquid classes: a class the text names goes on the Aspirate or Dispense it names it for, and on no other.

First the rule on every gold plan (corpus, held-out families, public examples), then the byte-level check on
hand-made prefixes, then the processor on the tiny model's real tokenizer.
"""

from __future__ import annotations

import pytest

from pipelines.model.plan_layout import render_plan
from pipelines.serve.liquid_class import LiquidClassMark, LiquidClassRow, liquid_class_for, liquid_class_marks
from tests.helpers import gold_refusals, pick_after_prefix

# The class trails the Aspirate; the Dispense writes the same wells again and takes none.
TRAILING = "通道1,2从样品板A1,B1各吸取20ul, 液体类别为Serum_Slow, 然后分配20ul到Plate2的A1,B1"
ASPIRATE = {"channels": [1, 2], "labware": "样品板", "wells": ["A1", "B1"], "vols": [20, 20]}
DISPENSE = {"channels": [1, 2], "labware": "Plate2", "wells": ["A1", "B1"], "vols": [20, 20]}


def command_prefix(earlier: list[tuple[str, dict]], name: str, params: dict) -> str:
    """Plan JSON up to the end of the volumes of the command `name` (its parameters still open)."""
    done = [render_plan({"func_name": n, "func_parameters": p}) for n, p in earlier]
    current = render_plan({"func_name": name, "func_parameters": params})
    return '{"commands":[' + "".join(f"{command}," for command in done) + current[:-2]


def row_after(description: str, prefix: str) -> LiquidClassRow:
    row = LiquidClassRow(description)
    row.accept_bytes(prefix.encode())
    return row


def test_every_gold_liquid_class_is_the_one_the_text_names_for_its_command(gold):
    with_class = 0
    for where, text, plan in gold:
        marks = liquid_class_marks(text)
        for index, command in enumerate(plan):
            if command["func_name"] in ("Aspirate", "Dispense"):
                params = command["func_parameters"]
                with_class += "liquidClass" in params
                assert liquid_class_for(marks, plan[:index], params["wells"]) == params.get("liquidClass"), (
                    where, text, index
                )
    assert with_class > 250


def test_every_gold_plan_keeps_its_liquid_classes_byte_by_byte(gold):
    assert gold_refusals(gold, LiquidClassRow, lambda row: row.keeps_grounding) == []


@pytest.mark.parametrize(
    ("description", "marks"),
    [
        (TRAILING, [LiquidClassMark("Serum_Slow", ("A1", "B1"), 0)]),
        ("Aspirate 20ul from Plate1 A1,B1, then liquid class Buffer_Jet: dispense 20ul into Plate2 A1,B1",
         [LiquidClassMark("Buffer_Jet", ("A1", "B1"), 1)]),
        ("使用液体类Water_Free,样品板C2,D2各吸取8ul", [LiquidClassMark("Water_Free", ("C2", "D2"), 0)]),
        ("液体类型Water_Free:在样品板中A7各吸40ul", [LiquidClassMark("Water_Free", ("A7",), 0)]),
        ("draw 5ul from wells E5, F5 and G5 (liquid class Beads_Mix)",
         [LiquidClassMark("Beads_Mix", ("E5", "F5", "G5"), 0)]),
        ("[Serum_Slow] push out 400ul each into Plate_B2 (A10 and B10)",
         [LiquidClassMark("Serum_Slow", ("A10", "B10"), 0)]),
        ("Shake Plate1 at 700rpm for 60s", []),
    ],
)
def test_a_marker_names_the_class_for_the_wells_on_its_side(description, marks):
    assert liquid_class_marks(description) == marks


def test_the_command_the_text_names_a_class_for_must_write_it():
    row = row_after(TRAILING, command_prefix([], "Aspirate", ASPIRATE))
    assert not row.keeps_grounding(b"}")
    assert not row.keeps_grounding(b"]}")
    assert row.keeps_grounding(b',"')
    assert row.keeps_grounding(b',"liquidClass":"Serum')
    assert not row.keeps_grounding(',"liquidClass":"样品板"'.encode())
    assert not row.keeps_grounding(b',"liquidClass":"Serum_Slowly')
    assert row.keeps_grounding(b',"liquidClass":"Serum_Slow"}},{')


def test_a_command_the_text_names_no_class_for_writes_none():
    row = row_after(TRAILING, command_prefix([("Aspirate", ASPIRATE | {"liquidClass": "Serum_Slow"})], "Dispense",
                                             DISPENSE))
    assert row.keeps_grounding(b"}}")
    assert not row.keeps_grounding(b',"liquidClass"')


def test_a_text_without_a_marker_leaves_the_field_to_the_model():
    row = row_after("通道1,2从样品板A1,B1各吸取20ul", command_prefix([], "Aspirate", ASPIRATE))
    assert row.keeps_grounding(b"}") and row.keeps_grounding(',"liquidClass":"样品板"'.encode())


@pytest.mark.parametrize("grounded", [True, False])
def test_the_processor_keeps_the_parameters_open_for_the_class(tiny, grounded):
    texts = [TRAILING] if grounded else None
    picked = pick_after_prefix(tiny, command_prefix([], "Aspirate", ASPIRATE), ["}", ","], liquid_class_texts=texts)
    assert picked == ("," if grounded else "}")
