"""Steps the text has a word for: a plan has no more PCR or MoveLabware steps than its description has words for
them.

A small model reaches for a PCR or a MoveLabware where the text has neither: a plate named in a Transfer becomes a
MoveLabware to that plate ("Sample_Plate -> Elution_Plate (D2): transfer 10ul"), and a tip word or a well list
becomes a PCR program ("50ul DiTis" → program "DiTis"); see docs/results.md. Every such step is written with a
word that names it: "扩增", "PCR", "thermocycler", "程序", "protocol" for a PCR; "夹爪", "搬", "转运", "place",
"relocate", a plate moved by an arrow ("QC_Plate → Deck_1") for a MoveLabware. So while the plan has as many
steps of a kind as the text has words for it, `CommandCueRow` holds back that command's name, and the greedy
processor takes the best name it leaves (the way coverage holds back tip commands, `CoverageRow.allows`).

A verb that moves liquid is not a word for moving a plate: "move 20ul", "carry 20ul", "75ul移入", "20ul转移到".
Nor is an arrow whose target has wells ("A4,B4 → 稀释板C8,D8"), nor "PCR" inside a name ("PCR_Plate"). The words
are an upper bound, not a parse: a text may have more of them than steps ("PCR扩增", "程序qPCR_40").

Every gold plan of the generated corpus, the held-out families and the public examples has at most as many steps of
each kind as its text has words for them (`tests/pipelines/serve/test_command_cues.py`).
"""

from __future__ import annotations

import re
from collections import Counter

from pipelines.serve.coverage import NAME_OPENER, WELL_NAME, command_name_in, command_names, name_leads_to

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


def steps_named(plan: bytes | bytearray) -> Counter[str]:
    """How many steps of each kind of `STEP_WORDS` (partial) plan JSON has."""
    return Counter({name: plan.count(NAME_OPENER + name.encode() + b'"') for name in STEP_WORDS})


class CommandCueRow:
    """One batch row's words for steps, and the bytes generated: a command of `STEP_WORDS` is named only while the
    plan has fewer of it than the text has words for it."""

    __slots__ = ("words", "generated")

    def __init__(self, description: str) -> None:
        self.words = step_words(description)
        self.generated = bytearray()

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def allows(self, token: bytes) -> bool:
        """Whether the command name `token` writes (if any) may still become one the text has a word left for."""
        written = command_name_in(self.generated, token)
        if written is None:
            return True
        named = steps_named(self.generated)
        held_back = frozenset(name for name in STEP_WORDS if named[name] >= self.words[name])
        return name_leads_to(written, command_names(held_back))
