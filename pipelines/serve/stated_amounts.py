"""What a (normalized) description states that decoding holds plans to: numbers, amounts in their units, words for
tips, and the tip size written before a word for tips.

After canonicalization (`pipelines.data.canonicalize`) every amount carries its unit: "150ul", "300s", "37°C",
"750rpm", "5次" / "3 times". `pipelines.serve.amount_grounding` keeps a field's value on the amounts stated for it,
`pipelines.serve.coverage` keeps tip steps on the words for tips, and `pipelines.serve.command_cues` bounds the
steps that state an amount by the statements of it.
"""

from __future__ import annotations

import re
from collections import Counter

from data_contracts.catalog import load_catalog

# A number not inside an ASCII name ("Deck_4", "Plate2") and not followed by more digits or decimals.
NUMBER_PATTERN = r"(?<![A-Za-z0-9_.])\d+(?:\.\d+)?(?![0-9]|\.[0-9])"
_NUMBER = re.compile(NUMBER_PATTERN)
# Between the numbers of a list that shares one unit: "175、180、75ul", "80/30ul", "3, 0.5, 1 and 7.5ul".
LIST_SEPARATOR = r"\s*(?:、|,|，|/|and|和|与|及|or|或)\s*"
# The unit that makes a number fit a field, as canonicalization writes it (counts it leaves as written); the
# fields are the catalog's numeric parameters but channels.
_UNIT_OF_FIELD = {
    "vols": r"ul",
    "seconds": r"s(?![A-Za-z])",
    "temperature": r"°C",
    "rpm": r"rpm",
    "times": r"次|遍|个循环|循环|轮|回|times?(?![A-Za-z])|x(?![A-Za-z0-9])|×|strokes?|cycles?|rounds|passes|reps",
}
AMOUNT_FIELDS = tuple(_UNIT_OF_FIELD)
_NUMBER_WITH_UNIT = re.compile(
    rf"{NUMBER_PATTERN}(?:{LIST_SEPARATOR}{NUMBER_PATTERN})*\s*(?:"
    + "|".join(f"(?P<{field}>{unit})" for field, unit in _UNIT_OF_FIELD.items())
    + ")",
    re.IGNORECASE,
)
# Every GetDiti and DropDiti is written with a word for tips ("取200ul枪头", "弃tip", "eject the tips"), and no
# other command is, except in "per tip" volumes.
_TIP_MENTION = re.compile(r"(?<!per )(?<!each )(?:枪头|吸头|tip|DiTi)", re.IGNORECASE)
# A tip size right before a word for tips, in the same clause: "1000ul枪头", "200ul一次性吸头", "50ul disposable".
# A line is one step, so a volume ending one ("with 10ul each.\nDrop tips") is not the next line's tip size.
_TIP_SIZE_BEFORE = re.compile(
    r"(?<![A-Za-z0-9_.])(" + "|".join(map(re.escape, load_catalog().tip_types)) + r")[^0-9,，;；。:：()\n]{0,16}$"
)
_SIZE_LOOKBEHIND = 40


def numbers_in(text: str) -> list[str]:
    """The numbers of `text`, as written (`NUMBER_PATTERN`)."""
    return _NUMBER.findall(text)


def json_number(text: str) -> bytes:
    """How canonical JSON writes a stated number: an int when whole ("20", not "20.0")."""
    number = float(text)
    return str(int(number) if number.is_integer() else number).encode()


def stated_numbers_by_field(description: str) -> dict[str, frozenset[bytes]]:
    """For each numeric field, the numbers the description writes with its unit, as JSON writes them; a field
    whose unit it never writes is absent."""
    found: dict[str, set[bytes]] = {}
    for run in _NUMBER_WITH_UNIT.finditer(description):
        found.setdefault(run.lastgroup or "", set()).update(map(json_number, numbers_in(run.group(0))))
    return {field: frozenset(numbers) for field, numbers in found.items()}


def amount_statements(description: str) -> Counter[str]:
    """How many statements of each numeric field's amount the description writes: a run of numbers sharing one
    unit ("175、180、75ul") is one."""
    return Counter(run.lastgroup or "" for run in _NUMBER_WITH_UNIT.finditer(description))


def tip_mentions(description: str) -> int:
    """How many tip pick-ups and drops a description asks for: one per word for tips."""
    return len(_TIP_MENTION.findall(description))


def tip_mention_starts(description: str) -> list[int]:
    """Where each word for tips starts: the k-th is the k-th GetDiti or DropDiti of the plan."""
    return [mention.start() for mention in _TIP_MENTION.finditer(description)]


def _tip_size_matches(description: str) -> list[tuple[int, re.Match[str] | None]]:
    """Each word for tips, in order: where the text it may follow starts, and the tip size written there."""
    found = []
    for start in tip_mention_starts(description):
        window = max(0, start - _SIZE_LOOKBEHIND)
        found.append((window, _TIP_SIZE_BEFORE.search(description[window:start])))
    return found


def tip_sizes(description: str) -> list[str | None]:
    """The tip size written just before each word for tips, in order (None where there is none: a drop)."""
    return [size.group(1) if size else None for _, size in _tip_size_matches(description)]


def tip_size_spans(description: str) -> list[tuple[int, int]]:
    """Where the description writes a tip size ("200ul" of "200ul枪头"), in order."""
    return [(window + size.start(1), window + size.end(1)) for window, size in _tip_size_matches(description) if size]
