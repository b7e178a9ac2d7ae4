"""Coverage-guided decoding: a plan accounts for every value its description states, and restates none.

After canonicalization (`pipelines.data.canonicalize`), every amount a description states is written the way
a command writes it: "150ul" for vols=[150], "300s" for seconds=300, "A1,B1,C1" for a well list. So the
numbers, well names and ASCII labels ("Deck_4", "Plate2") of a description are values the plan must use, and
each word for tips ("枪头", "tips") is one GetDiti or DropDiti. A small model's commonest errors show up as a
mismatch between the two (docs/results.md, "Coverage-guided decoding"):

- it stops early, leaving a stated value unused (a value the text states twice counts twice) or an asked tip
  drop out. While one is missing, `CoverageRow` keeps the commands array open: the processor picks the best
  token the grammar allows that does not close it. A forced plan is kept only if it closes with fewer values
  missing; otherwise forcing stops and the plan the model closed comes back (`CoverageRow.settle`), as it does
  when the forced plan breaks the catalog: a value the model cannot place costs decoding time, not a worse plan;
- it drops its tips, or takes the same tips again, where the text has no word for it, takes tips where the text
  drops them, or drops them before the steps the text writes ahead of that word. `CoverageRow.allows` lets a
  command be named GetDiti or DropDiti only while the plan has fewer tip commands than the text has words for
  tips, GetDiti only for a word with a tip size before it and DropDiti only for one without, and DropDiti only
  once the plan uses every well name, ASCII label and amount stated before the word for tips it reads;
- it goes on after the text is done, appending a command it has seen often (a Mix after a Dispense, a
  DropDiti nobody asked for). `trim_unstated_tail` cuts the first command that states nothing new, and all
  after it. "Nothing new" counts occurrences by role: "4" stated twice ("channels 1,2,3,4", "4 times") is new
  again in Mix.times after GetDiti.channels; a new label is new too (MoveLabware and PCR name only labels).
  A DropDiti names no value: it is kept while the plan has fewer tip commands than the text has words for
  tips, and left out beyond that.

Once a plan uses every value as often as its text states it and every word for tips (no gold plan goes on from
there), or its last command is such a tail, the row is done (`CoverageRow.done`): the processor ends it with
the stop token, and the output is the plan as it stood then. What the model would write next is cut anyway,
and a row that goes on holds its whole batch until the token budget runs out.

Every rule holds for every gold plan of the generated corpus, the held-out families and the public examples
(`tests/pipelines/serve/test_coverage.py` checks them); they read only numbers, well names, ASCII labels and
words for tips, whatever the phrasing.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts.catalog import load_catalog
from data_contracts.validation import grounded_label_fields, validate_commands
from pipelines.model.plan_layout import render_plan, string_opener
from pipelines.serve.stated_amounts import (
    numbers_in,
    stated_numbers_by_field,
    tip_mention_starts,
    tip_mentions,
    tip_sizes,
)

WELL_NAME = r"[A-H](?:1[0-2]|[1-9])"
# A well name on its own, not inside an ASCII name ("PlateB3", "Deck_A1").
STANDALONE_WELL = rf"(?<![A-Za-z0-9_]){WELL_NAME}(?![A-Za-z0-9_])"
_WELL = re.compile(STANDALONE_WELL)
# "3、" opening a line numbers the step (the normalizer strips the other step prefixes); "2、4号通道" lists channels.
_LINE_NUMBERING = re.compile(r"(?m)^\d+、(?!\d)")
_DITI_TYPE = re.compile(r"(\d+(?:\.\d+)?)ul")
# An ASCII name that no sentence word looks like: joined by "_" ("Deck_4", "HotStart_30x") or letters then digits
# ("Plate2", "P3"), and not a well name. Chinese names have no such shape, so they are not counted.
_LABEL = re.compile(
    rf"(?<![A-Za-z0-9_])(?!{WELL_NAME}(?![A-Za-z0-9_]))"
    r"([A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[A-Za-z]+[0-9]+)(?![A-Za-z0-9_])"
)
_TIP_STEP = re.compile(r'"(?:Get|Drop)Diti"')
_JSON_KEY = re.compile(r'"[A-Za-z_]+":')
_TIP_COMMANDS = ("GetDiti", "DropDiti")
# What plan JSON (in the model's layout) writes before a command's name, and before the command itself.
NAME_OPENER = string_opener("func_name")
COMMAND_OPENER = b"{" + NAME_OPENER
# Enough bytes for the opener and the longest command name.
_NAME_LOOKBACK = 48

Value = float | str  # a number, a well name or an ASCII label


def _values_in(text: str) -> list[Value]:
    numbers: list[Value] = [float(number) for number in numbers_in(text)]
    return numbers + _WELL.findall(text) + _LABEL.findall(text)


def stated_values(description: str) -> Counter[Value]:
    """The numbers, well names and ASCII labels of a (normalized) description, with how often it states each."""
    return Counter(_values_in(_LINE_NUMBERING.sub("", description)))


def written_counts(plan_text: str) -> Counter[Value]:
    """The numbers, well names and ASCII labels in (partial) plan JSON (list items, numbers, "200ul" tip types),
    with how often it writes each."""
    return Counter(_values_in(_JSON_KEY.sub(" ", plan_text)))


def written_values(plan_text: str) -> set[Value]:
    """The values of `written_counts`."""
    return set(written_counts(plan_text))


def tip_steps(plan_text: str) -> int:
    """How many GetDiti and DropDiti commands (partial) plan JSON has."""
    return len(_TIP_STEP.findall(plan_text))


def command_name_in(generated: bytes | bytearray, token: bytes) -> tuple[bytes, bool] | None:
    """The command name `token` writes part of, given the bytes `generated` before it: (the name up to the token's
    end, whether the token ends it), or None when the token writes no name."""
    text = bytes(generated[-_NAME_LOOKBACK:]) + token
    opener = text.rfind(NAME_OPENER)
    if opener < 0:
        return None
    name_start = opener + len(NAME_OPENER)
    name_end = text.find(b'"', name_start)
    if name_end >= 0 and name_end < len(text) - len(token):
        return None  # named before this token
    return (text[name_start:], False) if name_end < 0 else (text[name_start:name_end], True)


def name_leads_to(written: tuple[bytes, bool], names: Sequence[bytes]) -> bool:
    """Whether a name being written (`command_name_in`) is, or may still become, one of `names`."""
    name, complete = written
    return any(candidate == name or (not complete and candidate.startswith(name)) for candidate in names)


class _JsonCursor:
    """Where a JSON text stands after some bytes: nesting depth, and whether inside a string.

    Bytes, not characters: a token may end inside a CJK character, and no byte of a multi-byte UTF-8
    character is a bracket or a quote.
    """

    __slots__ = ("depth", "in_string", "escaped")

    def __init__(self, depth: int = 0, in_string: bool = False, escaped: bool = False) -> None:
        self.depth, self.in_string, self.escaped = depth, in_string, escaped

    def copy(self) -> _JsonCursor:
        return _JsonCursor(self.depth, self.in_string, self.escaped)

    def advance(self, data: bytes) -> Iterator[tuple[int, int, int]]:
        """Walk `data`; yields (offset after it, the bracket, depth after it) for each closing bracket outside
        strings."""
        for offset, byte in enumerate(data, start=1):
            if self.in_string:
                self.escaped, self.in_string = (False, True) if self.escaped else (byte == 0x5C, byte != 0x22)
            elif byte == 0x22:
                self.in_string = True
            elif byte in b"[{":
                self.depth += 1
            elif byte in b"]}":
                self.depth -= 1
                yield offset, byte, self.depth


# `{"commands": [` opens depth 2: a command object closes back to 2, the commands array to 1.
_IN_COMMANDS = 2
_CLOSE_LIST, _CLOSE_OBJECT = ord("]"), ord("}")


class CoverageRow:
    """One batch row's coverage while it decodes: the stated values, where the JSON stands, the plan the model
    itself closed before the last forcing, and whether the plan is done and must close now."""

    __slots__ = ("description", "stated_counts", "tips", "stated_before_tips", "tip_sized", "generated", "cursor",
                 "plan_before_forcing", "missing_while_forced", "done_plan")

    def __init__(self, description: str) -> None:
        self.description = description
        self.stated_counts = stated_values(description)
        self.tips = tip_mentions(description)
        # For each word for tips: the well names, ASCII labels and amounts stated before it (read once, not on
        # every token that names a command).
        self.stated_before_tips = [_stated_before(description[:start]) for start in tip_mention_starts(description)]
        self.tip_sized = [size is not None for size in tip_sizes(description)]
        self.generated = bytearray()
        self.cursor = _JsonCursor()
        self.plan_before_forcing: str | None = None
        self.missing_while_forced = 0  # values the forced plan missed when its last command closed
        self.done_plan: str | None = None  # the plan, closed, once coverage found it done

    def accept_bytes(self, token: bytes) -> None:
        start = len(self.generated)
        self.generated += token
        for offset, bracket, depth in self.cursor.advance(token):
            if bracket == _CLOSE_OBJECT and depth == _IN_COMMANDS and self.done_plan is None:
                self._command_closed((bytes(self.generated[: start + offset]) + b"]}").decode("utf-8", "replace"))

    def _command_closed(self, plan_text: str) -> None:
        """The plan is done once it uses every stated value as often as the text states it (no gold plan goes on
        from there), its last command is a tail to cut, or a forced command used no missing value: going on
        only costs decoding time, as the output would drop what follows."""
        try:
            commands = json.loads(plan_text)["commands"]
            reading = _read_plan(self.stated_counts, self.tips, commands)
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        done = reading.complete or reading.tail_at < len(commands)
        if self.plan_before_forcing is not None:
            missing = self.missing(plan_text)
            done = done or missing >= self.missing_while_forced
            self.missing_while_forced = missing
        if done:
            self.done_plan = plan_text

    def allows(self, token: bytes) -> bool:
        """Whether the token keeps the command name it writes (if any) one the text leaves room for here: a
        GetDiti or DropDiti only while the plan has fewer than the text has words for tips; for the word it
        reads, a GetDiti only where a tip size comes before it ("取200ul枪头": a pick-up must state its tips, the
        catalog has no default) and a DropDiti only where none does ("弃枪头"); and a DropDiti only once the plan
        uses every well name, ASCII label and amount ("175ul", "3次") the text states before that word (no gold
        plan drops its tips before the steps the text writes ahead of it). A pick-up is not held back so: a text
        may name its tips after the step that uses them ("吸取50ul(10ul枪头)")."""
        written = command_name_in(self.generated, token)
        return written is None or name_leads_to(written, command_names(self._tip_steps_held_back()))

    def _tip_steps_held_back(self) -> frozenset[str]:
        """The tip commands that may not come next (`allows`)."""
        written = self.generated.decode("utf-8", "replace")
        step = tip_steps(written)
        if step >= self.tips:
            return frozenset(_TIP_COMMANDS)
        held = {"DropDiti"} if self.tip_sized[step] else {"GetDiti"}
        if not self.stated_before_tips[step] <= written_values(written):
            held.add("DropDiti")
        return frozenset(held)

    @property
    def forcing(self) -> bool:
        """Whether coverage has kept the plan open past a close the model picked (`must_stay_open`)."""
        return self.plan_before_forcing is not None

    def names_command(self, token: bytes) -> bool:
        """Whether the token writes (part of) a command name."""
        return command_name_in(self.generated, token) is not None

    @property
    def done(self) -> bool:
        """Whether the plan is done: decoding may stop, and `settle` returns the plan as it stood then."""
        return self.done_plan is not None

    def closes_plan(self, token: bytes) -> bool:
        """Whether the token closes the commands array."""
        return self._plan_end(self.cursor.copy(), token) is not None

    def missing(self, plan_text: str) -> int:
        """How many statements of values the plan does not write (a value the text states twice, written once,
        misses one), plus the tip pick-ups and drops the text names that it lacks."""
        written = written_counts(plan_text)
        unwritten = sum(max(0, count - written[value]) for value, count in self.stated_counts.items())
        return unwritten + max(0, self.tips - tip_steps(plan_text))

    def must_stay_open(self, closing_token: bytes) -> bool:
        """Whether closing the plan with `closing_token` would leave a stated value unused, and forcing still helps.

        Call only when the model's pick closes the plan: the plan it closes is kept for `settle`, and a forced
        continuation starts here.
        """
        end = self._plan_end(self.cursor.copy(), closing_token)
        own_plan = (bytes(self.generated) + closing_token[:end] + b"}").decode("utf-8", "replace")
        if self.missing(own_plan) == 0:
            return False
        if self.plan_before_forcing is not None and not self._beats(own_plan, self.plan_before_forcing):
            return False
        self.plan_before_forcing = own_plan
        self.missing_while_forced = self.missing(own_plan)
        return True

    def settle(self, plan_text: str) -> str:
        """The plan to return, its unstated tail cut (`trim_plan_text`): `plan_text` (or the plan as it stood when
        the row was done), or the model's own plan from before the last forcing when that forcing did not pay off."""
        plan_text = trim_plan_text(self.description, self.done_plan or plan_text)
        if self.plan_before_forcing is None:
            return plan_text
        before_forcing = trim_plan_text(self.description, self.plan_before_forcing)
        return plan_text if self._beats(plan_text, before_forcing) else before_forcing

    def _beats(self, plan_text: str, before_forcing: str) -> bool:
        """Whether a plan written after forcing beats the one before it: it parses (was not cut off), passes the
        catalog, and misses fewer stated values."""
        try:
            issues = validate_commands(json.loads(plan_text)["commands"], self.description)
        except (ValueError, TypeError, KeyError):
            return False
        return not issues and self.missing(plan_text) < self.missing(before_forcing)

    @staticmethod
    def _plan_end(cursor: _JsonCursor, token: bytes) -> int | None:
        """The offset in `token` just after the bracket that closes the commands array, if it holds one."""
        return next((offset for offset, bracket, depth in cursor.advance(token)
                     if bracket == _CLOSE_LIST and depth == _IN_COMMANDS - 1), None)


def _stated_before(ahead: str) -> set[Value]:
    """The well names, ASCII labels and amounts with their units of the text ahead of a word for tips: what a
    plan uses before it drops its tips there."""
    values: set[Value] = {value for value in stated_values(ahead) if isinstance(value, str)}
    return values | {float(n) for numbers in stated_numbers_by_field(ahead).values() for n in numbers}


def _roles(command: Mapping[str, Any]) -> Counter[tuple[Value, str]]:
    """The (value, command.field) pairs of a command, each with how often the field uses the value: "4" in
    GetDiti.channels and in Mix.times are two roles. A list of one value for every channel ("各45ul") uses it
    once; a list of several uses each item as often as it holds it ("100/250/750/100ul": 100 twice)."""
    roles: Counter[tuple[Value, str]] = Counter()
    for field, value in command["func_parameters"].items():
        role = f"{command['func_name']}.{field}"
        items = value if isinstance(value, list) else [value]
        for item in items[:1] if len(set(map(str, items))) == 1 else items:
            if isinstance(item, bool):
                continue
            if isinstance(item, (int, float)):
                roles[float(item), role] += 1
            elif isinstance(item, str) and any(shape.fullmatch(item) for shape in (_WELL, _DITI_TYPE, _LABEL)):
                roles.update((value, role) for value in _values_in(item))
    return roles


@functools.cache
def command_names(excluded: frozenset[str] = frozenset()) -> tuple[bytes, ...]:
    """The catalog's command names but `excluded`, as JSON writes them."""
    return tuple(name.encode() for name in load_catalog().commands if name not in excluded)


def _labels(command: Mapping[str, Any]) -> set[str]:
    fields = set(grounded_label_fields())
    return {value for field, value in command["func_parameters"].items() if field in fields}


@dataclass(frozen=True)
class _Reading:
    """A plan read against its description: what the output keeps, and where it stands."""

    kept: list[Mapping[str, Any]]  # the plan without its unstated tail and unasked tip drops
    tail_at: int  # where the unstated tail starts (len(commands) when there is none)
    complete: bool  # the kept commands use every value as often as the text states it, and every tip word


def trim_unstated_tail(description: str, commands: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The plan up to its first command that states nothing new, without the tip drops the text does not ask
    for (more GetDiti and DropDiti than it has words for tips)."""
    return _read_plan(stated_values(description), tip_mentions(description), commands).kept


def _read_plan(stated: Counter[Value], tips: int, commands: Sequence[Mapping[str, Any]]) -> _Reading:
    """`commands` against a description's stated values (`stated_values`) and words for tips (`tip_mentions`)."""
    kept: list[Mapping[str, Any]] = []
    roles: Counter[tuple[Value, str]] = Counter()
    labels: set[str] = set()
    tip_count = 0
    tail_at = len(commands)
    for index, command in enumerate(commands):
        command_roles = _roles(command)
        if command["func_name"] == "DropDiti":
            if tip_count >= tips:
                continue
        elif kept and not (_labels(command) - labels) and not _covers_more(stated, roles, command_roles - roles):
            tail_at = index  # never the first command: a plan without commands is no plan
            break
        tip_count += command["func_name"] in _TIP_COMMANDS
        roles |= command_roles
        labels |= _labels(command)
        kept.append(command)
    used = _uses(roles)
    complete = tip_count >= tips and all(used[value] >= count for value, count in stated.items())
    return _Reading(kept, tail_at, complete)


def _uses(roles: Counter[tuple[Value, str]]) -> Counter[Value]:
    """How often the plan uses each value: in each role as often as one command writes it there at most."""
    uses: Counter[Value] = Counter()
    for (value, _), count in roles.items():
        uses[value] += count
    return uses


def _covers_more(
    stated: Counter[Value], roles: Counter[tuple[Value, str]], new_roles: Counter[tuple[Value, str]]
) -> bool:
    """Whether a role the plan had not filled so far uses a value the text states more often than the plan has
    used it."""
    uses = _uses(roles)
    return any(uses[value] < stated[value] for value, _ in new_roles)


def complete_commands(plan_text: str) -> list[Any]:
    """The whole commands of a plan cut off at max_new_tokens (none when its commands array never opened)."""
    data = plan_text.encode("utf-8")
    closed = _JsonCursor().advance(data)
    ends = [offset for offset, bracket, depth in closed if bracket == _CLOSE_OBJECT and depth == _IN_COMMANDS]
    if not ends:
        return []
    return json.loads(data[: ends[-1]].decode("utf-8") + "]}")["commands"]


def trim_plan_text(description: str, plan_text: str) -> str:
    """`trim_unstated_tail` on plan JSON text; text that is not a plan comes back unchanged.

    A plan cut off at the token budget is cut back to its whole commands only when the tail rule cuts among
    them: a model that goes on restating is the commonest reason to run out of tokens.
    """
    try:
        commands, whole = json.loads(plan_text)["commands"], True
    except (ValueError, TypeError, KeyError):
        try:
            commands, whole = complete_commands(plan_text), False
        except (ValueError, TypeError, KeyError):
            return plan_text
    try:
        reading = _read_plan(stated_values(description), tip_mentions(description), commands)
    except (TypeError, KeyError, AttributeError):
        return plan_text
    kept = reading.kept
    if len(kept) == len(commands) or (not whole and reading.tail_at == len(commands)):
        return plan_text
    return render_plan({"commands": kept})  # the layout the grammar generates
