"""Read and write the two command forms: Python-call text (raw corpus) and canonical JSON (model target).

The text form is read with `ast`, never evaluated: each non-empty line must be exactly one call
`Name(keyword=literal, ...)` whose values are str, int, float, bool, None or lists of those.
"""

from __future__ import annotations

import ast
import functools
import json
import keyword
import math
import re
from collections.abc import Iterable
from typing import Any

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from data_contracts.errors import CommandParseError, ContractError

# Limits against hostile input; real command lines are a few hundred characters.
MAX_LINE_CHARS = 10_000
MAX_TEXT_CHARS = 1_000_000
MAX_LIST_DEPTH = 3

_SCALAR_TYPES = (str, int, float, bool, type(None))
# Lone surrogates (from escapes like '\ud800') are not text: they cannot be written as UTF-8 later.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check_input_size(text: Any, what: str) -> None:
    """CommandParseError unless `text` is a str within MAX_TEXT_CHARS; `what` names it in the message."""
    if not isinstance(text, str):
        raise CommandParseError(f"{what} must be a str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise CommandParseError(f"{what} is {len(text)} characters, more than the limit of {MAX_TEXT_CHARS}")


# --- text form ------------------------------------------------------------------------------


def parse_text_commands(text: str) -> list[Command]:
    """Commands from the text form, one call per non-empty line; CommandParseError names the 1-based line."""
    _check_input_size(text, "command text")
    commands = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped:
            commands.append(_parse_call_line(stripped, line_number))
    return commands


# Fast path for the common, simple spelling of a call (plain quotes, no escapes, flat lists): ast.parse
# would dominate the raw stage's time on a large corpus (docs/benchmarks.md, "Where the time goes").
# Anything this grammar does not match goes to the ast path, which is the reference: a test checks
# both paths agree on generated lines.
_WS = r"[ \t]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# No backslashes (escapes), control characters or lone surrogates: their meaning is the ast path's business.
_STRING_BODY = r"\\\x00-\x1f\x7f\ud800-\udfff"
_STRING = rf"'[^'{_STRING_BODY}]*'|\"[^\"{_STRING_BODY}]*\""
_NUMBER = r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?"
_SCALAR = rf"(?:{_STRING}|{_NUMBER}|True|False|None)"
_LIST = rf"\[{_WS}(?:{_SCALAR}(?:{_WS},{_WS}{_SCALAR})*)?{_WS}\]"
_KEYWORD = rf"{_NAME}{_WS}={_WS}(?:{_SCALAR}|{_LIST})"
_FAST_CALL = re.compile(rf"({_NAME})\({_WS}((?:{_KEYWORD}(?:{_WS},{_WS}{_KEYWORD})*)?){_WS}\)")
_FAST_KEYWORD = re.compile(rf"({_NAME}){_WS}={_WS}({_SCALAR}|{_LIST})")
_FAST_SCALAR = re.compile(_SCALAR)
_FAST_INT_LIST = re.compile(r"\[[-0-9, \t]*\]")
_NAMED_CONSTANTS = {"True": True, "False": False, "None": None}


def _fast_scalar(token: str) -> Any:
    first = token[0]
    if first == "'" or first == '"':
        return token[1:-1]
    if first in "TFN":
        return _NAMED_CONSTANTS[token]
    if "." in token or "e" in token or "E" in token:
        value = float(token)
        if not math.isfinite(value):
            raise OverflowError(token)
        return value
    return int(token)


def _fast_list(token: str) -> list[Any]:
    if _FAST_INT_LIST.fullmatch(token):  # the usual channels=[1, 2, 3, 4]; the call regex vetted the spelling
        inner = token[1:-1]
        return [int(t) for t in inner.split(",")] if inner.strip(" \t") else []
    return [_fast_scalar(t) for t in _FAST_SCALAR.findall(token, 1, len(token) - 1)]


def _fast_parse(line: str) -> Command | None:
    """The command of a simply spelled line, or None to let the ast path decide."""
    match = _FAST_CALL.fullmatch(line)
    if match is None:
        return None
    name, body = match.groups()
    if keyword.iskeyword(name):
        return None
    params: dict[str, Any] = {}
    try:
        for key, token in _FAST_KEYWORD.findall(body):
            if key in params or keyword.iskeyword(key):
                return None
            params[key] = _fast_list(token) if token[0] == "[" else _fast_scalar(token)
    except OverflowError:
        return None
    return Command(func_name=name, func_parameters=params)


def _parse_call_line(line: str, line_number: int) -> Command:
    if len(line) > MAX_LINE_CHARS:
        raise CommandParseError(
            f"line is {len(line)} characters, more than the limit of {MAX_LINE_CHARS}", line_number
        )
    command = _fast_parse(line)
    if command is not None:
        return command
    return _parse_call_line_ast(line, line_number)


def _parse_call_line_ast(line: str, line_number: int) -> Command:
    try:
        tree = ast.parse(line, mode="eval")
    except SyntaxError as exc:
        raise CommandParseError(f"not a valid call: {exc.msg}", line_number) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. null bytes, absurd nesting
        raise CommandParseError(f"not a valid call: {type(exc).__name__}", line_number) from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise CommandParseError(
            f"expected one call like Name(key=value, ...), got {_describe_node(call)}", line_number
        )
    if not isinstance(call.func, ast.Name):
        raise CommandParseError(f"the called name must be a plain name, got {_describe_node(call.func)}", line_number)
    name = call.func.id
    if call.args:
        raise CommandParseError(f"{name}: positional arguments are not allowed, use key=value", line_number)
    params: dict[str, Any] = {}
    for argument in call.keywords:
        key = argument.arg
        if key is None:
            raise CommandParseError(f"{name}: '**' arguments are not allowed", line_number)
        if key in params:
            raise CommandParseError(f"{name}: parameter '{key}' is given twice", line_number)
        params[key] = _literal(argument.value, f"{name}: parameter '{key}'", line_number, depth=0)
    return Command(func_name=name, func_parameters=params)


def _literal(node: ast.expr, where: str, line_number: int, depth: int) -> Any:
    """The value of a literal node; anything that is not a plain literal is an error, not evaluated."""
    if isinstance(node, ast.Constant):
        value = node.value
        if not isinstance(value, _SCALAR_TYPES):
            raise CommandParseError(f"{where}: {type(value).__name__} values are not allowed", line_number)
        if isinstance(value, float) and not math.isfinite(value):
            raise CommandParseError(f"{where}: number {value!r} is not finite", line_number)
        if isinstance(value, str) and _has_surrogate(value):
            raise CommandParseError(
                f"{where}: the string holds a lone surrogate, which is not valid text", line_number
            )
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        if (
            isinstance(operand, ast.Constant)
            and isinstance(operand.value, int | float)
            and not isinstance(operand.value, bool)
        ):
            value = ast.literal_eval(node)
            if isinstance(value, float) and not math.isfinite(value):
                raise CommandParseError(f"{where}: number {value!r} is not finite", line_number)
            return value
        raise CommandParseError(f"{where}: only numbers can carry a sign", line_number)
    if isinstance(node, ast.List):
        if depth >= MAX_LIST_DEPTH:
            raise CommandParseError(f"{where}: lists nested deeper than {MAX_LIST_DEPTH} levels", line_number)
        return [_literal(element, where, line_number, depth + 1) for element in node.elts]
    raise CommandParseError(f"{where}: expected a literal value, got {_describe_node(node)}", line_number)


def _describe_node(node: ast.AST) -> str:
    descriptions = {
        ast.Call: "a nested call",
        ast.Attribute: "an attribute access",
        ast.Name: "a name",
        ast.JoinedStr: "an f-string",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.BinOp: "an arithmetic expression",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.Starred: "a starred expression",
    }
    return descriptions.get(type(node), f"a {type(node).__name__} expression")


def render_text_commands(commands: Iterable[Command]) -> str:
    """Canonical text form: one call per line, parameters in catalog order, Python literal style."""
    return "\n".join(_render_call(command) for command in commands)


def _render_call(command: Command) -> str:
    params = _ordered_params(command)
    args = ", ".join(f"{key}={_render_literal(value)}" for key, value in params.items())
    return f"{command.func_name}({args})"


def _render_literal(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render_literal(v) for v in value) + "]"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ContractError(f"cannot render the non-finite number {value!r}")
        if value.is_integer():
            return repr(int(value))
    if isinstance(value, str | int | float | bool | type(None)):
        return repr(value)
    raise ContractError(f"cannot render a {type(value).__name__} value as a literal")


# --- JSON form ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"key {duplicate!r} appears twice in one object")
    return result


# Built once: json.loads/json.dumps with options construct a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def parse_json_commands(text: str) -> list[Command]:
    """Commands from the JSON form {"commands": [...]}; CommandParseError on bad JSON or a wrong shape."""
    _check_input_size(text, "command JSON")
    try:
        document = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise CommandParseError(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except ValueError as exc:
        raise CommandParseError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise CommandParseError("invalid JSON: nested too deeply") from None
    return commands_from_document(document)


def commands_from_document(document: Any) -> list[Command]:
    """Commands from an already-decoded JSON document; checks its shape, not the catalog rules."""
    if not isinstance(document, dict) or set(document) != {"commands"}:
        raise CommandParseError('expected an object with exactly one key, "commands"')
    items = document["commands"]
    if not isinstance(items, list):
        raise CommandParseError('"commands" must be a list')
    commands = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"func_name", "func_parameters"}:
            raise CommandParseError(
                f'command {index}: expected an object with exactly the keys "func_name" and "func_parameters"'
            )
        name, params = item["func_name"], item["func_parameters"]
        if not isinstance(name, str) or not name or _has_surrogate(name):
            raise CommandParseError(f'command {index}: "func_name" must be a non-empty string of valid text')
        if not isinstance(params, dict):
            raise CommandParseError(f'command {index} ({name}): "func_parameters" must be an object')
        # Names the text form cannot spell would break the round trip between the two forms.
        for label in (name, *params):
            if not label.isidentifier() or keyword.iskeyword(label):
                raise CommandParseError(
                    f"command {index} ({name}): {label!r} is not a valid command or parameter name"
                )
        for key, value in params.items():
            if type(value) is int or (type(value) is str and value.isascii()) or _is_plain_list(value):
                continue  # the common case, checked without building the error context
            _check_json_value(value, f"command {index} ({name}): parameter '{key}'", depth=0)
        commands.append(Command(func_name=name, func_parameters=params))
    return commands


def _is_plain_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is int or (type(v) is str and v.isascii()) for v in value)


def _check_json_value(value: Any, where: str, depth: int) -> None:
    # Same value domain as the text form, so every parsed command can be rendered in both forms.
    if isinstance(value, list):
        if depth >= MAX_LIST_DEPTH:
            raise CommandParseError(f"{where}: lists nested deeper than {MAX_LIST_DEPTH} levels")
        for element in value:
            _check_json_value(element, where, depth + 1)
    elif isinstance(value, dict):
        raise CommandParseError(f"{where}: objects are not allowed as parameter values")
    elif isinstance(value, float) and not math.isfinite(value):  # e.g. 1e999 overflows to inf
        raise CommandParseError(f"{where}: number {value!r} is not finite")
    elif isinstance(value, str) and _has_surrogate(value):
        raise CommandParseError(f"{where}: the string holds a lone surrogate, which is not valid text")


def render_json_commands(commands: Iterable[Command]) -> str:
    """Canonical JSON form, as the catalog's forms.json: default separators, non-ASCII kept, catalog order."""
    document = {
        "commands": [
            {"func_name": c.func_name, "func_parameters": _canonical_params(_ordered_params(c))} for c in commands
        ]
    }
    try:
        return _ENCODER.encode(document)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"cannot render commands as JSON: {exc}") from None


_PLAIN_ITEM_TYPES = (int, str)


def _canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    # Parameters are scalars or flat lists almost always; only rebuild what holds a whole float.
    for key, value in params.items():
        if type(value) is float or (type(value) is list and not all(type(v) in _PLAIN_ITEM_TYPES for v in value)):
            params[key] = _canonical_numbers(value)
    return params


def _canonical_numbers(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_numbers(v) for v in value]
    return value


@functools.cache
def _param_order(name: str) -> tuple[str, ...] | None:
    spec = load_catalog().commands.get(name)
    return None if spec is None else tuple(spec.params)


def _ordered_params(command: Command) -> dict[str, Any]:
    """A new dict of the parameters in catalog order; ones the catalog does not know follow in their given order."""
    params = command.func_parameters
    order = _param_order(command.func_name)
    if order is None:
        return dict(params)
    ordered = {key: params[key] for key in order if key in params}
    if len(ordered) != len(params):
        for key, value in params.items():
            if key not in ordered:
                ordered[key] = value
    return ordered
