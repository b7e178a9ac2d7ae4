"""Steps the text has a word or an amount for: a plan has no more steps of a kind than its description has words
or statements of amounts for them.

A small model reaches for a PCR or a MoveLabware where the text has neither: a plate named in a Transfer becomes a
MoveLabware to that plate ("Sample_Plate -> Elution_Plate (D2): transfer 10ul"), and a tip word or a well list
becomes a PCR program ("50ul DiTis" → program "DiTis"); see docs/results.md. Every such step is written with a
word that names it: "扩增", "PCR", "thermocycler", "程序", "protocol" for a PCR; "夹爪", "搬", "转运", "place",
"relocate", a plate moved by an arrow ("QC_Plate → Deck_1") for a MoveLabware.

It also appends a step whose amount the text never states: a Delay of "150" after "dispense 150ul per tip", an
Incubate where no temperature is written, a Mix or a Dispense for "Amplify Deep_Block using LAMP_65". Every step
that states a duration, a temperature, a speed or a count is written with a statement of it (canonicalization
gives each its unit: "300s", "37°C", "750rpm", "5次"), one statement per step; a volume statement may serve
several steps ("各30ul" for an Aspirate and its Dispense), so a liquid step only needs the text to state one.

So while the plan has as many steps under a bound as the text allows them, `CommandCueRow` holds back their names,
and the greedy processor takes the best name it leaves (the way coverage holds back tip commands,
`CoverageRow.allows`).

A verb that moves liquid is not a word for moving a plate: "move 20ul", "carry 20ul", "75ul移入", "20ul转移到".
Nor is an arrow whose target has wells ("A4,B4 → 稀释板C8,D8"), nor "PCR" inside a name ("PCR_Plate"). The bounds
are upper bounds, not a parse: a text may have more words than steps ("PCR扩增", "程序qPCR_40").

Every gold plan of the generated corpus, the held-out families and the public examples keeps within every bound
(`tests/pipelines/serve/test_command_cues.py`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from data_contracts.catalog import load_catalog
from pipelines.serve.coverage import NAME_OPENER, WELL_NAME, command_name_in, command_names, name_leads_to
from pipelines.serve.stated_amounts import AMOUNT_FIELDS, amount_statements

# The rest of a clause has a well name: an arrow into it points at wells, so liquid moves, not a plate.
_WELLS_AHEAD = rf"(?![^,;，；。\n]*?(?<![A-Za-z0-9_]){WELL_NAME}(?![A-Za-z0-9_]))"
# Words for each step; matched case-insensitively on the normalized description.
STEP_WORDS: dict[str, re.Pattern[str]] = {
    "PCR": re.compile(
        r"(?<![A-Za-z0-9_])(?:q|RT-)?PCR(?![A-Za-z0-9_])|扩增|程序|热循环|循环仪"
        r"|thermo|thermal|cycler|cycling|protocol|program|amplif",
        re.IGNORECASE,
    ),
    "MoveLabware": re.compile(
        r"(?<!ul)(?<!ul转)移|搬|转运|放到|放至|放入|放在|放置|送到|送至|送入|机械臂|夹爪"
        r"|(?<![A-Za-z])(?:move|shift|carry|transfer|put)(?! \d)|place|gripper|relocat|transport|bring"
        rf"|(?:->|→){_WELLS_AHEAD}",
        re.IGNORECASE,
    ),
}


def step_words(description: str) -> Counter[str]:
    """How many words a (normalized) description has for each step of `STEP_WORDS`."""
    return Counter({name: len(words.findall(description)) for name, words in STEP_WORDS.items()})


# A volume statement may serve several steps ("各30ul" for an Aspirate and its Dispense); every other amount is
# stated once per step.
_SHARED_AMOUNT = "vols"
_UNBOUNDED = 1 << 30


@functools.cache
def steps_stating(amount: str) -> frozenset[str]:
    """The catalog's commands that state `amount` (one of `AMOUNT_FIELDS`): those with a required field of it."""
    return frozenset(name for name, spec in load_catalog().commands.items() if amount in spec.required_params)


def step_bounds(description: str) -> list[tuple[frozenset[str], int]]:
    """(steps, how many of them together a plan may have) for a (normalized) description."""
    words = step_words(description)
    statements = amount_statements(description)
    return [
        *((frozenset({name}), words[name]) for name in STEP_WORDS),
        *((steps_stating(amount), _amount_bound(amount, statements[amount])) for amount in AMOUNT_FIELDS),
    ]


def _amount_bound(amount: str, statements: int) -> int:
    """How many steps stating `amount` the text's `statements` of it allow."""
    if amount == _SHARED_AMOUNT:
        return _UNBOUNDED if statements else 0
    return statements


def steps_named(plan: bytes | bytearray) -> Counter[str]:
    """How many steps of each catalog command (partial) plan JSON has."""
    return Counter({name.decode(): plan.count(NAME_OPENER + name + b'"') for name in command_names()})


class CommandCueRow:
    """One batch row's bounds on steps, and the bytes generated: a command is named only while every bound it
    falls under leaves room for one more."""

    __slots__ = ("bounds", "generated")

    def __init__(self, description: str) -> None:
        self.bounds = step_bounds(description)
        self.generated = bytearray()

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def allows(self, token: bytes) -> bool:
        """Whether the command name `token` writes (if any) may still become one the text leaves room for."""
        written = command_name_in(self.generated, token)
        if written is None:
            return True
        named = steps_named(self.generated)
        held_back = frozenset(
            name for steps, bound in self.bounds if sum(named[step] for step in steps) >= bound for name in steps
        )
        return name_leads_to(written, command_names(held_back))
