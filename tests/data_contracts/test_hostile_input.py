"""Whatever the input, the contract functions answer with a result or a ContractError, never a crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.commands import Command
from data_contracts.errors import CommandParseError
from data_contracts.forms import parse_json_commands, parse_text_commands, render_json_commands, render_text_commands
from data_contracts.validation import ValidationIssue, validate_commands

_call_alphabet = st.sampled_from(list("GetDiti(channels=[1, 2])'\"\\-.eE#*:;{}\n\t 样\x00\ud800\u2028ｅ0x_jbf"))


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.text(alphabet=_call_alphabet, max_size=60)))
def test_text_parser_returns_commands_or_a_parse_error(text: str) -> None:
    try:
        commands = parse_text_commands(text)
    except CommandParseError as error:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        return
    for command in commands:
        assert isinstance(command, Command)
        render_text_commands([command])  # whatever parses can be written back
        render_json_commands([command])
        assert all(isinstance(i, ValidationIssue) for i in validate_commands([command]))


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
_command_like = st.fixed_dictionaries(
    {"func_name": st.one_of(st.sampled_from(["GetDiti", "Aspirate", "Transfer", "Mix", "Delay"]), _json),
     "func_parameters": st.one_of(st.dictionaries(
         st.sampled_from(["channels", "vols", "wells", "srcWells", "ditiType", "labware", "seconds", "times", "x"]),
         _json, max_size=6), _json)}
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(document=st.one_of(_json, st.fixed_dictionaries({"commands": st.lists(_command_like, max_size=4)})))
def test_json_parser_and_validator_never_crash(document: object) -> None:
    text = json.dumps(document, ensure_ascii=False)
    try:
        commands = parse_json_commands(text)
    except CommandParseError:
        return
    issues = validate_commands(commands)
    assert all(isinstance(i, ValidationIssue) and i.message for i in issues)
    assert render_json_commands(commands)


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(_command_like, max_size=5))
def test_validator_accepts_any_json_form_dicts(commands: list[dict]) -> None:
    for issue in validate_commands(commands):
        assert issue.rule
        if issue.command_index is not None:
            assert issue.message.startswith(f"command {issue.command_index}")
