from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.commands import Command
from data_contracts.errors import CommandParseError, ContractError
from data_contracts.forms import (
    MAX_LINE_CHARS,
    _fast_parse,
    _parse_call_line_ast,
    parse_json_commands,
    parse_text_commands,
    render_json_commands,
    render_text_commands,
)
from tests.helpers import EXAMPLE_IDS, EXAMPLES, gold_text


def cmd(name: str, **params: object) -> Command:
    return Command(func_name=name, func_parameters=params)


# --- parser: accepted forms ----------------------------------------------------------------


def test_parses_one_call_per_line() -> None:
    text = "GetDiti(ditiType='50ul', channels=[1])\nDelay(seconds=60)"
    assert parse_text_commands(text) == [cmd("GetDiti", ditiType="50ul", channels=[1]), cmd("Delay", seconds=60)]


def test_skips_blank_lines_and_surrounding_whitespace() -> None:
    text = "\n  Delay(seconds=1)  \r\n\n\t\nDelay(seconds=2)\n"
    assert parse_text_commands(text) == [cmd("Delay", seconds=1), cmd("Delay", seconds=2)]


def test_empty_text_is_an_empty_plan() -> None:
    assert parse_text_commands("") == []
    assert parse_text_commands(" \n \n") == []


@pytest.mark.parametrize(
    ("line", "params"),
    [
        ("X(a='s')", {"a": "s"}),
        ('X(a="it\'s")', {"a": "it's"}),
        ("X(a='\\u6837')", {"a": "样"}),
        ("X(a='样品板')", {"a": "样品板"}),
        ("X(a=-5)", {"a": -5}),
        ("X(a=-2.5)", {"a": -2.5}),
        ("X(a=+3)", {"a": 3}),
        ("X(a=1e3)", {"a": 1000.0}),
        ("X(a=True, b=None)", {"a": True, "b": None}),
        ("X(a=[1, -2, 3.5, 'x'])", {"a": [1, -2, 3.5, "x"]}),
        ("X(a=[])", {"a": []}),
        ("X(a=[[1], [2]])", {"a": [[1], [2]]}),
        ("X( a = 1 ,b=[ 1 ,2 ] )", {"a": 1, "b": [1, 2]}),
        ("X(a=1,)", {"a": 1}),
        ("X()", {}),
        ("X(a=1)  # a comment", {"a": 1}),
        ("X(a=0x10)", {"a": 16}),
    ],
)
def test_parses_literal_values(line: str, params: dict) -> None:
    (command,) = parse_text_commands(line)
    assert command.func_name == "X"
    assert command.func_parameters == params
    assert [type(v) for v in command.func_parameters.values()] == [type(v) for v in params.values()]


# --- parser: rejections, each with its 1-based line and a clear message ----------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("GetDiti('50ul', [1])", "positional arguments are not allowed"),
        ("GetDiti(ditiType=str(50), channels=[1])", "a nested call"),
        ("GetDiti(ditiType=os.sep, channels=[1])", "an attribute access"),
        ("GetDiti(ditiType=x, channels=[1])", "a name"),
        ("GetDiti(ditiType=f'{x}', channels=[1])", "an f-string"),
        ("GetDiti(ditiType='50ul', channels=(1, 2))", "a tuple"),
        ("GetDiti(ditiType='50ul', channels={1})", "a set"),
        ("GetDiti(ditiType='50ul', channels={'a': 1})", "a dict"),
        ("Delay(seconds=60*2)", "an arithmetic expression"),
        ("Delay(seconds=-'x')", "only numbers can carry a sign"),
        ("Delay(seconds=-True)", "only numbers can carry a sign"),
        ("Delay(seconds=b'1')", "bytes values are not allowed"),
        ("Delay(seconds=1j)", "complex values are not allowed"),
        ("Delay(seconds=...)", "ellipsis values are not allowed"),
        ("Delay(seconds=1e999)", "is not finite"),
        ("Delay(seconds=[-1e999])", "is not finite"),
        ("Delay(seconds=[[[[1]]]])", "nested deeper than"),
        ("Delay(**{'seconds': 1})", "'**' arguments are not allowed"),
        ("Delay(seconds=1, seconds=2)", "given twice"),
        ("robot.Delay(seconds=1)", "must be a plain name"),
        ("Delay(seconds=1)()", "must be a plain name"),
        ("Delay", "expected one call"),
        ("'Delay(seconds=1)'", "expected one call"),
        ("Delay(seconds=1); Delay(seconds=2)", "not a valid call"),
        ("Delay(seconds=1", "not a valid call"),
        ("Delay(seconds=1) Delay(seconds=2)", "not a valid call"),
        ("import os", "not a valid call"),
        ("Delay(seconds=007)", "not a valid call"),
        ("Delay(seconds='\x00')", "not a valid call"),
        ("Delay(seconds='\ud800')", "not a valid call"),
        ("Delay(seconds=" + "[" * 300 + "]" * 300 + ")", "not a valid call"),
        ("Delay(seconds=1" + "0" * 5000 + ")", "not a valid call"),
    ],
)
def test_rejects_anything_but_a_literal_keyword_call(line: str, message: str) -> None:
    text = "Delay(seconds=1)\n\n" + line
    with pytest.raises(CommandParseError) as caught:
        parse_text_commands(text)
    assert caught.value.line == 3
    assert message in caught.value.message
    assert str(caught.value).startswith("line 3: ")


def test_rejects_a_call_spread_over_two_lines() -> None:
    with pytest.raises(CommandParseError) as caught:
        parse_text_commands("Delay(\nseconds=1)")
    assert caught.value.line == 1


def test_rejects_overlong_lines_before_parsing_them() -> None:
    line = "Delay(seconds=1)" + " " * MAX_LINE_CHARS + "#"
    with pytest.raises(CommandParseError, match="more than the limit") as caught:
        parse_text_commands("Delay(seconds=1)\n" + line)
    assert caught.value.line == 2


def test_rejects_non_text() -> None:
    with pytest.raises(CommandParseError, match="must be a str"):
        parse_text_commands(b"Delay(seconds=1)")  # type: ignore[arg-type]


def test_parse_error_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        parse_text_commands("nope(")


# --- renderers -------------------------------------------------------------------------------


def test_renders_parameters_in_catalog_order_with_unknown_ones_last() -> None:
    command = cmd("Aspirate", zeta=1, vols=[20], wells=["A1"], labware="P", channels=[1])
    assert render_text_commands([command]) == "Aspirate(channels=[1], labware='P', wells=['A1'], vols=[20], zeta=1)"
    assert render_json_commands([command]) == (
        '{"commands": [{"func_name": "Aspirate", "func_parameters": '
        '{"channels": [1], "labware": "P", "wells": ["A1"], "vols": [20], "zeta": 1}}]}'
    )


def test_renders_whole_floats_as_ints_and_keeps_fractions() -> None:
    command = cmd("Aspirate", channels=[1, 2], labware="P", wells=["A1", "B1"], vols=[20.0, 3.5])
    assert "vols=[20, 3.5]" in render_text_commands([command])
    assert '"vols": [20, 3.5]' in render_json_commands([command])


def test_renders_python_literal_strings_and_keeps_non_ascii() -> None:
    command = cmd("PCR", labware="it's 样品板", program='a"b')
    assert render_text_commands([command]) == 'PCR(labware="it\'s 样品板", program=\'a"b\')'
    assert '"labware": "it\'s 样品板"' in render_json_commands([command])


def test_renders_unknown_commands_verbatim() -> None:
    command = cmd("Foo", b=1, a=True, c=None)
    assert render_text_commands([command]) == "Foo(b=1, a=True, c=None)"
    assert parse_text_commands(render_text_commands([command])) == [command]


def test_json_form_matches_the_catalog_example() -> None:
    from data_contracts.catalog import load_catalog

    forms = load_catalog().forms
    assert render_json_commands(parse_text_commands(forms["text"])) == forms["json"]
    assert render_text_commands(parse_json_commands(forms["json"])) == forms["text"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_renderers_refuse_values_with_no_literal(bad: object) -> None:
    command = cmd("Delay", seconds=bad)
    with pytest.raises(ContractError):
        render_text_commands([command])
    with pytest.raises(ContractError):
        render_json_commands([command])


# --- JSON parser -----------------------------------------------------------------------------


def test_parses_the_json_form() -> None:
    text = '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60}}]}'
    assert parse_json_commands(text) == [cmd("Delay", seconds=60)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"commands": [', "invalid JSON"),
        ("", "invalid JSON"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": NaN}}]}', "NaN is not a valid"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": Infinity}}]}', "Infinity"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": -Infinity}}]}', "Infinity"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 1e999}}]}', "not finite"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 1, "seconds": 2}}]}', "twice"),
        ("[]", 'exactly one key, "commands"'),
        ('{"commands": [], "extra": 1}', 'exactly one key, "commands"'),
        ('{"commands": {}}', '"commands" must be a list'),
        ('{"commands": [1]}', "command 0: expected an object"),
        ('{"commands": [{"func_name": "Delay"}]}', "command 0: expected an object"),
        ('{"commands": [{"func_name": 1, "func_parameters": {}}]}', '"func_name" must be a non-empty string'),
        ('{"commands": [{"func_name": "Delay", "func_parameters": []}]}', "command 0 (Delay)"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": {"a": 1}}}]}', "objects are not"),
        ('{"commands": [{"func_name": "Delay", "func_parameters": {"s": [[[[1]]]]}}]}', "nested deeper"),
        ("[" * 100_000, "invalid JSON"),
    ],
)
def test_json_parser_rejects_bad_documents(text: str, message: str) -> None:
    with pytest.raises(CommandParseError) as caught:
        parse_json_commands(text)
    assert message in caught.value.message


def test_json_syntax_errors_carry_the_line() -> None:
    with pytest.raises(CommandParseError) as caught:
        parse_json_commands('{"commands": [\n{"func_name": "Delay",\n}]}')
    assert caught.value.line == 3


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_text_round_trip_is_exact_on_the_gold_text(example: dict) -> None:
    text = gold_text(example)
    assert render_text_commands(parse_text_commands(text)) == text


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_json_round_trip_is_exact(example: dict) -> None:
    commands = parse_text_commands(gold_text(example))
    canonical = render_json_commands(commands)
    assert parse_json_commands(canonical) == commands
    assert render_json_commands(parse_json_commands(canonical)) == canonical
    assert canonical == json.dumps(json.loads(canonical), ensure_ascii=False)


def test_equality_ignores_parameter_order_and_int_float_spelling() -> None:
    a = cmd("Delay", seconds=60, x=[1.0])
    b = cmd("Delay", x=[1], seconds=60.0)
    assert a == b
    assert hash(a) == hash(b)
    assert a != cmd("Delay", seconds=61, x=[1])


# --- the regex fast path agrees with the ast reference ----------------------------------------

_scalars = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=8),
    st.sampled_from([True, False, None]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=4))
_params = st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), _values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["GetDiti", "Aspirate", "Foo", "if", "x1"]), params=_params)
def test_fast_path_agrees_with_ast_on_rendered_commands(name: str, params: dict) -> None:
    line = render_text_commands([Command(func_name=name, func_parameters=params)])
    _assert_paths_agree(line)


@settings(max_examples=300, deadline=None)
@given(
    line=st.text(alphabet=st.sampled_from(list("Dlay(sec=nd)1,0.5[]'\" -eE#\\xTNoF\t样")), max_size=40).map(
        lambda body: "Delay(" + body
    )
)
def test_fast_path_agrees_with_ast_on_noisy_lines(line: str) -> None:
    _assert_paths_agree(line.strip())


def _assert_paths_agree(line: str) -> None:
    fast = _fast_parse(line)
    try:
        reference = _parse_call_line_ast(line, 1)
    except CommandParseError:
        assert fast is None, line
        return
    if fast is not None:
        assert fast.func_name == reference.func_name
        assert fast.func_parameters == reference.func_parameters
        assert _types(fast.func_parameters) == _types(reference.func_parameters)


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_fast_path_handles_every_gold_line() -> None:
    lines = [line for example in EXAMPLES for line in gold_text(example).split("\n")]
    assert all(_fast_parse(line) is not None for line in lines)


def test_rejects_lone_surrogates_in_both_forms() -> None:
    with pytest.raises(CommandParseError, match="lone surrogate"):
        parse_text_commands("PCR(labware='\\ud800', program='x')")
    with pytest.raises(CommandParseError, match="lone surrogate"):
        parse_json_commands('{"commands": [{"func_name": "PCR", "func_parameters": {"labware": "\\ud800"}}]}')


def test_json_parser_rejects_absurdly_long_integers() -> None:
    text = '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": ' + "1" * 5000 + "}}]}"
    with pytest.raises(CommandParseError, match="invalid JSON"):
        parse_json_commands(text)


def test_parse_error_survives_pickling() -> None:
    import pickle

    error = CommandParseError("bad call", line=4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.line, str(copy)) == ("bad call", 4, "line 4: bad call")


# --- round trips on arbitrary commands (property-based) ---------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_json_scalars = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    st.booleans(),
    st.none(),
)
_json_values = st.one_of(_json_scalars, st.lists(_json_scalars, max_size=5))
_commands = st.lists(
    st.builds(
        Command,
        func_name=st.sampled_from(["GetDiti", "Aspirate", "Transfer", "Delay", "Custom_1"]),
        func_parameters=st.dictionaries(
            st.sampled_from(["channels", "vols", "wells", "labware", "seconds", "ditiType", "zeta", "alpha"]),
            _json_values,
            max_size=5,
        ),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(commands=_commands)
def test_any_commands_survive_both_round_trips(commands: list[Command]) -> None:
    text = render_text_commands(commands)
    assert parse_text_commands(text) == commands
    assert render_text_commands(parse_text_commands(text)) == text
    canonical = render_json_commands(commands)
    assert parse_json_commands(canonical) == commands
    assert render_json_commands(parse_json_commands(canonical)) == canonical
    assert render_json_commands(parse_text_commands(text)) == canonical
