"""Liquid classes: a class the text names goes on the Aspirate or Dispense it names it for, and on no other.

The catalog's `liquidClass` is optional, "only when the text names one". A text names one with a marker next
to a step, ahead of it ("液体类型X:", "使用液体类X,", "liquid class X:", "[X]") or behind it ("(液体类X)",
"液体类别为X", "using liquid class X", "(liquid class X)"). A colon after the name, 使用 before it, or square
brackets make it head the step after it; otherwise it trails the step before it. The step is the command whose
wells are written next to the marker: the first run of well names after a leading marker, the last one before a
trailing marker (the other side when that side has none). Canonicalization writes every range out, so the run
is the command's own wells list; when the text writes the same run several times, the k-th run is the k-th
command that uses that list.

A small model seldom writes this rare optional field, and a command-level rule cannot add it: once the model
closes the parameters, no later command can take the class. So while a row writes an Aspirate or a Dispense,
the greedy processor (`pipelines.serve.constrained`) makes its parameters end on the class the text names for
it, written exactly, or on none (`LiquidClassRow`). A text without a marker leaves the field to the model.
The rule holds for every gold plan of the generated corpus, the held-out families and the public examples
(`tests/pipelines/serve/test_liquid_class.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.model.plan_layout import ITEM_SEPARATOR, key_opener, list_opener_pattern, string_opener
from pipelines.serve.coverage import COMMAND_OPENER, WELL_NAME, complete_commands
from pipelines.serve.grounding import WELL_LISTS

_WELL_NAME = re.compile(WELL_NAME)
# A run of well names written together: "A1,B1,C1", "B2, C2 and D2", "F6/G6", "C4、D4".
_WELL_RUN = re.compile(
    rf"(?<![A-Za-z0-9_]){WELL_NAME}(?:\s*(?:,|、|/|and|和|与|及)\s*{WELL_NAME})*(?![A-Za-z0-9_])"
)


def _class_name(group: str) -> str:
    """An ASCII name that is not a well name, as the named group `group`."""
    return rf"(?P<{group}>(?!{WELL_NAME}(?![A-Za-z0-9_]))[A-Za-z][A-Za-z0-9_]*)"


# A colon after the name, 使用 before it, or brackets around it: the marker heads the step after it.
_MARKER = re.compile(
    rf"(?P<lead>使用)?液体类[型别]?为?\s*{_class_name('zh')}\s*(?P<zh_colon>:)?"
    rf"|liquid\s+class\s+{_class_name('en')}\s*(?P<en_colon>:)?"
    rf"|\[\s*{_class_name('bracketed')}\s*\]",
    re.IGNORECASE,
)
_HEADS_NEXT = ("lead", "zh_colon", "en_colon", "bracketed")
_COMMANDS_WITH_CLASS = (b"Aspirate", b"Dispense")
_PARAMS_OPENER = key_opener("func_parameters") + b"{"
_VOLS_LIST = re.compile(list_opener_pattern(["vols"]) + rb"[^\]]*\]")
_WELLS_LIST = re.compile(list_opener_pattern(["wells"]) + rb"([^\]]*)\]")
_CLASS_OPENER = ITEM_SEPARATOR.encode() + string_opener("liquidClass")  # `,"liquidClass":"` after the last field


@dataclass(frozen=True)
class LiquidClassMark:
    """A class the text names, and the command it names it for: the `occurrence`-th (from 0) command of the
    plan that writes the list `wells`."""

    name: str
    wells: tuple[str, ...]
    occurrence: int


def liquid_class_marks(description: str) -> list[LiquidClassMark]:
    """The liquid classes a (normalized) description names, each with the command it goes on."""
    runs = [
        (run.start(), run.end(), tuple(_WELL_NAME.findall(run.group(0)))) for run in _WELL_RUN.finditer(description)
    ]
    marks = []
    for marker in _MARKER.finditer(description):
        heads_next = any(marker.group(group) for group in _HEADS_NEXT)
        after = [run for run in runs if run[0] >= marker.end()][:1]
        before = [run for run in runs if run[1] <= marker.start()][-1:]
        chosen = (after or before) if heads_next else (before or after)
        if not chosen:
            continue
        start, _, wells = chosen[0]
        occurrence = sum(1 for run in runs if run[2] == wells and run[0] < start)
        name = marker.group("zh") or marker.group("en") or marker.group("bracketed")
        marks.append(LiquidClassMark(name, wells, occurrence))
    return marks


def liquid_class_for(
    marks: Sequence[LiquidClassMark], earlier: Sequence[Mapping[str, Any]], wells: Sequence[str]
) -> str | None:
    """The class an Aspirate or Dispense writing `wells` after the commands `earlier` goes with, if any."""
    wells = tuple(wells)
    uses = sum(
        1 for command in earlier for field in WELL_LISTS
        if tuple(command.get("func_parameters", {}).get(field) or ()) == wells
    )
    return next((mark.name for mark in marks if mark.wells == wells and mark.occurrence == uses), None)


class LiquidClassRow:
    """One batch row's liquid classes: what its description names, and the bytes generated."""

    __slots__ = ("marks", "generated")

    def __init__(self, description: str) -> None:
        self.marks = liquid_class_marks(description)
        self.generated = bytearray()

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def keeps_grounding(self, token: bytes) -> bool:
        """Whether appending `token` keeps an Aspirate's or Dispense's parameters, once its volumes are written
        (the catalog's order puts liquidClass last), on the way to the class the text names for it or to none."""
        if not self.marks:
            return True
        text = bytes(self.generated) + token
        command_at = text.rfind(COMMAND_OPENER)
        params_at = text.find(_PARAMS_OPENER, command_at)
        if command_at < 0 or params_at < 0:
            return True
        name = text[command_at + len(COMMAND_OPENER) : params_at]
        if not name.startswith(_COMMANDS_WITH_CLASS):
            return True
        params = text[params_at + len(_PARAMS_OPENER) - 1 :]
        vols = _VOLS_LIST.search(params)
        wells = _WELLS_LIST.search(params)
        if vols is None or wells is None:
            return True
        tail = params[vols.end() :]
        owned = self._owned(command_at, wells.group(1))
        expected = b"}" if owned is None else _CLASS_OPENER + owned.encode() + b'"}'
        return tail.startswith(expected) or expected.startswith(tail)

    def _owned(self, command_at: int, wells_json: bytes) -> str | None:
        try:
            earlier = complete_commands(bytes(self.generated[:command_at]).decode("utf-8", "replace"))
        except (ValueError, TypeError, KeyError):
            earlier = []
        wells = [well.strip().strip('"') for well in wells_json.decode("utf-8", "replace").split(",")]
        return liquid_class_for(self.marks, earlier, wells)
