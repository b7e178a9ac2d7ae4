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
from collections.abc import Iterable, Sequence

from pipelines.serve.amount_grounding import LIST_SEPARATOR, json_number, tip_size_spans
from pipelines.serve.coverage import NUMBER_PATTERN

_NUMBER = re.compile(NUMBER_PATTERN)
_ITEM = rf"{NUMBER_PATTERN}(?:\s*ul)?"
# Numbers joined by list separators, the last one in microlitres (as canonicalization writes every volume).
_STATEMENT = re.compile(rf"{_ITEM}(?:{LIST_SEPARATOR}{_ITEM})*\s*ul", re.IGNORECASE)
_VOLS_LIST = re.compile(rb'"vols": \[([^\]]*)(\])?')

Statement = tuple[bytes, ...]  # the numbers of one volume statement, as canonical JSON writes them


def volume_statements(description: str) -> list[Statement]:
    """The volumes a (normalized) description states, in order, tip sizes left out."""
    tips = tip_size_spans(description)
    return [
        tuple(json_number(number) for number in _NUMBER.findall(statement.group(0)))
        for statement in _STATEMENT.finditer(description)
        if not any(statement.start() <= start < statement.end() for start, _ in tips)
    ]


def _fits(statement: Statement, items: Sequence[bytes], open_item: bytes | None) -> bool:
    """Whether vols items (`open_item`: the one still being written, None once the list is closed) are, or
    lead to, the list `statement` gives: its one number for every channel, or the run itself."""
    if len(statement) == 1:
        done = all(item == statement[0] for item in items)
        return done and (open_item is None or statement[0].startswith(open_item))
    if open_item is None:
        return tuple(items) == statement
    return (
        len(items) < len(statement)
        and tuple(items) == statement[: len(items)]
        and statement[len(items)].startswith(open_item)
    )


def _next_statements(reached: Iterable[int], count: int) -> set[int]:
    """The statements a vols list may come from after lists that came from `reached` (-1: no list yet)."""
    return {after for at in reached for after in (at, at + 1) if 0 <= after < count}


class VolumeOrderRow:
    """One batch row's volume statements, and the bytes generated."""

    __slots__ = ("statements", "generated", "_reached")

    def __init__(self, description: str) -> None:
        self.statements = volume_statements(description)
        self.generated = bytearray()
        # The statements the closed vols lists may have come from, by the lists' bodies.
        self._reached: dict[tuple[bytes, ...], frozenset[int]] = {}

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def keeps_grounding(self, token: bytes) -> bool:
        """Whether appending `token` keeps every vols list of the plan on a statement the order allows."""
        if not self.statements:
            return True
        lists = list(_VOLS_LIST.finditer(bytes(self.generated) + token))
        if not lists or lists[-1].end() <= len(self.generated) and lists[-1].group(2):
            return True  # no list yet, or the last one closed before this token
        *earlier, last = lists
        reached = self._reached_after([match.group(1) for match in earlier])
        if not reached:
            return True  # an earlier list left the order (when no token kept it, the grammar decided): no say
        items = [item.strip() for item in last.group(1).split(b",")]
        open_item = None if last.group(2) else items.pop()
        return any(
            _fits(self.statements[at], items, open_item) for at in _next_statements(reached, len(self.statements))
        )

    def _reached_after(self, closed: list[bytes]) -> frozenset[int]:
        key = tuple(closed)
        if key not in self._reached:
            reached: Iterable[int] = (-1,)
            for body in closed:
                items = [item.strip() for item in body.split(b",")]
                candidates = _next_statements(reached, len(self.statements))
                reached = [at for at in candidates if _fits(self.statements[at], items, None)]
            self._reached[key] = frozenset(reached)
        return self._reached[key]
