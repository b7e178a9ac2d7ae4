"""Write a planned record as lab text, one phrasing family per step, framed as people frame procedures.

Framings, each drawn at its share: a step with the previous step's channels leaves them unstated (the
catalog's channel-inheritance rule), a header may state the channels once for the steps after it, a
multi-command record may be written one numbered step per line, and a record may start with a step
prefix ("行3：", "Step 3:").
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from data_contracts.commands import Command
from pipelines.corpus import phrasings as P
from pipelines.corpus.families import TEMPLATE_TABLES, TemplateDecks, family_id
from pipelines.corpus.phrases import channel_phrase, step_fields
from pipelines.corpus.step_templates import WITH_CHANNELS

# Framings of a record's text, as shares of the records that can take them.
INHERIT_SHARE = 0.65  # a step with the previous step's channels leaves them unstated
MULTI_LINE_SHARE = 0.07  # multi-command records written one numbered step per line
CHANNEL_HEADER_SHARE = 0.07  # "加样（通道1-4）：" states the channels once for the steps after it
PLAIN_HEADER_SHARE = 0.05  # "Prep:" before the steps
PREFIX_SHARE = 0.5  # a step prefix such as "行3：" or "Step 3:"
HALF_WIDTH_SHARE = 0.25  # Chinese records typed with half-width punctuation


class RecordWriter:
    """Writes a planned record as lab text with the phrasing families it is allowed to use."""

    def __init__(self, rng: random.Random, families: frozenset[str]) -> None:
        self._rng = rng
        self._decks = TemplateDecks(rng, families)
        missing = [
            f"{name}.{lang}"
            for name in WITH_CHANNELS
            for lang in ("zh", "en")
            if not self._decks.has("ch", name, lang)
        ]
        if missing:
            raise ValueError(f"no phrasing family left to write {missing} with")

    def write(self, commands: Sequence[Command], lang: str) -> tuple[str, tuple[str, ...], bool]:
        """(text, family ids, whether a header states the first step's channels)."""
        rng = self._rng
        zh = lang == "zh"
        multi_line = len(commands) > 1 and rng.random() < MULTI_LINE_SHARE
        header, channel_header = self._header(commands, lang, multi_line)

        steps: list[str] = []
        family_ids: list[str] = []
        first_channels = commands[0].func_parameters.get("channels")
        previous_channels = first_channels if channel_header else None
        for index, command in enumerate(commands):
            inherit = self._can_inherit(command, lang, previous_channels) and (
                (index == 0 and channel_header) or rng.random() < INHERIT_SHARE
            )
            text, family = self._step_text(command, lang, inherit)
            family_ids.append(family)
            steps.append(text)
            previous_channels = command.func_parameters.get("channels")

        if multi_line:
            text = self._numbered_lines(steps, lang)
        else:
            text = header + self._one_sentence(steps, lang)
            if zh and rng.random() < HALF_WIDTH_SHARE:
                text = text.translate(P.HALF_WIDTH).replace(" ,", ",").replace("  ", " ").strip()
            text = self._with_prefix(text, lang)
        return text, tuple(family_ids), channel_header

    def _header(self, commands: Sequence[Command], lang: str, multi_line: bool) -> tuple[str, bool]:
        """(header, whether it states the first step's channels); numbered lines take no header."""
        rng = self._rng
        zh = lang == "zh"
        first_channels = commands[0].func_parameters.get("channels")
        channel_header = (
            not multi_line
            and self._can_inherit(commands[0], lang, first_channels)
            and rng.random() < CHANNEL_HEADER_SHARE
        )
        if channel_header:
            pattern = rng.choice(P.CHANNEL_HEADERS_ZH if zh else P.CHANNEL_HEADERS_EN)
            return pattern.format(ch=channel_phrase(rng, first_channels, lang)[0]), True
        if not multi_line and rng.random() < PLAIN_HEADER_SHARE:
            return rng.choice(P.HEADERS_ZH if zh else P.HEADERS_EN) + ("" if zh else " "), False
        return "", False

    def _step_text(self, command: Command, lang: str, inherit: bool) -> tuple[str, str]:
        """(text, family id) for one command; `inherit` leaves its channels unstated."""
        rng = self._rng
        name = command.func_name
        kind = "inh" if inherit else "ch"
        index = self._decks.draw(kind, name, lang)
        template = TEMPLATE_TABLES[kind][name][lang][index]
        fields = step_fields(rng, command, lang)
        if lang == "zh" and fields.get("each") == "" and re.search(r"\{(?:src|dst|loc)\}\{each\}\{v\}", template):
            # "H4" + "6 μl" would read as "H46 μl"; "H4的6 μl" cannot be misread.
            fields["each"] = "的"
        text = template.format(**fields)
        liquid_class = command.func_parameters.get("liquidClass")
        if liquid_class:
            wrapper = rng.choice(P.LIQUID_CLASS_ZH if lang == "zh" else P.LIQUID_CLASS_EN)
            text = wrapper.format(lc=liquid_class, text=text)
        return text, family_id(name, lang, kind, index)

    def _can_inherit(self, command: Command, lang: str, previous_channels: list[int] | None) -> bool:
        channels = command.func_parameters.get("channels")
        same_channels = channels is not None and channels == previous_channels
        return same_channels and self._decks.has("inh", command.func_name, lang)

    def _one_sentence(self, steps: list[str], lang: str) -> str:
        rng = self._rng
        zh = lang == "zh"
        parts = [steps[0]]
        for index, step in enumerate(steps[1:], start=1):
            if index == len(steps) - 1 >= 2 and rng.random() < 0.25:
                connective = rng.choice(P.FINAL_CONNECTIVES_ZH if zh else P.FINAL_CONNECTIVES_EN)
            else:
                connective = rng.choice(P.CONNECTIVES_ZH if zh else P.CONNECTIVES_EN)
            parts.append(connective + step)
        body = "".join(parts)
        if not zh:
            body = body[0].upper() + body[1:]
        return body + rng.choice(P.ENDINGS_ZH if zh else P.ENDINGS_EN)

    def _numbered_lines(self, steps: list[str], lang: str) -> str:
        rng = self._rng
        zh = lang == "zh"
        pattern = rng.choice(P.LINE_NUMBERS_ZH if zh else P.LINE_NUMBERS_EN)
        ending = rng.choice(P.ENDINGS_ZH if zh else P.ENDINGS_EN)
        lines = []
        for number, step in enumerate(steps, start=1):
            step = step if zh else step[0].upper() + step[1:]
            lines.append(f"{pattern.format(i=number)} {step}{ending}")
        return "\n".join(lines)

    def _with_prefix(self, body: str, lang: str) -> str:
        rng = self._rng
        if rng.random() >= PREFIX_SHARE:
            return body
        prefixes = P.PREFIXES_ZH if lang == "zh" else P.PREFIXES_EN
        if body[0].isdigit():
            # "3、1-4号通道" or "2.8通道" would not read as a step number followed by the text.
            prefixes = tuple(p for p in prefixes if not p.startswith("{i}"))
        prefix = rng.choice(prefixes).format(i=rng.randint(1, 12))
        bare_number = prefix[0].isdigit()
        separator = " " if lang == "en" or bare_number or rng.random() < 0.2 else ""
        return f"{prefix}{separator}{body}"
