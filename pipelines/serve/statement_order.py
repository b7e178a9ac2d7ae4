"""Lists in the text's order: each list a plan writes is the one the text states next (the machinery).

A description states some values as runs ("175、180、75ul", "A1,B1,C1"), and a gold plan writes them as lists
in the order the text states them. `StatementOrderRow` keeps every list of one kind (vols, well lists) on the
way to the statement the order allows while a greedy row writes it; `pipelines.serve.volume_order` and
`pipelines.serve.well_order` say what a statement is and how a list may follow it.

Items are compared as canonical JSON writes them (b"12.5", b'"A1"'), so a token that ends inside an item only has
to be a prefix of the next item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Statement = tuple[bytes, ...]  # the items of one statement, as canonical JSON writes them


def statement_fits(statement: Statement, items: Sequence[bytes], open_item: bytes | None, one_for_all: bool) -> bool:
    """Whether list items (`open_item`: the one still being written, None once the list is closed) are, or lead
    to, the list `statement` gives: the run itself, or (`one_for_all`, a statement of one item) that item for
    every channel."""
    if one_for_all and len(statement) == 1:
        done = all(item == statement[0] for item in items)
        return done and (open_item is None or statement[0].startswith(open_item))
    if open_item is None:
        return tuple(items) == statement
    return (
        len(items) < len(statement)
        and tuple(items) == statement[: len(items)]
        and statement[len(items)].startswith(open_item)
    )


def _items(body: bytes) -> list[bytes]:
    """A list body's items as written, the last one possibly still open."""
    return [item.strip() for item in body.split(b",")]


class StatementOrderRow:
    """One batch row's statements of one kind, and the bytes generated.

    `list_pattern` finds the plan's lists of that kind: group 1 is the body, group 2 the closing bracket.
    `may_repeat`: a list may give the statement the previous one gave again (a step that states no value of its
    own) as well as the next one; otherwise each list gives the next statement, in turn.
    """

    __slots__ = ("statements", "generated", "_list_pattern", "_may_repeat", "_one_for_all", "_reached")

    def __init__(
        self, statements: list[Statement], list_pattern: re.Pattern[bytes], *, may_repeat: bool, one_for_all: bool
    ) -> None:
        self.statements = statements
        self.generated = bytearray()
        self._list_pattern = list_pattern
        self._may_repeat = may_repeat
        self._one_for_all = one_for_all
        # The statements the closed lists may have come from, by the lists' bodies.
        self._reached: dict[tuple[bytes, ...], frozenset[int]] = {}

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def keeps_grounding(self, token: bytes) -> bool:
        """Whether appending `token` keeps every list of the plan on a statement the order allows."""
        if not self.statements:
            return True
        lists = list(self._list_pattern.finditer(bytes(self.generated) + token))
        if not lists or lists[-1].end() <= len(self.generated) and lists[-1].group(2):
            return True  # no list yet, or the last one closed before this token
        *earlier, last = lists
        reached = self.reached_after([match.group(1) for match in earlier])
        if not reached:
            return True  # an earlier list left the order (when no token kept it, the grammar decided): no say
        items = _items(last.group(1))
        open_item = None if last.group(2) else items.pop()
        return any(
            statement_fits(self.statements[at], items, open_item, self._one_for_all) for at in self._next(reached)
        )

    def closed_lists(self) -> list[bytes]:
        """The bodies of the lists the plan has closed so far."""
        return [match.group(1) for match in self._list_pattern.finditer(bytes(self.generated)) if match.group(2)]

    def reached_after(self, closed: list[bytes]) -> frozenset[int]:
        """The statements the last of `closed` list bodies may have come from ({-1}: no list yet; empty: a list
        left the order)."""
        key = tuple(closed)
        if key not in self._reached:
            reached: Iterable[int] = (-1,)
            for body in closed:
                reached = [at for at in self._next(reached)
                           if statement_fits(self.statements[at], _items(body), None, self._one_for_all)]
            self._reached[key] = frozenset(reached)
        return self._reached[key]

    def _next(self, reached: Iterable[int]) -> set[int]:
        """The statements a list may come from after lists that came from `reached`."""
        steps = (0, 1) if self._may_repeat else (1,)
        return {at + step for at in reached for step in steps if 0 <= at + step < len(self.statements)}
