"""Volumes in the text's order: each vols list is the volume the text states next, or the one before again.

Grounded amounts (`pipelines.serve.amount_grounding`) keep every volume one the text states, but not the
right one of them. A small model's commonest volume error is a stated volume on the wrong step: a Dispense
that takes the Mix's volume written after it, an Aspirate that takes the tip size, or a list that mixes two
statements ([175, 175, 120, 120] for "各加入175ul, 随后混匀…各120ul") or repeats the first number of a run
([1, 1, 1] for "分别加入1ul、8ul、10ul"); see docs/results.md.

A volume statement is a run of numbers in microlitres that are not a tip size: "20ul", "175、180、75ul",
"12.5ul、5ul、45ul" (each item may carry the unit), "150ul and 400ul". A statement of one number gives a list
of that number; a run gives the list that is the run, in order. The plan writes its vols lists in the text's
order: the first one from the first statement, each later one from the statement the previous one came from
(a step that does not state its own volume) or the next one, never skipping a statement. So while a row
writes a vols list, the greedy processor (`pipelines.serve.constrained`) keeps it on the way to such a list
(`VolumeOrderRow`). A text without a volume statement leaves the lists to the other rules.

The rule holds for every gold plan of the generated corpus, the held-out families and the public examples:
there, every step with a volume even states its own (`tests/pipelines/serve/test_volume_order.py`).
"""

from __future__ import annotations

import re

from pipelines.model.plan_layout import list_opener_pattern
from pipelines.serve.stated_amounts import LIST_SEPARATOR, NUMBER_PATTERN, json_number, numbers_in, tip_size_spans
from pipelines.serve.statement_order import Statement, StatementOrderRow

_ITEM = rf"{NUMBER_PATTERN}(?:\s*ul)?"
# Numbers joined by list separators, the last one in microlitres (as canonicalization writes every volume).
_STATEMENT = re.compile(rf"{_ITEM}(?:{LIST_SEPARATOR}{_ITEM})*\s*ul", re.IGNORECASE)
_VOLS_LIST = re.compile(list_opener_pattern(["vols"]) + rb"([^\]]*)(\])?")


def volume_statements(description: str) -> list[Statement]:
    """The volumes a (normalized) description states, in order, tip sizes left out."""
    tips = tip_size_spans(description)
    return [
        tuple(json_number(number) for number in numbers_in(statement.group(0)))
        for statement in _STATEMENT.finditer(description)
        if not any(statement.start() <= start < statement.end() for start, _ in tips)
    ]


class VolumeOrderRow(StatementOrderRow):
    """One batch row's volume statements, and the bytes generated: a vols list gives the next statement or the
    last one again, and a statement of one number gives it on every channel."""

    __slots__ = ()

    def __init__(self, description: str) -> None:
        super().__init__(volume_statements(description), _VOLS_LIST, may_repeat=True, one_for_all=True)
