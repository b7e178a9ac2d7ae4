"""Wells in the text's order: the plan's k-th well list is the text's k-th well statement, and no list comes after
the last one.

Grounding keeps a well list to names the text has, but not to the right run of them. A small model's commonest
well errors are a list taken from the wrong step (an Aspirate that takes the Dispense's wells), a step that
repeats the previous step's wells where the text states new ones (a second Dispense), and a step the text does
not have, appended after the last statement (a Dispense after the final Aspirate, a second Mix); see
docs/results.md.

A well statement is a run of well names joined by list separators: "A1,B1,C1" (canonicalization writes a
range out), "B9 and C9", "E2、F2". The plan writes its wells, srcWells and dstWells lists in the text's order,
each one the next statement exactly, so while a row writes one the greedy processor keeps it on the way to that
statement (`WellOrderRow`); and once every statement has its list, no command with a well list may be named
(the gold plans have none there). A text without a well statement leaves the lists to the other rules.

Every gold plan of the generated corpus, the held-out families and the public examples writes exactly its text's
statements (`tests/pipelines/serve/test_well_order.py`).
"""

from __future__ import annotations

import functools
import re

from data_contracts.catalog import load_catalog
from pipelines.model.plan_layout import list_opener_pattern
from pipelines.serve.coverage import STANDALONE_WELL, command_name_in, command_names, name_leads_to
from pipelines.serve.grounding import WELL_LISTS
from pipelines.serve.stated_amounts import LIST_SEPARATOR
from pipelines.serve.statement_order import Statement, StatementOrderRow

# A run of well names joined by list separators: one well statement.
WELL_STATEMENT = re.compile(rf"{STANDALONE_WELL}(?:{LIST_SEPARATOR}{STANDALONE_WELL})*")
_WELL_ITEM = re.compile(STANDALONE_WELL)
# A wells, srcWells or dstWells list in plan JSON: its body, and its closing bracket once written.
WELL_LIST_JSON = re.compile(list_opener_pattern(WELL_LISTS) + rb"([^\]]*)(\])?")


def well_statements(description: str) -> list[Statement]:
    """The well lists a (normalized) description states, in order, each item as JSON writes it (b'"A1"')."""
    return [
        tuple(f'"{well}"'.encode() for well in _WELL_ITEM.findall(statement.group(0)))
        for statement in WELL_STATEMENT.finditer(description)
    ]


@functools.cache
def commands_with_wells() -> frozenset[str]:
    """The catalog's commands that have a well list."""
    return frozenset(name for name, spec in load_catalog().commands.items() if set(spec.params) & set(WELL_LISTS))


@functools.cache
def _names_without_wells() -> tuple[bytes, ...]:
    """The catalog's commands that have no well list, as JSON writes their names."""
    return command_names(commands_with_wells())


class WellOrderRow(StatementOrderRow):
    """One batch row's well statements, and the bytes generated: each well list is the next statement, and no
    command with one is named after the last."""

    __slots__ = ()

    def __init__(self, description: str) -> None:
        super().__init__(well_statements(description), WELL_LIST_JSON, may_repeat=False, one_for_all=False)

    def keeps_grounding(self, token: bytes) -> bool:
        if not super().keeps_grounding(token):
            return False
        written = command_name_in(self.generated, token) if self.statements else None
        if written is None or self.reached_after(self.closed_lists()) != {len(self.statements) - 1}:
            return True
        return name_leads_to(written, _names_without_wells())
