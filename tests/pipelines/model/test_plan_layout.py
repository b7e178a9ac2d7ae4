"""The model's plan layout: the same JSON value as the canonical target, without the spaces after "," and ":"."""

from __future__ import annotations

import json
import re

import pytest

from data_contracts.forms import parse_json_commands, render_json_commands
from pipelines.model.plan_layout import key_opener, list_opener_pattern, model_target, render_commands, string_opener
from pipelines.model.prompts import build_completion_ids

# A label holding ", " and ": " (and a quote) must keep them: only the separators between JSON tokens go.
CANONICAL = (
    '{"commands": [{"func_name": "Aspirate", "func_parameters": {"channels": [1, 2], "labware": "Rack, A: \\"x\\"", '
    '"wells": ["A1", "B1"], "vols": [10.5, 20]}}, {"func_name": "Delay", "func_parameters": {"seconds": 300}}]}'
)


def test_a_target_keeps_its_json_value_its_key_order_and_its_stop_marker():
    target = model_target(CANONICAL + "<eoc>")
    assert target.endswith("<eoc>") and model_target(CANONICAL) == target.removesuffix("<eoc>")
    body = target.removesuffix("<eoc>")
    assert json.loads(body) == json.loads(CANONICAL)
    assert list(json.loads(body)["commands"][0]["func_parameters"]) == ["channels", "labware", "wells", "vols"]
    assert '"labware":"Rack, A: \\"x\\""' in body  # the value's own spaces stay
    outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)
    assert " " not in outside_strings and len(body) < len(CANONICAL)


def test_commands_render_in_the_layout_and_parse_back_to_the_same_commands():
    commands = parse_json_commands(CANONICAL)
    assert render_commands(commands) == model_target(render_json_commands(commands))
    assert parse_json_commands(render_commands(commands)) == commands


def test_openers_match_the_layout_the_targets_are_written_in():
    body = model_target(CANONICAL)
    assert body.encode().count(string_opener("func_name")) == 2
    assert key_opener("func_parameters") + b"{" in body.encode()
    assert [m.group(0) for m in re.finditer(list_opener_pattern(["wells", "vols"]), body.encode())] == [
        b'"wells":[', b'"vols":['
    ]


def test_the_prompt_builder_tokenizes_the_target_in_the_layout(tiny_base_dir):
    from pipelines.model.model_io import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    ids = build_completion_ids(tokenizer, CANONICAL + "<eoc>")
    assert tokenizer.decode(ids) == model_target(CANONICAL + "<eoc>")


def test_a_target_that_is_not_json_is_refused():
    with pytest.raises(json.JSONDecodeError):
        model_target('{"commands": [<eoc>')
