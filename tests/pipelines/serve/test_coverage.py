"""Coverage-guided decoding: no plan ends leaving a stated value unused, and none goes on restating used ones.

First the rules on hand-written plans, then the promise that makes them safe: no gold plan of the generated
corpus, the held-out families or the public examples breaks them. Last, the processor on the tiny
tokenizer's real vocabulary: it refuses the token that would close an incomplete plan.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from data_contracts.forms import parse_text_commands, render_json_commands
from pipelines.model.plan_layout import render_plan
from pipelines.serve.coverage import (
    CoverageRow,
    stated_values,
    trim_plan_text,
    trim_unstated_tail,
    written_counts,
    written_values,
)
from pipelines.serve.stated_amounts import tip_mentions
from tests.helpers import gold_refusals, pick_after_prefix, predict_args


def command(name: str, **params) -> dict:
    return {"func_name": name, "func_parameters": params}


CHANNELS = [1, 2, 3, 4]
WELLS = ["A1", "B1", "C1", "D1"]
DST_WELLS = ["A2", "B2", "C2", "D2"]
ASPIRATE = command("Aspirate", channels=CHANNELS, labware="Src", wells=WELLS, vols=[20] * 4)
DISPENSE = command("Dispense", channels=CHANNELS, labware="Dst", wells=DST_WELLS, vols=[20] * 4)
DROP = command("DropDiti", channels=CHANNELS)


def test_stated_values_are_numbers_well_names_and_ascii_labels():
    text = "3、通道1,2从Plate2的A1,B1各吸取2.5ul.\n然后移到Deck_4，等待300s"
    assert stated_values(text) == {1.0: 1, 2.0: 1, 2.5: 1, 300.0: 1, "A1": 1, "B1": 1, "Plate2": 1, "Deck_4": 1}
    # Chinese labels have no shape to tell them from the sentence around them.
    assert stated_values("把子板移到仓位") == {}
    assert stated_values("2、4号通道吸取5ul") == {2.0: 1, 4.0: 1, 5.0: 1}


def test_written_values_read_lists_numbers_and_tip_types():
    plan = render_json_commands(parse_text_commands("GetDiti(ditiType='200ul', channels=[1, 2])"))
    assert written_values(plan) == {200.0, 1.0, 2.0}
    assert written_values(json.dumps({"commands": [ASPIRATE]})) == {1.0, 2.0, 3.0, 4.0, 20.0, *WELLS}
    move = json.dumps({"commands": [command("MoveLabware", labware="Plate_2", position="Deck_4")]})
    assert written_values(move) == {"Plate_2", "Deck_4"}  # keys such as func_name are no labels


def test_each_tip_pick_up_and_drop_has_its_word_for_tips():
    assert tip_mentions("通道1,2取200ul枪头,各吸取20ul,再弃tip") == 2
    assert tip_mentions("Pick up 50ul DiTis, aspirate 20ul per tip, then eject the tips.") == 2
    assert tip_mentions("通道1,2从Src的A1,B1各吸取20ul") == 0


SRC_TO_DST = "通道1,2,3,4从Src的A1,B1,C1,D1各吸取20ul,再加入Dst的A2,B2,C2,D2"


def test_a_tail_restating_used_values_is_cut():
    mix = command("Mix", channels=CHANNELS, labware="Dst", wells=DST_WELLS, vols=[20] * 4, times=2)
    assert trim_unstated_tail(SRC_TO_DST, [ASPIRATE, DISPENSE, mix, DROP]) == [ASPIRATE, DISPENSE]


def test_a_restating_command_is_cut_even_before_every_stated_value_is_used():
    # No gold plan restates a command (test_no_gold_plan_has_a_tail_to_cut), so a plan that does is wrong
    # from there on whatever follows.
    again = command("Aspirate", channels=CHANNELS, labware="Src", wells=WELLS, vols=[20] * 4)
    assert trim_unstated_tail(SRC_TO_DST, [ASPIRATE, again, DISPENSE]) == [ASPIRATE]
    # The first command stays whatever it states: a plan without commands is no plan.
    invented = command("Delay", seconds=9)
    assert trim_unstated_tail("等待300s", [invented, invented]) == [invented]


def test_a_value_stated_again_is_new_in_a_new_role():
    mix = command("Mix", channels=CHANNELS, labware="Dst", wells=DST_WELLS, vols=[20] * 4, times=4)
    text = "通道1,2,3,4向Dst的A2,B2,C2,D2各加入20ul,然后混匀4次"
    assert trim_unstated_tail(text, [DISPENSE, mix]) == [DISPENSE, mix]
    # Stated once ("4" only in the channel list), the same times=4 is a restatement.
    assert trim_unstated_tail(text.replace("4次", "几次"), [DISPENSE, mix]) == [DISPENSE]


def test_a_list_uses_a_value_as_often_as_it_lists_it_and_a_value_for_every_channel_once():
    aspirate = command("Aspirate", channels=CHANNELS, labware="Src", wells=WELLS, vols=[100, 250, 750, 100])
    restated = command("Dispense", channels=CHANNELS, labware="Src", wells=WELLS, vols=[100, 250, 750, 100])
    text = "通道1,2,3,4从Src的A1,B1,C1,D1分别吸取100/250/750/100ul"
    assert trim_unstated_tail(text, [aspirate, restated]) == [aspirate]  # "100" is stated twice, and used twice
    # "各20ul" is one statement for four channels: the 20 of "20s" is still new.
    delay = command("Delay", seconds=20)
    text = "通道1,2,3,4从Src的A1,B1,C1,D1各吸取20ul,然后等待20s"
    assert trim_unstated_tail(text, [ASPIRATE, delay]) == [ASPIRATE, delay]


def test_tip_drops_are_kept_only_as_far_as_the_text_asks_for_them():
    discard = SRC_TO_DST + ",然后弃去枪头"
    assert trim_unstated_tail(discard, [ASPIRATE, DISPENSE, DROP, DROP]) == [ASPIRATE, DISPENSE, DROP]
    assert trim_unstated_tail(SRC_TO_DST, [ASPIRATE, DISPENSE, DROP]) == [ASPIRATE, DISPENSE]
    # An unasked drop is left out wherever it stands, and what follows it stays.
    assert trim_unstated_tail(SRC_TO_DST, [ASPIRATE, DROP, DISPENSE]) == [ASPIRATE, DISPENSE]


def test_a_new_label_is_new_and_a_repeated_one_is_not():
    text = SRC_TO_DST + ",然后把Dst移到Deck_4"
    move = command("MoveLabware", labware="Dst", position="Deck_4")
    assert trim_unstated_tail(text, [ASPIRATE, DISPENSE, move]) == [ASPIRATE, DISPENSE, move]
    assert trim_unstated_tail(text, [ASPIRATE, DISPENSE, move, move]) == [ASPIRATE, DISPENSE, move]


def test_plan_text_is_rewritten_only_when_cut():
    kept = json.dumps({"commands": [ASPIRATE, DISPENSE]}, ensure_ascii=False)
    assert trim_plan_text(SRC_TO_DST, kept) is kept
    cut = json.dumps({"commands": [ASPIRATE, DISPENSE, DROP, DROP]}, ensure_ascii=False)
    assert json.loads(trim_plan_text(SRC_TO_DST + ",弃tip", cut)) == {"commands": [ASPIRATE, DISPENSE, DROP]}
    for not_a_plan in ('{"commands":[{"func_name"', "[]", '{"commands":3}', ""):
        assert trim_plan_text(SRC_TO_DST, not_a_plan) == not_a_plan


def test_a_cut_off_plan_is_cut_back_only_where_its_tail_restates():
    mix = command("Mix", channels=CHANNELS, labware="Dst", wells=DST_WELLS, vols=[20] * 4, times=2)
    went_on = json.dumps({"commands": [ASPIRATE, DISPENSE, mix, DROP, ASPIRATE]}, ensure_ascii=False)[:-40]
    assert json.loads(trim_plan_text(SRC_TO_DST, went_on)) == {"commands": [ASPIRATE, DISPENSE]}
    # Cut off before every stated value was used: nothing to cut back to, the output stays what it was.
    stopped_short = json.dumps({"commands": [ASPIRATE, DISPENSE]}, ensure_ascii=False)[:-40]
    assert trim_plan_text(SRC_TO_DST, stopped_short) == stopped_short
    # Nor does leaving out an unasked tip drop make a cut-off plan whole.
    dropped = json.dumps({"commands": [ASPIRATE, DROP, DISPENSE]}, ensure_ascii=False)[:-40]
    assert trim_plan_text(SRC_TO_DST, dropped) == dropped


# --- the rules hold for every gold plan -------------------------------------------------------------


def test_every_gold_plan_uses_every_stated_value(gold):
    assert len(gold) > 4000
    missing = [
        (where, text, sorted(map(str, set(stated_values(text)) - written_values(json.dumps(plan)))))
        for where, text, plan in gold
        if set(stated_values(text)) - written_values(json.dumps(plan, ensure_ascii=False))
    ]
    assert missing == []


def test_every_gold_plan_writes_each_value_as_often_as_its_text_states_it(gold):
    # What `CoverageRow.missing` counts. One public example states its channels twice over, in parentheses.
    short = [
        (where, text) for where, text, plan in gold
        if stated_values(text) - written_counts(json.dumps(plan, ensure_ascii=False))
    ]
    twice = "通道1,2,3,4,5,6,7,8(通道1,2,3,4,5,6,7,8)"
    assert short == [("public", next(text for _, text, _ in gold if twice in text))]


def test_every_number_of_a_gold_plan_is_stated_in_its_canonical_text(gold):
    # The canonicalizer's promise that makes the model copy rather than compute ("8通道" -> 通道1,...,8).
    unstated = [
        (where, text, value) for where, text, plan in gold
        for value in written_values(json.dumps(plan, ensure_ascii=False)) - set(stated_values(text))
        if isinstance(value, float)
    ]
    assert unstated == []


def test_every_gold_plan_picks_up_and_drops_tips_once_per_word_for_tips(gold):
    mismatched = [
        (where, text) for where, text, plan in gold
        if tip_mentions(text) != sum(command["func_name"] in ("GetDiti", "DropDiti") for command in plan)
    ]
    assert mismatched == []


def test_every_gold_plan_names_its_tip_steps_where_the_text_leaves_room_for_them(gold):
    # Checked byte by byte, as decoding offers them: the rule of `CoverageRow.allows`.
    assert gold_refusals(gold, CoverageRow, lambda row: row.allows) == []


def test_no_gold_plan_has_a_tail_to_cut(gold):
    cut = [(where, text) for where, text, plan in gold if trim_unstated_tail(text, plan) != plan]
    assert cut == []


# --- the processor keeps an incomplete plan open ----------------------------------------------------

DELAY_THEN_SHAKE = "等待300s,然后以600rpm振荡Plate 60s"
WAIT_300 = "等待300s"
DELAY_ONLY = '{"commands":[{"func_name":"Delay","func_parameters":{"seconds":300}}'


def row_after(description: str, generated: str) -> CoverageRow:
    row = CoverageRow(description)
    row.accept_bytes(generated.encode())
    return row


def test_only_the_bracket_of_the_commands_array_closes_the_plan():
    row = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert row.closes_plan(b"]}") and row.closes_plan(b"]")
    assert not row.closes_plan(b",{") and not row.closes_plan(b"}")
    inside = row_after(DELAY_THEN_SHAKE, '{"commands":[{"func_name":"PCR","func_parameters":{"program":"a')
    assert not inside.closes_plan(b"]}")  # a bracket inside a label closes nothing
    in_list = row_after(DELAY_THEN_SHAKE, '{"commands":[{"func_name":"Mix","func_parameters":{"channels":[1')
    assert not in_list.closes_plan(b"]")


SHAKE = ',{"func_name":"Shake","func_parameters":{"labware":"Plate","rpm":600,"seconds":60}}'
RESTATED_DELAY = ',{"func_name":"Delay","func_parameters":{"seconds":300}}'


def test_a_plan_stays_open_while_values_are_missing_and_forcing_helps():
    row = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert row.missing(DELAY_ONLY) == 2 and row.must_stay_open(b"]}")
    # The forced command used neither 600 nor 60: forcing again would not help.
    row.accept_bytes(RESTATED_DELAY.encode())
    assert not row.must_stay_open(b"]}")
    complete = row_after(DELAY_THEN_SHAKE, DELAY_ONLY + SHAKE)
    assert complete.missing(DELAY_ONLY + SHAKE) == 0 and not complete.must_stay_open(b"]}")


TIPS_THEN_MIX = "通道1,2取200ul枪头, 从样品板A1,B1吸取20ul, 在反应板C1,D1混匀5次, 每孔20ul"
ASPIRATED = (
    '{"commands":[{"func_name":"GetDiti","func_parameters":{"ditiType":"200ul","channels":[1,2]}},'
    '{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"样品板","wells":["A1","B1"],'
    '"vols":[20,20]}},{"func_name":"'
)


def test_no_tip_step_beyond_the_words_for_tips():
    row = row_after(TIPS_THEN_MIX, ASPIRATED)  # the one word for tips is the GetDiti's
    assert row.allows(b"D") and row.allows(b"Mix") and row.allows(b'Mix"')
    assert not row.allows(b"Get") and not row.allows(b"Drop") and not row.allows(b'DropDiti"')
    assert row_after("通道1,2取200ul枪头", '{"commands":[{"func_name":"').allows(b"Get")


def test_names_command_sees_only_tokens_that_write_a_command_name():
    row = row_after(TIPS_THEN_MIX, ASPIRATED)
    assert row.names_command(b"Mix") and row.names_command(b'Mix"')
    row.accept_bytes(b'Mix",')
    assert not row.names_command(b'"func_parameters')
    assert not row.forcing  # nothing has kept this plan open


def test_no_tip_drop_before_the_wells_the_text_writes_ahead_of_its_word_for_tips():
    drop_later = TIPS_THEN_MIX + ", 然后弃枪头"
    assert not row_after(drop_later, ASPIRATED).allows(b"Drop")  # C1 and D1 come before "弃枪头"
    mixed = ASPIRATED + 'Mix","func_parameters":{"channels":[1,2],"labware":"反应板","wells":["C1","D1"]'
    assert row_after(drop_later, mixed + ',"vols":[20,20],"times":5}},{"func_name":"').allows(b"Drop")
    assert row_after(drop_later, ASPIRATED + 'M').allows(b'ix"')  # only names are checked
    # A text may name its tips after the step that uses them: a pick-up is not held back.
    assert row_after("用通道1从P1的A1吸取50ul(10ul枪头)", '{"commands":[{"func_name":"').allows(b"Get")


def test_no_tip_drop_before_the_amounts_the_text_writes_ahead_of_its_word_for_tips():
    # The Mix reuses the wells: only its amounts ("5次", "15ul") say the plan is not there yet.
    text = "通道1,2取200ul枪头, 从样品板A1,B1吸取20ul, 再在样品板A1,B1混匀5次, 每孔15ul, 然后弃枪头"
    assert not row_after(text, ASPIRATED).allows(b"Drop")
    mixed = ASPIRATED + 'Mix","func_parameters":{"channels":[1,2],"labware":"样品板","wells":["A1","B1"]'
    assert row_after(text, mixed + ',"vols":[15,15],"times":5}},{"func_name":"').allows(b"Drop")


def test_a_word_for_tips_with_a_tip_size_is_a_pick_up_and_one_without_is_a_drop():
    plan_open = '{"commands":[{"func_name":"'
    pick_up = row_after("通道1,2取200ul枪头", plan_open)
    assert pick_up.allows(b"Get") and not pick_up.allows(b"Drop")
    drop = row_after("通道1,2弃枪头", plan_open)
    assert drop.allows(b"Drop") and not drop.allows(b"Get")


def test_a_value_stated_twice_and_written_once_keeps_the_plan_open():
    shake = '{"commands":[{"func_name":"Shake","func_parameters":{"labware":"P2","rpm":1200,"seconds":80}}'
    row = row_after("以1200rpm将P2振荡80s,紧接着等80s", shake)
    assert row.missing(shake + "]}") == 1 and row.must_stay_open(b"]}")


def test_a_plan_stays_open_while_a_named_label_or_an_asked_tip_drop_is_missing():
    move = '{"commands":[{"func_name":"MoveLabware","func_parameters":{"labware":"子板","position":"Deck_4"}}'
    assert row_after("把子板移到Deck_4,然后等待300s", move).must_stay_open(b"]}")  # 300 unused
    delay = DELAY_ONLY.replace("300", "60")
    assert row_after("等待60s,然后移到Deck_4", delay).must_stay_open(b"]}")
    drop = ',{"func_name":"DropDiti","func_parameters":{"channels":[1]}}'
    assert row_after("等待60s,然后弃tip", delay).must_stay_open(b"]}")
    assert not row_after("等待60s,然后弃tip", delay + drop).must_stay_open(b"]}")


def test_a_plan_is_done_once_complete():
    # No gold plan goes on once it uses every value as often as its text states it (test_no_gold_plan_...).
    row = row_after(WAIT_300, DELAY_ONLY)
    assert row.done
    # Whatever follows is not the plan: it is the plan as it stood when done.
    assert row.settle(DELAY_ONLY + ',{"func_name":"Mix","func_') == DELAY_ONLY + "]}"


def test_a_plan_is_done_once_it_restates_or_a_forced_command_uses_nothing_missing():
    restating = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert not restating.done
    restating.accept_bytes(RESTATED_DELAY.encode())
    assert restating.done
    assert restating.settle("cut off") == DELAY_ONLY + "]}"  # without the restating command
    move = ',{"func_name":"MoveLabware","func_parameters":{"labware":"Plate","position":"振荡"}}'
    unforced = row_after(DELAY_THEN_SHAKE, DELAY_ONLY + move)
    assert not unforced.done  # a new label is news
    forced = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert forced.must_stay_open(b"]}")
    forced.accept_bytes(move.encode())
    assert forced.done  # but forcing was for 600 and 60
    progressing = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert progressing.must_stay_open(b"]}")
    progressing.accept_bytes(SHAKE.replace("60}", "61}").encode())  # uses 600, so forcing may go on
    assert not progressing.done


def test_a_forced_plan_is_kept_only_when_it_is_valid_and_misses_fewer_values():
    own_plan = DELAY_ONLY + "]}"
    row = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert row.settle(own_plan) == own_plan  # never forced: the plan itself
    assert row_after(WAIT_300, "").settle(DELAY_ONLY + RESTATED_DELAY + "]}") == own_plan  # its tail cut
    assert row.must_stay_open(b"]}")
    assert row.settle(DELAY_ONLY + SHAKE + "]}") == DELAY_ONLY + SHAKE + "]}"
    assert row.settle(DELAY_ONLY + RESTATED_DELAY + "]}") == own_plan
    assert row.settle(DELAY_ONLY + SHAKE) == own_plan  # cut off at the token budget
    assert row.settle(DELAY_ONLY + SHAKE.replace("Plate", "Dish") + "]}") == own_plan  # breaks the catalog


def test_forcing_stops_at_a_forced_plan_that_breaks_the_catalog_however_many_values_it_uses():
    row = row_after(DELAY_THEN_SHAKE, DELAY_ONLY)
    assert row.must_stay_open(b"]}")
    invented_label = SHAKE.replace("Plate", "Dish").replace("60}", "300}")  # uses 600, still misses 60
    row.accept_bytes(invented_label.encode())
    assert not row.must_stay_open(b"]}")
    assert row.settle(DELAY_ONLY + invented_label + "]}") == DELAY_ONLY + "]}"


def test_the_plan_kept_before_forcing_is_the_one_the_closing_token_ends():
    # One token may close a number, its command and the plan at once (`300}}]}`).
    row = row_after(DELAY_THEN_SHAKE, DELAY_ONLY.removesuffix("300}}"))
    assert row.closes_plan(b"300}}]}") and row.must_stay_open(b"300}}]}")
    assert row.settle("not a plan") == DELAY_ONLY + "]}"


def texts_if(description: str, on: bool) -> list[str] | None:
    return [description] if on else None


@pytest.mark.parametrize("coverage", [True, False])
def test_the_processor_refuses_to_close_an_incomplete_plan(tiny, coverage):
    picked = pick_after_prefix(tiny, DELAY_ONLY, ["]", ","], coverage_texts=texts_if(DELAY_THEN_SHAKE, coverage))
    assert picked == ("," if coverage else "]")


@pytest.mark.parametrize("coverage", [True, False])
def test_the_processor_stops_a_complete_plan_the_model_would_go_on_with(tiny, coverage):
    stop = tiny[1].decode([tiny[2]])
    picked = pick_after_prefix(tiny, DELAY_ONLY, [",", "]"], coverage_texts=texts_if(WAIT_300, coverage))
    assert picked == (stop if coverage else ",")


@pytest.mark.parametrize("coverage", [True, False])
def test_the_processor_names_no_tip_step_the_text_has_no_word_for(tiny, coverage):
    picked = pick_after_prefix(tiny, ASPIRATED, ["Drop", "Mix"], coverage_texts=texts_if(TIPS_THEN_MIX, coverage))
    assert picked == ("Mix" if coverage else "Drop")


@pytest.mark.parametrize("coverage", [True, False])
def test_the_processor_stops_a_plan_that_restates(tiny, coverage):
    stop = tiny[1].decode([tiny[2]])
    picked = pick_after_prefix(
        tiny, DELAY_ONLY + RESTATED_DELAY, [",", "]"], coverage_texts=texts_if(DELAY_THEN_SHAKE, coverage)
    )
    assert picked == (stop if coverage else ",")


# --- through `predict`, on a model whose plans are fixed by construction -----------------------------

# Two durations: the step bounds leave room for a second Delay (`pipelines.serve.command_cues`), and only
# coverage sees that one restating 300 states nothing new.
WAIT_TWICE = "等待300s,再等待60s"
RESTATING_PLAN = [command("Delay", seconds=300), command("Delay", seconds=300)]
EARLY_STOP_PLAN = [command("Delay", seconds=300)]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    from pipelines.model.tiny_model import build_scripted_model

    return build_scripted_model(
        tmp_path_factory.mktemp("coverage_scripted"),
        default_output=render_plan({"commands": RESTATING_PLAN}),
        triggered_output=render_plan({"commands": EARLY_STOP_PLAN}),
        trigger_description=DELAY_THEN_SHAKE,
        default_description=WAIT_TWICE,
    )


def predicted(model_dir: Path, description: str, *flags: str) -> tuple[int, str]:
    """Exit code, and the plan printed or else the raw output of the rejected one."""
    from pipelines.serve.predict import run

    stdout, stderr = io.StringIO(), io.StringIO()
    args = predict_args(model_dir, description, "--max-new-tokens", "200", *flags)
    code = run(args, stdin=io.BytesIO(b""), stdout=stdout, stderr=stderr)
    raw = [line for line in stderr.getvalue().splitlines() if line.startswith("raw model output: ")]
    return code, stdout.getvalue() if code == 0 else json.loads(raw[0].removeprefix("raw model output: "))


def test_predict_cuts_the_restating_tail(scripted):
    assert predicted(scripted, WAIT_TWICE, "--no-coverage") == (0, json.dumps({"commands": RESTATING_PLAN}) + "\n")
    assert predicted(scripted, WAIT_TWICE) == (0, json.dumps({"commands": EARLY_STOP_PLAN}) + "\n")


def test_predict_gives_back_the_models_own_plan_when_forcing_it_on_does_not_pay_off(scripted):
    early_stop = json.dumps({"commands": EARLY_STOP_PLAN}) + "\n"
    assert predicted(scripted, DELAY_THEN_SHAKE, "--no-coverage") == (0, early_stop)
    # This model knows no second command: forced on, it writes nothing that uses 600 or 60.
    assert predicted(scripted, DELAY_THEN_SHAKE) == (0, early_stop)
