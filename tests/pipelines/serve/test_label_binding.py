"""Labels bound to their wells: the labware of a command with wells is copied from next to its run of wells.

First the rule on every gold plan (corpus, held-out families, public examples), then the byte-level check on
hand-made prefixes, then the processor on the tiny model's real tokenizer.
"""

from __future__ import annotations

import pytest

from pipelines.serve.label_binding import LabelBindingRow, label_places
from tests.helpers import gold_refusals, pick_after_prefix
from tests.pipelines.serve.test_well_order import ASPIRATE, DISPENSE, TWO_DISPENSES

# In TWO_DISPENSES the second Dispense's wells (C4, D4) follow 试剂槽; a model that repeats the step repeats 裂解液槽.
SECOND_DISPENSE_LABWARE = '{"func_name": "Dispense", "func_parameters": {"channels": [1, 2], "labware": "'


def row_after(description: str, prefix: str) -> LabelBindingRow:
    row = LabelBindingRow(description)
    row.accept_bytes(prefix.encode())
    return row


def test_every_gold_plan_copies_each_label_from_next_to_its_wells_byte_by_byte(gold):
    assert len(gold) > 4000
    assert gold_refusals(gold, LabelBindingRow, lambda row: row.keeps_grounding) == []


def test_a_place_lies_between_the_run_before_and_its_own_run_or_behind_its_of():
    text = "Move 5ul from wells B9,C9 of Plate3 into Deep_Block A5,B5"
    first, second = label_places(text)
    assert text[first.start : first.end] == "Move 5ul from wells "
    assert text[first.behind : first.behind + len("Plate3")] == "Plate3"
    assert text[second.start : second.end] == " of Plate3 into Deep_Block "
    assert second.behind is None
    # Offsets are into the UTF-8 bytes: a Chinese character is three of them.
    place = label_places("试剂槽C4,D4")[0]
    assert (place.start, place.end) == (0, len("试剂槽".encode()))


def test_a_label_is_the_one_next_to_the_steps_wells_not_an_earlier_steps():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + SECOND_DISPENSE_LABWARE)
    assert row.keeps_grounding("试剂槽".encode())
    assert not row.keeps_grounding("裂".encode())
    assert not row.keeps_grounding("血清板".encode())


def test_a_label_written_behind_its_wells_with_of_is_theirs():
    text = "aspirate 5ul from wells B9,C9 of Plate3, then dispense into Deep_Block A5,B5"
    row = row_after(text, '{"commands": [{"func_name": "Aspirate", "func_parameters": {"channels": [1, 2], '
                    '"labware": "')
    assert row.keeps_grounding(b'Plate3"')
    assert not row.keeps_grounding(b"Deep")


def test_a_label_stops_only_where_a_chinese_word_does():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + SECOND_DISPENSE_LABWARE)
    assert not row.keeps_grounding('试剂"'.encode())  # 试剂|槽: inside the word
    assert row.keeps_grounding('试剂槽"'.encode())  # 试剂槽|C4
    row = row_after(TWO_DISPENSES, ASPIRATE + SECOND_DISPENSE_LABWARE)
    assert row.keeps_grounding('裂解液槽"'.encode())  # 裂解液槽|中A8


def test_labels_of_commands_without_wells_and_texts_without_wells_are_left_to_grounding():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + '{"func_name": "Shake", "func_parameters": {"labware": "')
    assert row.keeps_grounding("血清板".encode())
    row = row_after("把检测板移到Deck_4, 再把样品板移到Deck_1", '{"commands": [{"func_name": "MoveLabware", '
                    '"func_parameters": {"labware": "')
    assert row.keeps_grounding("样品板".encode())


def test_a_closed_label_is_not_judged_again():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE)
    assert row.keeps_grounding(b'{"func_name": "Dispense"')


@pytest.mark.parametrize("bound", [True, False])
def test_the_processor_copies_the_label_next_to_the_wells(tiny, bound):
    text = "aspirate 8ul from Src_Plate A12,B12; dispense 4ul into Mag_Station A8,B8; then Wash_Trough C4,D4 gets 4ul"
    prefix = (
        '{"commands": [{"func_name": "Aspirate", "func_parameters": {"channels": [1, 2], "labware": "Src_Plate", '
        '"wells": ["A12", "B12"], "vols": [8, 8]}}, {"func_name": "Dispense", "func_parameters": {"channels": [1, 2], '
        '"labware": "Mag_Station", "wells": ["A8", "B8"], "vols": [4, 4]}}, ' + SECOND_DISPENSE_LABWARE
    )
    # "M" starts the previous step's Mag_Station, "W" this step's own Wash_Trough.
    picked = pick_after_prefix(tiny, prefix, ["M", "W"], label_binding_texts=[text] if bound else None)
    assert picked == ("W" if bound else "M")
