"""Check commands against every rule of the robot catalog; each problem is a structured ValidationIssue.

This is a hot path (the data stages validate every record), so it works on plain values with
lookup tables built once from the catalog, and allocates nothing for a valid command.
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from data_contracts.catalog import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    RPM_MAX,
    RPM_MIN,
    SECONDS_MIN,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    TIMES_MAX,
    TIMES_MIN,
    Catalog,
    load_catalog,
)
from data_contracts.commands import Command
from data_contracts.errors import CatalogViolation, ContractError

# Rule ids: short, stable, used as quarantine reasons (catalog_<rule>).
UNKNOWN_COMMAND = "unknown_command"
UNKNOWN_PARAMETER = "unknown_parameter"
MISSING_PARAMETER = "missing_parameter"
TYPE = "type"
EMPTY_LIST = "empty_list"
EMPTY_STRING = "empty_string"
INVALID_LABEL = "invalid_label"
CHANNEL_RANGE = "channel_range"
DUPLICATE_CHANNEL = "duplicate_channel"
INVALID_WELL = "invalid_well"
LENGTH_MISMATCH = "length_mismatch"
VOLUME_POSITIVE = "volume_positive"
TIP_CAPACITY = "tip_capacity"
TIP_TYPE = "tip_type"
RANGE = "range"
EMPTY_PLAN = "empty_plan"
UNGROUNDED_STRING = "ungrounded_string"
# No "no_tip" rule on purpose: a description may be a fragment whose tips were picked up earlier (example E002).

DROP_TIPS_COMMAND = "DropDiti"

# Parameter types whose value the catalog says is copied exactly as written in the description
# (labware, program, position; the free `str` type is liquidClass, a name the text states).
GROUNDED_TYPES = frozenset({"labware", "program", "position", "str"})


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    command_index: int | None  # 0-based position in the plan
    command: str | None
    field: str | None
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "command_index": self.command_index,
            "command": self.command,
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
        }


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to a readable length; hostile values can be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reporter:
    """Builds issues for one command; messages always name the index, the command and the field."""

    __slots__ = ("index", "name", "issues")

    def __init__(self, index: int, name: str, issues: list[ValidationIssue]) -> None:
        self.index, self.name, self.issues = index, name, issues

    def add(self, field: str | None, rule: str, detail: str) -> None:
        self.issues.append(
            ValidationIssue(self.index, self.name, field, rule, f"command {self.index} ({self.name}): {detail}")
        )

    def value(self, field: str, value: Any, rule: str, problem: str) -> None:
        self.add(field, rule, f"field '{field}'={_short(value)} {problem}")

    def element(self, field: str, position: int, value: Any, rule: str, problem: str) -> None:
        self.add(field, rule, f"field '{field}'[{position}]={_short(value)} {problem}")


# --- value predicates ----------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return (type(value) is int) or (type(value) is float and math.isfinite(value))


def _is_int(value: Any) -> bool:
    # A whole float (60.0) is accepted as an int: JSON does not distinguish them and the canonical form writes 60.
    return (type(value) is int) or (type(value) is float and value.is_integer())


# --- per-type checkers: check(value, field, reporter) ----------------------------------------

Checker = Callable[[Any, str, _Reporter], None]


def _is_nonempty_list(value: Any, field: str, report: _Reporter, items: str, at_least_one: str) -> bool:
    """Whether `value` is a non-empty list; otherwise reports "must be a list of <items>" or "must <at_least_one>"."""
    if type(value) is not list:
        report.value(field, value, TYPE, f"must be a list of {items}")
        return False
    if not value:
        report.value(field, value, EMPTY_LIST, f"must {at_least_one}")
        return False
    return True


def _check_channels(value: Any, field: str, report: _Reporter) -> None:
    if not _is_nonempty_list(value, field, report, "channel numbers", "name at least one channel"):
        return
    seen: set[Any] = set()
    for position, channel in enumerate(value):
        if not _is_int(channel):
            report.element(field, position, channel, TYPE, "must be an integer channel number")
        elif not CHANNEL_MIN <= channel <= CHANNEL_MAX:
            report.element(field, position, channel, CHANNEL_RANGE, f"is outside {CHANNEL_MIN}..{CHANNEL_MAX}")
        elif channel in seen:
            report.element(field, position, channel, DUPLICATE_CHANNEL, "repeats a channel named earlier")
        else:
            seen.add(channel)


def _make_wells_checker(well_names: frozenset[str], example: str) -> Checker:
    def check(value: Any, field: str, report: _Reporter) -> None:
        if not _is_nonempty_list(value, field, report, "well names", "name at least one well"):
            return
        for position, well in enumerate(value):
            if type(well) is not str:
                report.element(field, position, well, TYPE, "must be a well name string")
            elif well not in well_names:
                report.element(field, position, well, INVALID_WELL, f"is not a well name ({example})")

    return check


def _check_vols(value: Any, field: str, report: _Reporter) -> None:
    if not _is_nonempty_list(value, field, report, "volumes in microlitres", "hold at least one volume"):
        return
    for position, volume in enumerate(value):
        if not _is_number(volume):
            report.element(field, position, volume, TYPE, "must be a finite number of microlitres")
        elif volume <= 0:
            report.element(field, position, volume, VOLUME_POSITIVE, "must be greater than 0")


def _make_tip_type_checker(tip_types: Mapping[str, int]) -> Checker:
    known = ", ".join(tip_types)

    def check(value: Any, field: str, report: _Reporter) -> None:
        if type(value) is not str:
            report.value(field, value, TYPE, f"must be a tip type string ({known})")
        elif value not in tip_types:
            report.value(field, value, TIP_TYPE, f"is not a tip type ({known})")

    return check


_LABEL_FORBIDDEN = frozenset("'\"`\\")
# Control, format, surrogate, private-use and unassigned characters, and line/paragraph separators.
_LABEL_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _is_plain_label(value: str) -> bool:
    if any(char in _LABEL_FORBIDDEN for char in value):
        return False
    # isprintable() is the fast answer; it also rejects non-ASCII spaces (U+3000), which labels may hold.
    return value.isprintable() or not any(
        unicodedata.category(char) in _LABEL_FORBIDDEN_CATEGORIES for char in value
    )


def _check_label(value: Any, field: str, report: _Reporter) -> None:
    if type(value) is not str:
        report.value(field, value, TYPE, "must be a string")
    elif not value.strip():
        report.value(field, value, EMPTY_STRING, "must not be empty")
    elif not _is_plain_label(value):
        # A line break, control character or quote in a label is never lab text; it breaks robot scripts.
        report.value(
            field, value, INVALID_LABEL, "must be plain text without line breaks, control characters or quotes"
        )


def _make_int_range_checker(low: int, high: int | None, unit: str) -> Checker:
    bounds = f">= {low}" if high is None else f"within {low}..{high}"

    def check(value: Any, field: str, report: _Reporter) -> None:
        if not _is_int(value):
            report.value(field, value, TYPE, f"must be an integer ({unit})")
        elif value < low or (high is not None and value > high):
            report.value(field, value, RANGE, f"must be {bounds} {unit}")

    return check


def _check_temperature(value: Any, field: str, report: _Reporter) -> None:
    if not _is_number(value):
        report.value(field, value, TYPE, "must be a finite number of degrees Celsius")
    elif not TEMPERATURE_MIN <= value <= TEMPERATURE_MAX:
        report.value(field, value, RANGE, f"must be within {TEMPERATURE_MIN}..{TEMPERATURE_MAX} degrees Celsius")


@dataclass(frozen=True)
class _CommandRules:
    name: str
    checkers: dict[str, Checker]  # every known parameter, in catalog order
    required: tuple[str, ...]
    per_channel: tuple[str, ...]  # list parameters with one element per channel
    picks_tips: str | None  # the tip-type parameter of a tip pickup
    drops_tips: bool
    volume_param: str | None  # parameter checked against tip capacity
    grounded: tuple[str, ...]  # label parameters whose value must occur verbatim in the description


@dataclass(frozen=True)
class _Rules:
    commands: dict[str, _CommandRules]
    tip_capacity: dict[str, int]


def _build_rules(catalog: Catalog) -> _Rules:
    rows, columns = catalog.plate_rows, catalog.plate_columns
    type_checkers: dict[str, Checker] = {
        "channels": _check_channels,
        "wells": _make_wells_checker(catalog.well_names, f"{rows[0]}1..{rows[-1]}{columns}"),
        "vols": _check_vols,
        "tip_type": _make_tip_type_checker(catalog.tip_types),
        "labware": _check_label,
        "program": _check_label,
        "position": _check_label,
        "str": _check_label,
        "seconds": _make_int_range_checker(SECONDS_MIN, None, "seconds"),
        "temperature": _check_temperature,
        "rpm": _make_int_range_checker(RPM_MIN, RPM_MAX, "rpm"),
        "times": _make_int_range_checker(TIMES_MIN, TIMES_MAX, "cycles"),
    }
    commands = {}
    for name, spec in catalog.commands.items():
        unknown_types = {p.type for p in spec.params.values()} - set(type_checkers)
        if unknown_types:
            raise ContractError(
                f"catalog command {name} uses parameter types with no checker: {sorted(unknown_types)}"
            )
        types = {param: p.type for param, p in spec.params.items()}
        has_channels = "channels" in types
        volume_params = [p for p, t in types.items() if t == "vols"]
        commands[name] = _CommandRules(
            name=name,
            checkers={param: type_checkers[t] for param, t in types.items()},
            required=spec.required_params,
            per_channel=tuple(p for p, t in types.items() if has_channels and t in ("wells", "vols")),
            picks_tips=next((p for p, t in types.items() if t == "tip_type"), None) if has_channels else None,
            drops_tips=name == DROP_TIPS_COMMAND,
            volume_param=volume_params[0] if has_channels and volume_params else None,
            grounded=tuple(p for p, t in types.items() if t in GROUNDED_TYPES),
        )
    return _Rules(commands=commands, tip_capacity=dict(catalog.tip_types))


_RULES: _Rules | None = None


def _rules() -> _Rules:
    global _RULES
    if _RULES is None:
        _RULES = _build_rules(load_catalog())
    return _RULES


# --- validation ------------------------------------------------------------------------------


def grounded_label_fields() -> tuple[str, ...]:
    """Every parameter whose value must be copied verbatim from the description, in catalog order."""
    fields: dict[str, None] = {}
    for spec in _rules().commands.values():
        fields.update(dict.fromkeys(spec.grounded))
    return tuple(fields)


def validate_commands(
    commands: Iterable[Command | Mapping[str, Any]], description: str | None = None
) -> list[ValidationIssue]:
    """Every catalog violation in one description's commands, in command order; [] means valid.

    Accepts Command objects or JSON-form dicts ({"func_name": ..., "func_parameters": {...}}).
    Tip capacity is tracked across the commands: the last GetDiti on a channel sets its capacity,
    DropDiti clears it. With `description` (the text the plan was made from, as the model saw it:
    `pipelines.model.prompts.serving_user_message`), every label (labware, program, position, liquidClass)
    must also occur in it verbatim: the catalog copies labels "exactly as written", so a label the
    text does not contain was invented (rule `ungrounded_string`).
    """
    rules = _rules()
    issues: list[ValidationIssue] = []
    tips: dict[int, str] = {}  # channel -> tip type currently mounted (as far as this description says)
    count = 0
    for index, command in enumerate(commands):
        count += 1
        if isinstance(command, Command):
            name, params = command.func_name, command.func_parameters
        elif isinstance(command, Mapping):
            name, params = command.get("func_name"), command.get("func_parameters")
        else:
            issues.append(
                ValidationIssue(index, None, None, TYPE, f"command {index}: {_short(command)} is not a command")
            )
            continue
        spec = rules.commands.get(name) if type(name) is str else None
        if spec is None:
            issues.append(_unknown_command(index, name, rules))
            continue
        report = _Reporter(index, name, issues)
        if not isinstance(params, Mapping):
            report.add("func_parameters", TYPE, f"parameters {_short(params)} must be a mapping of name to value")
            continue
        _check_command(spec, params, report)
        if description is not None:
            _check_grounding(spec, params, description, report)
        _track_tips(spec, params, tips, rules.tip_capacity, report)
    if count == 0:
        issues.append(ValidationIssue(None, None, None, EMPTY_PLAN, "the plan has no commands"))
    return issues


def _unknown_command(index: int, name: Any, rules: _Rules) -> ValidationIssue:
    known = list(rules.commands)
    detail = f"unknown command {_short(name)}"
    if type(name) is str:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            detail += f" (did you mean {close[0]}?)"
    detail += f"; the catalog has {', '.join(known)}"
    label = name if type(name) is str else _short(name)
    return ValidationIssue(index, label, None, UNKNOWN_COMMAND, f"command {index} ({label}): {detail}")


def _check_command(spec: _CommandRules, params: Mapping[str, Any], report: _Reporter) -> None:
    checkers = spec.checkers
    for param, value in params.items():
        checker = checkers.get(param)
        if checker is None:
            report.add(
                param if type(param) is str else _short(param),
                UNKNOWN_PARAMETER,
                f"unknown parameter {_short(param)}; {spec.name} takes {', '.join(checkers)}",
            )
        else:
            checker(value, param, report)
    for param in spec.required:
        if param not in params:
            report.add(param, MISSING_PARAMETER, f"missing required parameter '{param}'")
    if spec.per_channel:
        channels = params.get("channels")
        if type(channels) is list:
            for param in spec.per_channel:
                value = params.get(param)
                if type(value) is list and len(value) != len(channels):
                    report.add(
                        param,
                        LENGTH_MISMATCH,
                        f"field '{param}' has {len(value)} items but 'channels' has {len(channels)}; "
                        "one per channel is required",
                    )


def _check_grounding(spec: _CommandRules, params: Mapping[str, Any], description: str, report: _Reporter) -> None:
    for param in spec.grounded:
        value = params.get(param)
        # Non-strings and blank labels already have their own issue (type, empty_string).
        if type(value) is str and value.strip() and value not in description:
            report.value(
                param,
                value,
                UNGROUNDED_STRING,
                "does not occur in the description; labels are copied exactly as written",
            )


def _track_tips(
    spec: _CommandRules,
    params: Mapping[str, Any],
    tips: dict[int, str],
    capacity: Mapping[str, int],
    report: _Reporter,
) -> None:
    channels = params.get("channels")
    if type(channels) is not list:
        return
    if spec.picks_tips is not None:
        tip_type = params.get(spec.picks_tips)
        if type(tip_type) is str and tip_type in capacity:
            for channel in channels:
                if _is_int(channel):
                    tips[int(channel)] = tip_type
        return
    if spec.drops_tips:
        for channel in channels:
            if _is_int(channel):
                tips.pop(int(channel), None)
        return
    if spec.volume_param is None or not tips:
        return
    volumes = params.get(spec.volume_param)
    if type(volumes) is not list:
        return
    for position, (channel, volume) in enumerate(zip(channels, volumes, strict=False)):
        if not _is_int(channel) or not _is_number(volume):
            continue
        tip_type = tips.get(int(channel))
        if tip_type is not None and volume > capacity[tip_type]:
            report.element(
                spec.volume_param,
                position,
                volume,
                TIP_CAPACITY,
                f"exceeds the {tip_type} tip on channel {channel}",
            )


def ensure_valid(commands: Iterable[Command | Mapping[str, Any]], description: str | None = None) -> None:
    """Raise CatalogViolation listing every issue unless the commands are valid.

    With `description`, labels must also be grounded in it (see `validate_commands`).
    """
    issues = validate_commands(commands, description)
    if issues:
        raise CatalogViolation(issues)
