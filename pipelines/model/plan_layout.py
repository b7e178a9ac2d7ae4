"""How the model writes a plan: canonical JSON's value, keys and order, without the spaces after "," and ":".

The robot receives canonical JSON (`data_contracts.forms.render_json_commands`, json.dumps' default separators
", " and ": "). The model reads and writes the same JSON value in this compact layout: its targets take fewer
tokens (docs/benchmarks.md), so each training row and each decoded plan costs less. The training
targets, the decoding grammar and every byte-level reader of generated text (the grounding and coverage logits
processors) take the layout from here, so they cannot drift apart; the layout never reaches the robot, because
every plan is parsed, validated and rendered canonically before it leaves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from data_contracts.tables import EOC_TOKEN

ITEM_SEPARATOR = ","
KEY_SEPARATOR = ":"
SEPARATORS = (ITEM_SEPARATOR, KEY_SEPARATOR)


def render_plan(plan: Any) -> str:
    """A JSON value (a `{"commands": [...]}` plan) in the model's layout."""
    return json.dumps(plan, ensure_ascii=False, separators=SEPARATORS)


def model_target(completion: str) -> str:
    """A training target (canonical JSON, then `<eoc>` when it ends one) re-written in the model's layout."""
    body = completion.removesuffix(EOC_TOKEN)
    return render_plan(json.loads(body)) + (EOC_TOKEN if len(body) < len(completion) else "")


def key_opener(key: str) -> bytes:
    """The bytes that open `key`'s value in generated text: `"key":`."""
    return json.dumps(key).encode() + KEY_SEPARATOR.encode()


def string_opener(key: str) -> bytes:
    """The bytes after which `key`'s string value starts: `"key":"`."""
    return key_opener(key) + b'"'


def list_opener_pattern(keys: Iterable[str]) -> bytes:
    """A regular expression (bytes) for the opening of a list under any of `keys`: `"key":[`."""
    names = b"|".join(re.escape(key.encode()) for key in keys)
    return rb'"(?:' + names + rb')"' + re.escape(KEY_SEPARATOR.encode()) + rb"\["


def render_commands(commands: Iterable[Command]) -> str:
    """Commands as the model writes them: their canonical JSON (catalog order, canonical numbers) in this layout."""
    return model_target(render_json_commands(commands))
