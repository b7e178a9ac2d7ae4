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
SECOND_DISPENSE_LABWARE = '{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":"'
ASPIRATE_LABWARE = '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"'


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
    # Ahead of its run, a place ends where the words joining a label to the run (" wells ") begin.
    assert text[first.start : first.end] == "Move 5ul from"
    assert text[first.behind : first.behind + len("Plate3")] == "Plate3"
    assert text[second.start : second.end] == " of Plate3 into Deep_Block"
    assert second.behind is None
    # Offsets are into the UTF-8 bytes: a Chinese character is three of them.
    place = label_places("试剂槽C4,D4")[0]
    assert (place.start, place.end) == (0, len("试剂槽".encode()))


@pytest.mark.parametrize("joined", ["样品板", "样品板的", "样品板中", "样品板上的", "「样品板」中", "“样品板”的"])
def test_a_label_ahead_of_its_run_ends_where_the_words_joining_it_begin(joined):
    text = f"从{joined}A1,B1每孔吸取20ul"
    place = label_places(text)[0]
    assert text.encode()[place.start : place.end].decode().endswith("样品板")
    row = row_after(text, ASPIRATE_LABWARE)
    assert row.keeps_grounding('样品板"'.encode())
    assert not row.keeps_grounding('样品"'.encode())
    assert not row.keeps_grounding("板".encode())  # one character of the name is never the whole name


def test_a_label_is_no_word_of_its_place_but_the_one_next_to_the_wells():
    text = "每孔加20ul到子板中E2,F2"
    row = row_after(text, ASPIRATE_LABWARE)
    assert row.keeps_grounding('子板"'.encode())
    assert not row.keeps_grounding('中"'.encode())  # the joiner
    assert not row.keeps_grounding('每孔"'.encode())  # a word of the place away from the wells


@pytest.mark.parametrize("text", ["PCR:血清板,程序qPCR_40;试剂槽D2,E2每孔吸45ul", "吸取10ul\n试剂槽中D2,E2每孔加10ul"])
def test_a_label_starts_after_the_last_clause_break_before_its_wells(text):
    place = label_places(text)[0]
    assert text.encode()[place.start : place.end].decode() == "试剂槽"
    row = row_after(text, ASPIRATE_LABWARE)
    assert row.keeps_grounding("试剂槽".encode())
    assert not row.keeps_grounding("程序".encode())
    assert not row.keeps_grounding("吸取".encode())


def test_a_label_does_not_start_inside_an_ascii_name():
    row = row_after("aspirate 5ul from Sample_Plate A1,B1", ASPIRATE_LABWARE)
    assert row.keeps_grounding(b"Sample")
    assert not row.keeps_grounding(b"ample")
    assert not row.keeps_grounding(b'Plate"')


def test_a_label_is_the_one_next_to_the_steps_wells_not_an_earlier_steps():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + SECOND_DISPENSE_LABWARE)
    assert row.keeps_grounding("试剂槽".encode())
    assert not row.keeps_grounding("裂".encode())
    assert not row.keeps_grounding("血清板".encode())


def test_a_label_written_behind_its_wells_with_of_is_theirs():
    text = "aspirate 5ul from wells B9,C9 of Plate3, then dispense into Deep_Block A5,B5"
    row = row_after(text, '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],'
                    '"labware":"')
    assert row.keeps_grounding(b'Plate3"')
    assert not row.keeps_grounding(b"Deep")


def test_a_label_stops_only_where_a_chinese_word_does():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE + SECOND_DISPENSE_LABWARE)
    assert not row.keeps_grounding('试剂"'.encode())  # 试剂|槽: inside the word
    assert row.keeps_grounding('试剂槽"'.encode())  # 试剂槽|C4
    row = row_after(TWO_DISPENSES, ASPIRATE + SECOND_DISPENSE_LABWARE)
    assert row.keeps_grounding('裂解液槽"'.encode())  # 裂解液槽|中A8


def test_a_label_of_a_step_without_wells_lies_between_the_runs_listed_and_the_next():
    text = "把检测板移到Deck_4。从血清板A12,B12吸8ul,然后振荡血清板:750rpm,60s。裂解液槽C4,D4每孔加4ul,再孵育Plate3"
    move = '{"commands":[{"func_name":"MoveLabware","func_parameters":{"labware":"'
    row = row_after(text, move)  # before the first run
    assert row.keeps_grounding("检测板".encode())
    assert not row.keeps_grounding(b"Plate3")  # after it
    row = row_after(text, move + '检测板","position":"')
    assert row.keeps_grounding('Deck_4"'.encode())
    aspirate = '{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"血清板","wells":'
    shake = aspirate + '["A12","B12"],"vols":[8,8]}},{"func_name":"Shake","func_parameters":{"labware":"'
    row = row_after(text, move + '检测板","position":"Deck_4"}},' + shake)  # between the runs
    assert row.keeps_grounding('血清板"'.encode())
    assert not row.keeps_grounding("检测板".encode())  # before the run the plan has listed
    assert not row.keeps_grounding(b"Plate3")  # after the next run
    dispense = '{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":"裂解液槽","wells":['
    incubate = dispense + '"C4","D4"],"vols":[4,4]}},{"func_name":"Incubate","func_parameters":{"labware":"'
    row = row_after(text, move + '检测板","position":"Deck_4"}},' + shake + '血清板","rpm":750,"seconds":60}},'
                    + incubate)  # after the last run
    assert row.keeps_grounding(b'Plate3"')
    assert not row.keeps_grounding("血清板".encode())
    assert not row.keeps_grounding("裂解液槽".encode())


def test_texts_without_wells_are_left_to_grounding():
    row = row_after("把检测板移到Deck_4, 再把样品板移到Deck_1", '{"commands":[{"func_name":"MoveLabware",'
                    '"func_parameters":{"labware":"')
    assert row.keeps_grounding("样品板".encode())


def test_a_closed_label_is_not_judged_again():
    row = row_after(TWO_DISPENSES, ASPIRATE + DISPENSE)
    assert row.keeps_grounding(b'{"func_name":"Dispense"')


@pytest.mark.parametrize("bound", [True, False])
def test_the_processor_copies_the_label_next_to_the_wells(tiny, bound):
    text = "aspirate 8ul from Src_Plate A12,B12; dispense 4ul into Mag_Station A8,B8; then Wash_Trough C4,D4 gets 4ul"
    prefix = (
        '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"Src_Plate",'
        '"wells":["A12","B12"],"vols":[8,8]}},{"func_name":"Dispense","func_parameters":{"channels":[1,2],'
        '"labware":"Mag_Station","wells":["A8","B8"],"vols":[4,4]}},' + SECOND_DISPENSE_LABWARE
    )
    # "M" starts the previous step's Mag_Station, "W" this step's own Wash_Trough.
    picked = pick_after_prefix(tiny, prefix, ["M", "W"], label_binding_texts=[text] if bound else None)
    assert picked == ("W" if bound else "M")


def test_grounding_steers_an_ungrounded_pick_to_a_label_the_binding_keeps(tiny):
    """The model's pick copies nothing ("Z"): grounding must replace it, and the replacement must be this step's own
    label ("W"), not the best grounded one ("M", the previous step's), which binding would refuse too late."""
    text = "aspirate 8ul from Src_Plate A12,B12; dispense 4ul into Mag_Station A8,B8; then Wash_Trough C4,D4 gets 4ul"
    prefix = (
        '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"Src_Plate",'
        '"wells":["A12","B12"],"vols":[8,8]}},{"func_name":"Dispense","func_parameters":{"channels":[1,2],'
        '"labware":"Mag_Station","wells":["A8","B8"],"vols":[4,4]}},' + SECOND_DISPENSE_LABWARE
    )
    picked = pick_after_prefix(tiny, prefix, ["Z", "M", "W"], grounding_texts=[text], label_binding_texts=[text])
    assert picked == "W"
    assert pick_after_prefix(tiny, prefix, ["Z", "M", "W"], grounding_texts=[text]) == "M"
