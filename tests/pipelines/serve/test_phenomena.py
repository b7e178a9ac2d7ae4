"""Phenomenon tags on hand-made cases (one rule per test, each with a case that has the tag and one that
does not), agreement with the hand-written tags of the public examples, and exact match per tag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_contracts.commands import Command
from data_contracts.forms import parse_text_commands, render_json_commands
from pipelines.serve.eval_cases import EvalCase, evaluate_case
from pipelines.serve.phenomena import (
    RARE_COMMANDS,
    TAG_SCORE_COLUMNS,
    TAGS,
    TagScore,
    case_tags,
    exact_match_by_tag,
    tag_score_rows,
    tag_scores_from_rows,
    tag_scores_markdown,
)

PUBLIC_EXAMPLES = Path(__file__).resolve().parents[3] / "data" / "eval" / "sop_examples.jsonl"


def command(name: str, **parameters) -> Command:
    return Command(func_name=name, func_parameters=parameters)


def aspirate(channels: list[int], wells: list[str], vols: list[float], labware: str = "P1", **extra) -> Command:
    return command("Aspirate", channels=channels, labware=labware, wells=wells, vols=vols, **extra)


def tips(channels: list[int], tip: str = "200ul") -> Command:
    return command("GetDiti", ditiType=tip, channels=channels)


def drop(channels: list[int]) -> Command:
    return command("DropDiti", channels=channels)


def has(tag: str, text: str, gold: list[Command]) -> bool:
    return tag in case_tags(text, gold)


def test_range_expansion_is_a_well_list_the_text_does_not_spell_out():
    four = aspirate([1, 2, 3, 4], ["A1", "B1", "C1", "D1"], [20] * 4)
    assert has("range_expansion", "通道1-4从P1的A1-D1各吸20ul", [four])
    assert has("range_expansion", "通道1-4从P1的A1至D1各吸20ul", [four])
    assert has("range_expansion", "channels 1-4 draw 20 ul each from P1 A1 to D1", [four])
    assert has("range_expansion", "channels 1-4 draw 20 ul each from P1 column 1", [four])  # no well named at all
    two = aspirate([1, 2], ["G5", "H5"], [20, 20])
    assert has("range_expansion", "P1 G5-H5, 20 ul each, channels 1-2", [two])
    assert not has("range_expansion", "P1 G5 and H5, 20 ul each, channels 1-2", [two])  # enumerated, not a range
    # both ends of a two-well range are written, so only the range itself marks it
    assert has("range_expansion", "P1 G5 to H5, 20 ul each, channels 1-2", [two])
    assert has("range_expansion", "通道1-2从P1的G5至H5各吸20ul", [two])
    assert has("range_expansion", "通道1-2从P1的Ｇ５－Ｈ５各吸20ul", [two])  # full-width, as lab text often is
    one = aspirate([1], ["A1"], [20])
    assert not has("range_expansion", "channel 1 draws 20 ul from P1 A1-A1", [one])  # one well is no expansion
    transfer = command(
        "Transfer",
        channels=[1, 2],
        srcLabware="S",
        srcWells=["A1", "B1"],
        dstLabware="D",
        dstWells=["A2", "B2"],
        vols=[5, 5],
    )
    assert has("range_expansion", "channels 1-2: 5 ul from S A1-B1 to D A2-B2", [transfer])  # srcWells/dstWells count


def test_each_volume_is_two_or_more_equal_volumes():
    assert has("each_volume", "x", [aspirate([1, 2], ["A1", "B1"], [20, 20.0])])
    assert not has("each_volume", "x", [aspirate([1, 2], ["A1", "B1"], [20, 30])])
    assert not has("each_volume", "x", [aspirate([1], ["A1"], [20])])


def test_per_channel_vols_is_two_distinct_volumes_in_one_command():
    assert has("per_channel_vols", "x", [aspirate([1, 2], ["A1", "B1"], [22, 31])])
    assert not has("per_channel_vols", "x", [aspirate([1, 2], ["A1", "B1"], [22, 22])])
    # different volumes in different commands are not per-channel volumes
    assert not has("per_channel_vols", "x", [aspirate([1], ["A1"], [22]), aspirate([1], ["A2"], [31])])


@pytest.mark.parametrize(
    "text",
    [
        "channel 6 draws 0.75 mL from P1 A1",
        "通道6从P1的A1吸0.75毫升",
        "draw 1ml from P1 A1",
        "0.5 millilitres",
        "通道6从P1的A1吸０.７５ｍＬ",
        "通道6从P1的A1吸0.75㎖",
    ],  # full-width and the one-character ml sign (NFKC folds both)
)
def test_unit_conversion_is_a_volume_stated_in_ml(text):
    assert has("unit_conversion", text, [aspirate([6], ["A1"], [750])])


def test_unit_conversion_needs_an_ml_amount_and_a_volume():
    gold = [aspirate([6], ["A1"], [750])]
    assert not has("unit_conversion", "channel 6 draws 750 ul from P1 A1", gold)
    assert not has("unit_conversion", "channel 6 draws 750 ul from Tube_5ml A1", gold)  # a label, not an amount
    assert not has(
        "unit_conversion",
        "move the 50 ml tube rack to Deck_2",
        [command("MoveLabware", labware="Rack", position="Deck_2")],
    )


@pytest.mark.parametrize(
    "text, seconds",
    [("程序暂停，计时3小时后继续", 10800), ("wait 45 minutes", 2700), ("pause 10 min", 600), ("wait 2 h", 7200),
     ("等待1分20秒", 80), ("孵育半小时", 1800), ("等待三分钟", 180)],
)
def test_time_conversion_is_seconds_stated_in_minutes_or_hours(text, seconds):
    assert has("time_conversion", text, [command("Delay", seconds=seconds)])


def test_time_conversion_needs_minutes_or_hours_and_seconds():
    assert not has("time_conversion", "等30 s", [command("Delay", seconds=30)])
    assert not has("time_conversion", "wait 45 seconds", [command("Delay", seconds=45)])
    # "per minute" of a shaking speed is not a duration; the 30 s is already in seconds
    assert not has(
        "time_conversion",
        "摇板：反应板A，700转每分钟，持续30秒",
        [command("Shake", labware="反应板A", rpm=700, seconds=30)],
    )
    # minutes in the text, but no command carries seconds
    assert not has("time_conversion", "10 minutes later, channel 1 drops its tip", [drop([1])])


def test_channel_inheritance_is_channels_taken_from_the_previous_command():
    plan = [tips([1, 2]), aspirate([1, 2], ["A1", "B1"], [20, 20]), drop([1, 2])]
    assert has("channel_inheritance", "通道1-2装200ul吸头，从P1的A1、B1各吸20ul，然后退吸头", plan)
    assert has(
        "channel_inheritance",
        "Channels 1-2 load tips, channels 1-2 draw 20 ul each from P1 A1-B1, then drop the tips",
        plan,
    )
    # every command restates its channels
    restated = "channels 1-2 load tips; channels 1-2 draw 20 ul each from P1 A1-B1; channels 1-2 drop the tips"
    assert not has("channel_inheritance", restated, plan)
    # later commands use other channels: nothing is inherited
    assert not has("channel_inheritance", "channels 1-2 load tips, channel 3 draws 20 ul from P1 A1",
                   [tips([1, 2]), aspirate([3], ["A1"], [20])])
    assert not has("channel_inheritance", "channels 1-2 load tips, then 20 ul is drawn from P1 A1",
                   [tips([1, 2]), aspirate([1], ["A1"], [20])])  # a subset is not the previous command's channels
    # "per channel" / "每通道" name no channel
    assert has(
        "channel_inheritance",
        "通道1-4装吸头，每通道吸20ul",
        [tips([1, 2, 3, 4]), aspirate([1, 2, 3, 4], ["A1", "B1", "C1", "D1"], [20] * 4)],
    )
    assert not has("channel_inheritance", "channel 1 drops its tip", [drop([1])])


def test_command_count_rare_commands_liquid_class_and_language():
    single = [command("PCR", labware="Plate", program="Fast")]
    assert case_tags("thermocycler runs Fast on Plate", single) == ["single_command", "rare_command", "en"]
    multi = [tips([1]), aspirate([1], ["A1"], [5], liquidClass="Water")]
    tags = case_tags("通道1装吸头，通道1从P1的A1吸5ul，液体类型Water", multi)
    assert tags == ["multi_command", "liquid_class", "zh"]
    for name in RARE_COMMANDS:
        assert "rare_command" in case_tags("x", [command(name)])
    assert "rare_command" not in case_tags("x", [drop([1]), tips([1])])


def test_tags_follow_the_tags_order():
    tags = case_tags(
        "通道1-2从P1的A1-B1各吸0.02毫升，然后等待2分钟",
        [aspirate([1, 2], ["A1", "B1"], [20, 20]), command("Delay", seconds=120)],
    )
    assert tags == [t for t in TAGS if t in tags]
    assert tags == [
        "range_expansion",
        "each_volume",
        "unit_conversion",
        "time_conversion",
        "multi_command",
        "rare_command",
        "zh",
    ]


# --- the public examples: our tags against their hand-written ones ------------------------------

# Hand-written tag -> our tag; rare_command comes from the command-name tags.
HAND_TAGS = {
    "well_range": "range_expansion",
    "each_volume": "each_volume",
    "per_channel_vols": "per_channel_vols",
    "ml_to_ul": "unit_conversion",
    "time_conversion": "time_conversion",
    "channel_inheritance": "channel_inheritance",
    "multi": "multi_command",
    "single": "single_command",
    "liquidClass": "liquid_class",
    "zh": "zh",
    "en": "en",
}


def hand_tags(example: dict) -> set[str]:
    tags = {HAND_TAGS[tag] for tag in example["tags"] if tag in HAND_TAGS}
    if set(example["tags"]) & RARE_COMMANDS:
        tags.add("rare_command")
    return tags


def test_tags_agree_with_the_hand_written_tags_of_the_public_examples():
    examples = [json.loads(line) for line in PUBLIC_EXAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(examples) == 20
    disagreements = {}
    for example in examples:
        turn = example["conversation"][0]
        ours = set(case_tags(turn["input"], parse_text_commands(turn["output"])))
        if ours != hand_tags(example):
            disagreements[example["id"]] = {
                "only ours": sorted(ours - hand_tags(example)),
                "only hand": sorted(hand_tags(example) - ours),
            }
    assert disagreements == {}
    # every phenomenon tag occurs in the examples, so the agreement covers every rule
    assert set().union(*(hand_tags(e) for e in examples)) == set(TAGS)


# --- exact match per tag -----------------------------------------------------------------------


def result(
    case_id: str, source: str, text: str, gold: list[Command], predicted: list[Command], raw_text: str | None = None
):
    case = EvalCase(case_id, text, tuple(gold), source, raw_description=raw_text)
    return evaluate_case(case, render_json_commands(predicted), 0.1, 3, True)


def test_exact_match_by_tag_counts_per_slice_and_overall():
    wait = [command("Delay", seconds=120)]
    results = [
        result("eval:1", "eval", "wait 120s", wait, wait, raw_text="wait 2 minutes"),  # tagged from the raw text
        result("eval:2", "eval", "wait 120s", wait, [command("Delay", seconds=60)]),  # no raw text: normalized one
        result("public:1", "public", "等待120s", wait, wait, raw_text="等待2分钟"),
    ]
    scores = exact_match_by_tag(results)
    table = {(s.slice, s.tag): (s.cases, s.exact_matches) for s in scores}
    assert table == {
        ("eval", "time_conversion"): (1, 1),
        ("eval", "single_command"): (2, 1),
        ("eval", "rare_command"): (2, 1),
        ("eval", "en"): (2, 1),
        ("public", "time_conversion"): (1, 1),
        ("public", "single_command"): (1, 1),
        ("public", "rare_command"): (1, 1),
        ("public", "zh"): (1, 1),
        ("all", "time_conversion"): (2, 2),
        ("all", "single_command"): (3, 2),
        ("all", "rare_command"): (3, 2),
        ("all", "zh"): (1, 1),
        ("all", "en"): (2, 1),
    }
    assert [s.slice for s in scores] == ["eval"] * 4 + ["public"] * 4 + ["all"] * 5  # slice, then TAGS order
    assert next(s for s in scores if (s.slice, s.tag) == ("all", "single_command")).exact_match == pytest.approx(2 / 3)
    assert TagScore("eval", "zh", 0, 0).exact_match == 0.0

    rows = tag_score_rows(scores)  # the UI's table: one row per score, in TAG_SCORE_COLUMNS, and back again
    assert all(list(row) == [name for name, _ in TAG_SCORE_COLUMNS] for row in rows)
    assert tag_scores_from_rows(rows) == scores

    markdown = tag_scores_markdown(scores)
    assert markdown.splitlines()[0] == "| tag | eval | public | all |"
    assert "| single_command | 1/2 (0.50) | 1/1 (1.00) | 2/3 (0.67) |" in markdown
    assert "| zh | - | 1/1 (1.00) | 1/1 (1.00) |" in markdown
    assert exact_match_by_tag([]) == []
