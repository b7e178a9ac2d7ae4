from __future__ import annotations

from typing import Any

import pytest

from data_contracts.commands import Command
from data_contracts.errors import CatalogViolation, ContractError
from data_contracts.forms import parse_json_commands, parse_text_commands, render_json_commands
from data_contracts.validation import ValidationIssue, ensure_valid, validate_commands
from tests.helpers import EXAMPLE_IDS, EXAMPLES, gold_text


def cmd(name: str, **params: Any) -> Command:
    return Command(func_name=name, func_parameters=params)


def asp(**overrides: Any) -> Command:
    params = {"channels": [1, 2], "labware": "P", "wells": ["A1", "B1"], "vols": [10, 20]}
    params.update(overrides)
    return cmd("Aspirate", **{k: v for k, v in params.items() if v is not ...})


def transfer(**overrides: Any) -> Command:
    params = {
        "channels": [1, 2], "srcLabware": "S", "srcWells": ["A1", "B1"],
        "dstLabware": "D", "dstWells": ["A2", "B2"], "vols": [5, 5],
    }  # fmt: skip
    params.update(overrides)
    return cmd("Transfer", **params)


def only_issue(commands: list[Command]) -> ValidationIssue:
    issues = validate_commands(commands)
    assert len(issues) == 1, issues
    return issues[0]


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_every_gold_example_is_valid(example: dict) -> None:
    commands = parse_text_commands(gold_text(example))
    assert validate_commands(commands) == []
    ensure_valid(commands)


def test_accepts_json_form_dicts_as_well_as_commands() -> None:
    commands = parse_text_commands(gold_text(EXAMPLES[0]))
    dicts = [c.to_dict() for c in commands]
    assert validate_commands(dicts) == []
    assert validate_commands(parse_json_commands(render_json_commands(commands))) == []


# (commands, index, command, field, rule, message substring)
REJECTIONS: dict[str, tuple[list[Command], int | None, str | None, str | None, str, str]] = {
    "empty plan": ([], None, None, None, "empty_plan", "the plan has no commands"),
    "unknown command": (
        [cmd("Delay", seconds=1), cmd("Aspriate", channels=[1])],
        1, "Aspriate", None, "unknown_command",
        "command 1 (Aspriate): unknown command 'Aspriate' (did you mean Aspirate?)",
    ),
    "unknown parameter": (
        [cmd("Delay", seconds=1, minutes=2)], 0, "Delay", "minutes", "unknown_parameter",
        "command 0 (Delay): unknown parameter 'minutes'; Delay takes seconds",
    ),
    "missing parameter": (
        [asp(labware=...)], 0, "Aspirate", "labware", "missing_parameter",
        "command 0 (Aspirate): missing required parameter 'labware'",
    ),
    "bool is not an int": (
        [cmd("Delay", seconds=True)], 0, "Delay", "seconds", "type", "field 'seconds'=True must be an integer",
    ),
    "string seconds": ([cmd("Delay", seconds="60")], 0, "Delay", "seconds", "type", "must be an integer"),
    "fractional seconds": ([cmd("Delay", seconds=1.5)], 0, "Delay", "seconds", "type", "'seconds'=1.5"),
    "negative seconds": ([cmd("Delay", seconds=-1)], 0, "Delay", "seconds", "range", "must be >= 0 seconds"),
    "scalar channels": ([cmd("DropDiti", channels=1)], 0, "DropDiti", "channels", "type", "must be a list"),
    "empty channels": ([cmd("DropDiti", channels=[])], 0, "DropDiti", "channels", "empty_list", "at least one"),
    "bool channel": ([cmd("DropDiti", channels=[True])], 0, "DropDiti", "channels", "type", "'channels'[0]=True"),
    "channel 0": ([cmd("DropDiti", channels=[0])], 0, "DropDiti", "channels", "channel_range", "outside 1..8"),
    "channel 9": ([cmd("DropDiti", channels=[1, 9])], 0, "DropDiti", "channels", "channel_range", "'channels'[1]=9"),
    "duplicate channel": (
        [cmd("DropDiti", channels=[2, 2])], 0, "DropDiti", "channels", "duplicate_channel",
        "field 'channels'[1]=2 repeats a channel",
    ),
    "leading zero well": (
        [asp(wells=["A1", "B01"])], 0, "Aspirate", "wells", "invalid_well",
        "command 0 (Aspirate): field 'wells'[1]='B01' is not a well name (A1..H12)",
    ),
    "lower-case well": ([asp(wells=["a1", "B1"])], 0, "Aspirate", "wells", "invalid_well", "'wells'[0]='a1'"),
    "column 13": ([asp(wells=["A13", "B1"])], 0, "Aspirate", "wells", "invalid_well", "'wells'[0]='A13'"),
    "row I": ([asp(wells=["I1", "B1"])], 0, "Aspirate", "wells", "invalid_well", "'wells'[0]='I1'"),
    "numeric well": ([asp(wells=[1, "B1"])], 0, "Aspirate", "wells", "type", "must be a well name string"),
    "scalar wells": ([asp(wells="A1")], 0, "Aspirate", "wells", "type", "must be a list of well names"),
    "zero volume": ([asp(vols=[0, 20])], 0, "Aspirate", "vols", "volume_positive", "'vols'[0]=0 must be greater"),
    "negative volume": ([asp(vols=[10, -5])], 0, "Aspirate", "vols", "volume_positive", "'vols'[1]=-5"),
    "nan volume": ([asp(vols=[float("nan"), 5])], 0, "Aspirate", "vols", "type", "must be a finite number"),
    "infinite volume": ([asp(vols=[5, float("inf")])], 0, "Aspirate", "vols", "type", "'vols'[1]=inf"),
    "string volume": ([asp(vols=["10", 5])], 0, "Aspirate", "vols", "type", "'vols'[0]='10'"),
    "wells shorter than channels": (
        [asp(wells=["A1"])], 0, "Aspirate", "wells", "length_mismatch",
        "field 'wells' has 1 items but 'channels' has 2",
    ),
    "vols longer than channels": ([asp(vols=[1, 2, 3])], 0, "Aspirate", "vols", "length_mismatch", "'vols' has 3"),
    "mix lengths": (
        [cmd("Mix", channels=[1], labware="P", wells=["A1", "B1"], vols=[5], times=3)],
        0, "Mix", "wells", "length_mismatch", "command 0 (Mix): field 'wells' has 2 items",
    ),
    "transfer dst lengths": (
        [transfer(dstWells=["A2"])], 0, "Transfer", "dstWells", "length_mismatch", "'dstWells' has 1 items",
    ),
    "transfer src lengths": (
        [transfer(srcWells=["A1", "B1", "C1"])], 0, "Transfer", "srcWells", "length_mismatch", "'srcWells' has 3",
    ),
    "unknown tip type": (
        [cmd("GetDiti", ditiType="20ul", channels=[1])], 0, "GetDiti", "ditiType", "tip_type",
        "field 'ditiType'='20ul' is not a tip type (10ul, 50ul, 200ul, 1000ul)",
    ),
    "numeric tip type": ([cmd("GetDiti", ditiType=50, channels=[1])], 0, "GetDiti", "ditiType", "type", "must be"),
    "over tip capacity": (
        [cmd("GetDiti", ditiType="200ul", channels=[1, 2]), cmd("Delay", seconds=5),
         asp(vols=[20, 250])],
        2, "Aspirate", "vols", "tip_capacity",
        "command 2 (Aspirate): field 'vols'[1]=250 exceeds the 200ul tip on channel 2",
    ),  # fmt: skip
    "last GetDiti wins": (
        [cmd("GetDiti", ditiType="1000ul", channels=[1]), cmd("GetDiti", ditiType="10ul", channels=[1]),
         cmd("Dispense", channels=[1], labware="P", wells=["A1"], vols=[50])],
        2, "Dispense", "vols", "tip_capacity", "exceeds the 10ul tip on channel 1",
    ),  # fmt: skip
    "transfer over capacity": (
        [cmd("GetDiti", ditiType="10ul", channels=[1, 2]), transfer(vols=[5, 10.5])],
        1, "Transfer", "vols", "tip_capacity", "field 'vols'[1]=10.5 exceeds the 10ul tip on channel 2",
    ),
    "mix over capacity": (
        [cmd("GetDiti", ditiType="50ul", channels=[3]),
         cmd("Mix", channels=[3], labware="P", wells=["C1"], vols=[60], times=3)],
        1, "Mix", "vols", "tip_capacity", "exceeds the 50ul tip on channel 3",
    ),  # fmt: skip
    "temperature too high": (
        [cmd("Incubate", labware="P", temperature=101, seconds=1)], 0, "Incubate", "temperature", "range",
        "within 4..100",
    ),
    "temperature too low": ([cmd("Incubate", labware="P", temperature=3.9, seconds=1)], 0, "Incubate", "temperature",
                            "range", "'temperature'=3.9"),
    "nan temperature": ([cmd("Incubate", labware="P", temperature=float("nan"), seconds=1)], 0, "Incubate",
                        "temperature", "type", "finite number"),
    "rpm too low": ([cmd("Shake", labware="P", rpm=99, seconds=1)], 0, "Shake", "rpm", "range", "within 100..3000"),
    "rpm too high": ([cmd("Shake", labware="P", rpm=3001, seconds=1)], 0, "Shake", "rpm", "range", "'rpm'=3001"),
    "fractional rpm": ([cmd("Shake", labware="P", rpm=700.5, seconds=1)], 0, "Shake", "rpm", "type", "integer"),
    "zero times": (
        [cmd("Mix", channels=[1], labware="P", wells=["A1"], vols=[5], times=0)], 0, "Mix", "times", "range",
        "within 1..50 cycles",
    ),
    "51 times": ([cmd("Mix", channels=[1], labware="P", wells=["A1"], vols=[5], times=51)], 0, "Mix", "times",
                 "range", "'times'=51"),
    "empty labware": ([asp(labware="")], 0, "Aspirate", "labware", "empty_string", "must not be empty"),
    "blank program": ([cmd("PCR", labware="P", program="  ")], 0, "PCR", "program", "empty_string", "'program'"),
    "numeric position": ([cmd("MoveLabware", labware="P", position=7)], 0, "MoveLabware", "position", "type",
                         "must be a string"),
    "empty liquid class": ([asp(liquidClass="")], 0, "Aspirate", "liquidClass", "empty_string", "'liquidClass'"),
    "list labware": ([cmd("PCR", labware=["P"], program="x")], 0, "PCR", "labware", "type", "must be a string"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_each_rule_rejects_with_field_rule_and_message(case: str) -> None:
    commands, index, command, field, rule, message = REJECTIONS[case]
    issue = only_issue(commands)
    assert (issue.command_index, issue.command, issue.field, issue.rule) == (index, command, field, rule)
    assert message in issue.message
    if index is not None:
        assert issue.message.startswith(f"command {index} ({command}): ")


ACCEPTED: dict[str, list[Command]] = {
    "fragment without GetDiti (E002)": [asp(vols=[999, 999])],
    "drop without pickup": [cmd("DropDiti", channels=[4])],
    "capacity is inclusive": [
        cmd("GetDiti", ditiType="50ul", channels=[1]),
        asp(channels=[1], wells=["A1"], vols=[50]),
    ],
    "DropDiti clears the capacity": [
        cmd("GetDiti", ditiType="10ul", channels=[1, 2]),
        cmd("DropDiti", channels=[1, 2]),
        asp(vols=[100, 100]),
    ],
    "other channels keep no limit": [cmd("GetDiti", ditiType="10ul", channels=[1]), asp(channels=[2], wells=["B1"],
                                                                                         vols=[500])],
    "whole float ints": [cmd("Delay", seconds=60.0), cmd("Shake", labware="P", rpm=700.0, seconds=0)],
    "bounds": [cmd("Incubate", labware="P", temperature=4, seconds=0), cmd("Incubate", labware="P", temperature=100.0,
                                                                           seconds=1)],
    "times bounds": [cmd("Mix", channels=[8], labware="P", wells=["H12"], vols=[0.5], times=1),
                     cmd("Mix", channels=[8], labware="P", wells=["H12"], vols=[0.5], times=50)],
    "optional liquid class": [asp(liquidClass="Water")],
}  # fmt: skip


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_edge_cases_are_accepted(case: str) -> None:
    assert validate_commands(ACCEPTED[case]) == []


def test_empty_vols_is_reported_with_the_length_mismatch_it_causes() -> None:
    issues = validate_commands([asp(channels=[1], wells=["A1"], vols=[])])
    assert [(i.field, i.rule) for i in issues] == [("vols", "empty_list"), ("vols", "length_mismatch")]
    assert "field 'vols'=[] must hold at least one volume" in issues[0].message


def test_reports_every_issue_in_command_order() -> None:
    commands = [cmd("Foo"), cmd("Delay", seconds=-1, extra=1), asp(wells=["Z9"], vols=[0, 1, 2])]
    issues = validate_commands(commands)
    assert [(i.command_index, i.rule) for i in issues] == [
        (0, "unknown_command"),
        (1, "range"),
        (1, "unknown_parameter"),
        (2, "invalid_well"),
        (2, "volume_positive"),
        (2, "length_mismatch"),
        (2, "length_mismatch"),
    ]


def test_non_command_items_are_reported_not_raised() -> None:
    issues = validate_commands([42, {"func_name": "Delay", "func_parameters": "seconds=1"}, {"func_name": None}])
    assert [(i.command_index, i.field, i.rule) for i in issues] == [
        (0, None, "type"),
        (1, "func_parameters", "type"),
        (2, None, "unknown_command"),
    ]
    assert "command 0: 42 is not a command" == issues[0].message


def test_messages_cut_hostile_values_short() -> None:
    issue = only_issue([cmd("PCR", labware="P", program=["x" * 100_000])])
    assert len(issue.message) < 200


def test_issue_to_dict() -> None:
    issue = only_issue([cmd("Delay", seconds=-1)])
    assert issue.to_dict() == {
        "command_index": 0,
        "command": "Delay",
        "field": "seconds",
        "rule": "range",
        "message": "command 0 (Delay): field 'seconds'=-1 must be >= 0 seconds",
    }


def test_ensure_valid_raises_catalog_violation_listing_all_issues() -> None:
    commands = [cmd("Delay", seconds=-1), cmd("DropDiti", channels=[9])]
    with pytest.raises(CatalogViolation) as caught:
        ensure_valid(commands)
    assert isinstance(caught.value, ContractError)
    assert [i.rule for i in caught.value.issues] == ["range", "channel_range"]
    text = str(caught.value)
    assert text.startswith("2 catalog violations:")
    assert "command 0 (Delay): field 'seconds'=-1" in text
    assert "[channel_range] command 1 (DropDiti): field 'channels'[0]=9" in text


def test_catalog_violation_survives_pickling() -> None:
    import pickle

    error = CatalogViolation(validate_commands([cmd("Delay", seconds=-1)]))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.issues == error.issues
    assert str(copy) == str(error)


# --- labels copied from the description (rule ungrounded_string) ----------------------------------

GROUNDING_DESCRIPTION = "行1:用通道1-2从样品板A1-B1吸取，转移到PCR_Plate，运行程序 PCR35，移到Heater，液体Water"
# Every label field of the catalog, each in a command that has it, with a value the description holds.
GROUNDED_COMMANDS = {
    "labware": asp(labware="样品板"),
    "liquidClass": asp(labware="样品板", liquidClass="Water"),
    "srcLabware": transfer(srcLabware="样品板", dstLabware="PCR_Plate"),
    "dstLabware": transfer(srcLabware="样品板", dstLabware="PCR_Plate"),
    "program": cmd("PCR", labware="PCR_Plate", program="PCR35"),
    "position": cmd("MoveLabware", labware="PCR_Plate", position="Heater"),
}


def test_grounded_fields_are_the_catalogs_labels() -> None:
    from data_contracts.validation import grounded_label_fields

    assert set(grounded_label_fields()) == set(GROUNDED_COMMANDS)


@pytest.mark.parametrize("field", list(GROUNDED_COMMANDS))
def test_a_label_the_description_does_not_contain_is_ungrounded(field: str) -> None:
    grounded = GROUNDED_COMMANDS[field]
    assert validate_commands([grounded], GROUNDING_DESCRIPTION) == []
    invented = cmd(grounded.func_name, **{**grounded.func_parameters, field: "反应板"})
    issues = validate_commands([cmd("Delay", seconds=1), invented], GROUNDING_DESCRIPTION)
    assert [(i.command_index, i.command, i.field, i.rule) for i in issues] == [
        (1, grounded.func_name, field, "ungrounded_string")
    ]
    assert issues[0].message == (
        f"command 1 ({grounded.func_name}): field '{field}'='反应板' does not occur in the description; "
        "labels are copied exactly as written"
    )
    assert validate_commands([invented]) == []  # without a description there is nothing to ground against


def test_grounding_is_exact_substring_matching() -> None:
    # a piece of a label, or a label running into the next word, still occurs verbatim ("样品板A1")
    for label in ("样品", "样品板A"):
        assert validate_commands([asp(labware=label)], GROUNDING_DESCRIPTION) == [], label
    # another case, an added space, a different script: not written in the description
    for label in ("pcr_plate", "PCR_Plate ", "ＰＣＲ35"):
        issues = validate_commands([asp(labware=label)], GROUNDING_DESCRIPTION)
        assert [i.rule for i in issues] == ["ungrounded_string"], label


def test_labels_with_other_issues_are_not_also_ungrounded() -> None:
    issues = validate_commands([asp(labware=""), cmd("PCR", labware=["P"], program="PCR35")], GROUNDING_DESCRIPTION)
    assert [(i.field, i.rule) for i in issues] == [("labware", "empty_string"), ("labware", "type")]


def test_ensure_valid_checks_grounding_when_given_the_description() -> None:
    plan = [asp(labware="Plate9")]
    ensure_valid(plan)
    with pytest.raises(CatalogViolation) as caught:
        ensure_valid(plan, description=GROUNDING_DESCRIPTION)
    assert [(i.field, i.rule) for i in caught.value.issues] == [("labware", "ungrounded_string")]
