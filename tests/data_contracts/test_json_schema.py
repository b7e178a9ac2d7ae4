"""The plan JSON Schema (fed to xgrammar for constrained decoding) agrees with the gold plans and the validator."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from data_contracts.catalog import catalog_json_schema, command_json_schema, load_catalog
from data_contracts.forms import parse_text_commands, render_json_commands
from tests.helpers import EXAMPLE_IDS, EXAMPLES, gold_text

# The JSON-Schema keywords a grammar compiler is promised; anything else in the schema is a bug.
PLAIN_KEYWORDS = {
    "$schema", "title", "type", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "minItems", "maxItems", "minLength", "required", "properties", "additionalProperties", "items", "anyOf", "oneOf",
}  # fmt: skip


def schema_errors(schema: dict[str, Any], value: Any, path: str = "$") -> list[str]:
    """A small JSON-Schema checker for exactly the keywords above (jsonschema is not a dependency)."""
    errors: list[str] = []
    kind = schema.get("type")
    type_ok = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
        "number": lambda v: type(v) in (int, float) and math.isfinite(v),
        None: lambda v: True,
    }[kind]
    if not type_ok(value):
        return [f"{path}: not {kind}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: != const")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: not in enum")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: pattern")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: minLength")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: minimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: maximum")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: exclusiveMinimum")
    if kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            errors.append(f"{path}: item count")
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    if kind == "object":
        properties = schema.get("properties", {})
        errors += [f"{path}: missing {key}" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: extra {key}" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(properties[key], item, f"{path}.{key}")
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            matches = sum(not schema_errors(option, value, path) for option in schema[combinator])
            if matches == 0 or (combinator == "oneOf" and matches > 1):
                errors.append(f"{path}: {combinator} matched {matches}")
    return errors


def keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties":
                for sub in value.values():
                    found |= keywords(sub)
            elif key != "const" and key != "enum":
                found |= keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= keywords(item)
    return found


def gold_document(example: dict) -> dict:
    return json.loads(render_json_commands(parse_text_commands(gold_text(example))))


def test_schema_uses_only_plain_keywords() -> None:
    assert keywords(catalog_json_schema()) <= PLAIN_KEYWORDS


def test_schema_has_one_branch_per_catalog_command() -> None:
    branches = catalog_json_schema()["properties"]["commands"]["items"]["anyOf"]
    assert [b["properties"]["func_name"]["const"] for b in branches] == list(load_catalog().commands)
    aspirate = command_json_schema("Aspirate")["properties"]["func_parameters"]
    assert aspirate["required"] == ["channels", "labware", "wells", "vols"]
    assert aspirate["additionalProperties"] is False
    assert aspirate["properties"]["channels"]["items"] == {"type": "integer", "minimum": 1, "maximum": 8}


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_every_gold_plan_satisfies_the_schema(example: dict) -> None:
    assert schema_errors(catalog_json_schema(), gold_document(example)) == []


def _plan(name: str, **params: Any) -> dict:
    return {"commands": [{"func_name": name, "func_parameters": params}]}


BAD_PLANS = {
    "empty plan": {"commands": []},
    "unknown command": _plan("Foo"),
    "unknown parameter": _plan("Delay", seconds=1, minutes=2),
    "missing parameter": _plan("Delay"),
    "negative seconds": _plan("Delay", seconds=-1),
    "fractional seconds": _plan("Delay", seconds=1.5),
    "channel 9": _plan("DropDiti", channels=[9]),
    "no channels": _plan("DropDiti", channels=[]),
    "leading-zero well": _plan("Aspirate", channels=[1], labware="P", wells=["A01"], vols=[5]),
    "zero volume": _plan("Aspirate", channels=[1], labware="P", wells=["A1"], vols=[0]),
    "empty labware": _plan("Aspirate", channels=[1], labware="", wells=["A1"], vols=[5]),
    "unknown tip": _plan("GetDiti", ditiType="20ul", channels=[1]),
    "slow shake": _plan("Shake", labware="P", rpm=99, seconds=1),
    "hot incubate": _plan("Incubate", labware="P", temperature=100.5, seconds=1),
    "51 mixing cycles": _plan("Mix", channels=[1], labware="P", wells=["A1"], vols=[5], times=51),
    "scalar channels": _plan("DropDiti", channels=1),
}


@pytest.mark.parametrize("name", list(BAD_PLANS))
def test_schema_rejects_bad_plans(name: str) -> None:
    assert schema_errors(catalog_json_schema(), BAD_PLANS[name]) != []


def test_xgrammar_compiles_the_schema_and_accepts_exactly_the_canonical_gold_json() -> None:
    xgr = pytest.importorskip("xgrammar")
    testing = pytest.importorskip("xgrammar.testing")
    grammar = xgr.Grammar.from_json_schema(json.dumps(catalog_json_schema()), any_whitespace=False)
    for example in EXAMPLES:
        text = render_json_commands(parse_text_commands(gold_text(example)))
        assert testing._is_grammar_accept_string(grammar, text), example["id"]
    for name, plan in BAD_PLANS.items():
        assert not testing._is_grammar_accept_string(grammar, json.dumps(plan, ensure_ascii=False)), name
