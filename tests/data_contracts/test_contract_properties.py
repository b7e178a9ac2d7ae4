"""Property-based tests: the parsers, the validator and the normalizer never fail with anything but our own errors.

Each property runs on arbitrary input (any text, any JSON) and on mutations of the 20 gold cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from data_contracts.errors import ContractError
from data_contracts.forms import (
    parse_json_commands,
    parse_text_commands,
    render_json_commands,
    render_text_commands,
)
from data_contracts.validation import ValidationIssue, validate_commands
from pipelines.data.normalize import normalize_text
from tests.helpers import EXAMPLES, gold_text

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)

KNOWN_RULES = {
    "unknown_command",
    "unknown_parameter",
    "missing_parameter",
    "type",
    "empty_list",
    "empty_string",
    "channel_range",
    "duplicate_channel",
    "invalid_well",
    "length_mismatch",
    "volume_positive",
    "tip_capacity",
    "tip_type",
    "range",
    "empty_plan",
    "invalid_label",
}

CATALOG = load_catalog()
COMMAND_NAMES = list(CATALOG.commands)
PARAM_NAMES = sorted({param for spec in CATALOG.commands.values() for param in spec.params})


GOLD_OUTPUTS = [gold_text(example) for example in EXAMPLES]
GOLD_INPUTS = [example["conversation"][0]["input"] for example in EXAMPLES]
GOLD_PLANS = [parse_text_commands(text) for text in GOLD_OUTPUTS]

# --- strategies --------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["A1", "H12", "I1", "A13", "a1", "A01", "50ul", "1000ul", "Plate1", "", " "]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
param_values = st.recursive(scalars, lambda children: st.lists(children, max_size=9), max_leaves=12)
command_dicts = st.fixed_dictionaries(
    {
        "func_name": st.one_of(st.sampled_from(COMMAND_NAMES), st.text(max_size=12), json_values),
        "func_parameters": st.one_of(
            st.dictionaries(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=10)), param_values, max_size=7),
            json_values,
        ),
    }
)

# Text assembled from the tokens of the call syntax reaches far deeper into the parser than random text.
call_tokens = st.sampled_from(
    [
        "GetDiti", "Aspirate", "Mix", "__import__", "os", ".", "(", ")", "[", "]", "=", ",", " ", "\n", "'", '"',
        "\\", "channels", "vols", "wells", "labware", "1", "-", "2.5", "1e999", "nan", "True", "None", "'A1'",
        "lambda", "**", "*", "{", "}", ":", "#", "f'", "\x00", "\u2028", "行", "\ud800",
    ]
)
call_like_text = st.lists(call_tokens, max_size=40).map("".join)


@st.composite
def edited_gold_text(draw: st.DrawFn) -> str:
    """A gold output with a few random character edits."""
    text = draw(st.sampled_from(GOLD_OUTPUTS))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(call_tokens, st.characters()))
        if action == "insert":
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + piece + text[position + 1 :]
    return text


def _assert_parsed(commands: Any) -> None:
    assert isinstance(commands, list)
    assert all(isinstance(command, Command) for command in commands)


def _assert_issues(issues: Any) -> None:
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, ValidationIssue)
        assert issue.rule in KNOWN_RULES, issue
        assert issue.message
        if issue.command_index is not None:
            assert f"command {issue.command_index}" in issue.message


def _round_trips(commands: list[Command]) -> None:
    """A parsed plan renders in both forms (or refuses with a ContractError) and reads back equal."""
    try:
        text = render_text_commands(commands)
        as_json = render_json_commands(commands)
    except ContractError:
        return
    assert parse_text_commands(text) == commands
    assert parse_json_commands(as_json) == commands


def _parse_and_round_trip(parse: Callable[[str], list[Command]], text: str) -> list[Command] | None:
    """The commands `parse` reads from `text`, checked and round-tripped; None when it refuses with a ContractError."""
    try:
        commands = parse(text)
    except ContractError:
        return None
    _assert_parsed(commands)
    _round_trips(commands)
    return commands


# --- text form -----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), call_like_text, edited_gold_text()))
def test_parse_text_raises_only_contract_errors(text: str) -> None:
    commands = _parse_and_round_trip(parse_text_commands, text)
    if commands is not None:
        _assert_issues(validate_commands(commands))


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_parse_text_of_decoded_bytes_raises_only_contract_errors(data: bytes) -> None:
    try:
        parse_text_commands(data.decode("utf-8", errors="surrogateescape"))
    except ContractError:
        pass


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('echo PWNED')",
        "GetDiti(ditiType=__import__('os').system('echo PWNED'), channels=[1])",
        "GetDiti(ditiType='50ul', channels=[1] + [2])",
        "GetDiti(**{'ditiType': '50ul'})",
        "GetDiti(ditiType=f'{1}', channels=[1])",
        "Aspirate(channels=[1], labware='P', wells=['A1'], vols=[float('nan')])",
        "Aspirate(channels=[1], labware='P', wells=['A1'], vols=[1e999])",
        "Aspirate(channels=[1], labware='P', wells=['A1'], vols=[-1e999])",
        "GetDiti(channels=" + "[" * 5000 + "]" * 5000 + ")",
        "GetDiti(channels=" + "(" * 5000 + ")" * 5000 + ")",
        "x" * 2_000_000,
        "GetDiti(ditiType='50ul', channels=[1])\x00",
    ],
)
def test_parse_text_refuses_hostile_calls_with_a_contract_error(hostile: str) -> None:
    with pytest.raises(ContractError):
        parse_text_commands(hostile)


# --- JSON form -----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), json_values.map(lambda v: json.dumps(v, allow_nan=True))))
def test_parse_json_of_arbitrary_json_raises_only_contract_errors(text: str) -> None:
    _parse_and_round_trip(parse_json_commands, text)


@PROPERTY_SETTINGS
@given(st.lists(command_dicts, max_size=6))
def test_parse_json_of_command_shaped_documents_raises_only_contract_errors(items: list[dict]) -> None:
    commands = _parse_and_round_trip(parse_json_commands, json.dumps({"commands": items}, allow_nan=True))
    if commands is not None:
        _assert_issues(validate_commands(commands))


def test_parse_json_refuses_deep_nesting_and_non_finite_numbers() -> None:
    deep = '{"commands": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for text in [
        deep,
        '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": NaN}}]}',
        '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": Infinity}}]}',
        '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 1e999}}]}',
        '{"commands": [], "commands": []}',
    ]:
        with pytest.raises(ContractError):
            parse_json_commands(text)


# --- validator -----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(command_dicts, json_values), max_size=8))
def test_validate_never_raises_on_arbitrary_mappings(items: list[Any]) -> None:
    _assert_issues(validate_commands(items))


def _set_param(command: Command, key: str, value: Any) -> Command:
    return Command(func_name=command.func_name, func_parameters={**command.func_parameters, key: value})


def _without_param(command: Command, key: str) -> Command:
    return Command(
        func_name=command.func_name, func_parameters={k: v for k, v in command.func_parameters.items() if k != key}
    )


def _renamed(command: Command, name: str) -> Command:
    return Command(func_name=name, func_parameters=command.func_parameters)


def _required_params_given(command: Command) -> list[str]:
    params = CATALOG.commands[command.func_name].params
    return [key for key, param in params.items() if param.required and key in command.func_parameters]


def _with_first_item(command: Command, key: str, first: Any) -> Command:
    """`command` with the first item of its list parameter `key` replaced by `first`."""
    return _set_param(command, key, [first] + command.func_parameters[key][1:])


# (mutation name, applies to a command?, mutate, the rule it must trigger)
MUTATIONS = {
    "unknown_command": (lambda c: True, lambda c, d: _renamed(c, c.func_name + "X"), "unknown_command"),
    "unknown_parameter": (lambda c: True, lambda c, d: _set_param(c, "speed", 1), "unknown_parameter"),
    "missing_parameter": (
        lambda c: any(p.required for p in CATALOG.commands[c.func_name].params.values()),
        lambda c, d: _without_param(c, d(st.sampled_from(_required_params_given(c)))),
        "missing_parameter",
    ),
    "channel_range": (
        lambda c: "channels" in c.func_parameters,
        lambda c, d: _with_first_item(c, "channels", d(st.sampled_from([0, 9, -1, 100]))),
        "channel_range",
    ),
    "duplicate_channel": (
        lambda c: len(c.func_parameters.get("channels", [])) >= 2,
        lambda c, d: _set_param(c, "channels", c.func_parameters["channels"][:1] * len(c.func_parameters["channels"])),
        "duplicate_channel",
    ),
    "invalid_well": (
        lambda c: "wells" in c.func_parameters,
        lambda c, d: _with_first_item(c, "wells", d(st.sampled_from(["I1", "A13", "A0", "a1", "A01", ""]))),
        "invalid_well",
    ),
    "length_mismatch": (
        lambda c: "vols" in c.func_parameters and "channels" in c.func_parameters,
        lambda c, d: _set_param(c, "vols", c.func_parameters["vols"] + [10]),
        "length_mismatch",
    ),
    "volume_positive": (
        lambda c: "vols" in c.func_parameters,
        lambda c, d: _with_first_item(c, "vols", d(st.sampled_from([0, -5, -0.5]))),
        "volume_positive",
    ),
    "tip_type": (
        lambda c: "ditiType" in c.func_parameters,
        lambda c, d: _set_param(c, "ditiType", d(st.sampled_from(["20ul", "50", "50UL", "5000ul"]))),
        "tip_type",
    ),
    "type": (
        lambda c: bool(c.func_parameters),
        lambda c, d: _set_param(c, d(st.sampled_from(sorted(c.func_parameters))), {"nested": "object"}),
        "type",
    ),
    "empty_list": (
        lambda c: "channels" in c.func_parameters,
        lambda c, d: _set_param(c, "channels", []),
        "empty_list",
    ),
    "empty_string": (
        lambda c: "labware" in c.func_parameters,
        lambda c, d: _set_param(c, "labware", d(st.sampled_from(["", " ", "\t"]))),
        "empty_string",
    ),
    "range": (
        lambda c: any(k in c.func_parameters for k in ("rpm", "times", "temperature", "seconds")),
        lambda c, d: _set_param(
            c,
            next(k for k in ("rpm", "times", "temperature", "seconds") if k in c.func_parameters),
            -1,
        ),
        "range",
    ),
}


@PROPERTY_SETTINGS
@given(st.data())
def test_every_mutation_of_a_gold_plan_is_caught_with_its_rule(data: st.DataObject) -> None:
    plan_index = data.draw(st.integers(min_value=0, max_value=len(GOLD_PLANS) - 1), label="gold plan")
    plan = list(GOLD_PLANS[plan_index])
    assert validate_commands(plan) == []
    mutation = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
    applies, mutate, rule = MUTATIONS[mutation]
    candidates = [i for i, command in enumerate(plan) if applies(command)]
    assume(candidates)
    index = data.draw(st.sampled_from(candidates), label="command index")
    plan[index] = mutate(plan[index], data.draw)
    issues = validate_commands(plan)
    _assert_issues(issues)
    assert any(issue.rule == rule and issue.command_index == index for issue in issues), (mutation, issues)


@PROPERTY_SETTINGS
@given(st.data())
def test_exceeding_the_mounted_tip_is_caught(data: st.DataObject) -> None:
    tip_type = data.draw(st.sampled_from(sorted(CATALOG.tip_types)))
    capacity = CATALOG.tip_types[tip_type]
    channels = sorted(data.draw(st.sets(st.integers(1, 8), min_size=1, max_size=8)))
    over = data.draw(st.sampled_from(range(len(channels))))
    volume = capacity + data.draw(st.floats(min_value=0.5, max_value=10_000, allow_nan=False))
    vols = [capacity] * len(channels)
    vols[over] = volume
    wells = [f"{row}1" for row in "ABCDEFGH"[: len(channels)]]
    plan = [
        Command(func_name="GetDiti", func_parameters={"ditiType": tip_type, "channels": channels}),
        Command(
            func_name="Aspirate", func_parameters={"channels": channels, "labware": "P", "wells": wells, "vols": vols}
        ),
    ]
    issues = validate_commands(plan)
    assert [(i.rule, i.command_index, i.field) for i in issues] == [("tip_capacity", 1, "vols")]


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(st.sampled_from(GOLD_PLANS), st.just([])), min_size=1, max_size=3))
def test_gold_plans_concatenated_stay_valid_or_fail_only_on_tips(plans: list[list[Command]]) -> None:
    combined = [command for plan in plans for command in plan]
    issues = validate_commands(combined)
    _assert_issues(issues)
    if combined:
        # Joining valid plans can only break the tip bookkeeping across their boundary.
        assert {issue.rule for issue in issues} <= {"tip_capacity"}


# --- normalizer ----------------------------------------------------------------------------------


@st.composite
def decorated_gold_input(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(GOLD_INPUTS))
    prefix = draw(st.sampled_from(["", "行1:", "步骤3：", "Step 2. ", "(1) ", "1、", "第2步、", "Line 4: ", "\ufeff"]))
    noise = draw(st.sampled_from(["", "\u200b", "  ", "\t", "\n\n", "\r\n", "　", "\u00ad"]))
    return noise + prefix + text.replace("，", draw(st.sampled_from(["，", ",", " , "]))) + noise


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), decorated_gold_input(), call_like_text))
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert isinstance(once, str)
    assert normalize_text(once) == once


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_normalize_text_keeps_no_invisible_or_blank_lines(text: str) -> None:
    once = normalize_text(text)
    assert "\u200b" not in once and "\ufeff" not in once
    assert all(line.strip() == line and line for line in once.split("\n")) or once == ""
