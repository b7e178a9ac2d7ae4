"""Phrasing families: every step template is one, and about a tenth of them are held out of training.

A family is named "<command>.<lang>.<ch|inh>.<index>" after its place in `step_templates.WITH_CHANNELS`
("ch") or `step_templates.INHERITED` ("inh"). The training corpus never uses a held-out family; a second
file of records written only with them measures whether a model generalizes to phrasings it has never seen.
"""

from __future__ import annotations

import hashlib
import random
import re

from pipelines.corpus.step_templates import INHERITED, WITH_CHANNELS

TEMPLATE_TABLES = {"ch": WITH_CHANNELS, "inh": INHERITED}
# Held-out phrasing families: this share of each group of templates (one command, language and kind),
# at least one, in every group with at least MIN_FAMILIES_TO_HOLD_OUT templates (smaller groups would
# leave too few phrasings to train on).
HELD_OUT_FAMILY_SHARE = 0.1
MIN_FAMILIES_TO_HOLD_OUT = 4


def family_id(name: str, lang: str, kind: str, index: int) -> str:
    """The id of one template: "<command>.<lang>.<ch|inh>.<index>", e.g. "Aspirate.zh.ch.3"."""
    return f"{name}.{lang}.{kind}.{index}"


def template_families() -> dict[str, str]:
    """Every phrasing family id with its template."""
    return {
        family_id(name, lang, kind, index): template
        for kind, table in TEMPLATE_TABLES.items()
        for name, by_lang in table.items()
        for lang, templates in by_lang.items()
        for index, template in enumerate(templates)
    }


def held_out_families(seed: int) -> frozenset[str]:
    """The families the training corpus never uses, chosen by the random seed alone.

    Within each group a family's rank is a hash of the seed and its id, so the choice does not depend on
    Python's hash seed, and appending a template to a group moves no other family in or out.
    """
    held: set[str] = set()
    for kind, table in TEMPLATE_TABLES.items():
        for name, by_lang in table.items():
            for lang, templates in by_lang.items():
                if len(templates) < MIN_FAMILIES_TO_HOLD_OUT:
                    continue
                ids = [family_id(name, lang, kind, index) for index in range(len(templates))]
                ids.sort(key=lambda family: hashlib.sha256(f"{seed}:{family}".encode()).hexdigest())
                held.update(ids[: max(1, round(HELD_OUT_FAMILY_SHARE * len(ids)))])
    return frozenset(held)


# A well, count or duration right after a well or a label would run into it ("A1-D15次", "Plate130分钟").
_GLUED_FIELDS = re.compile(r"\{(?:src|dst|loc)\}\{(?:v|n|t)\}|\{lw\}\{(?:t|temp|rpm)\}")


_CJK = re.compile(r"[\u4e00-\u9fff]")


def _check_templates() -> None:
    for family, template in template_families().items():
        if _GLUED_FIELDS.search(template):
            raise ValueError(f"phrasing family {family} glues two numbers together: {template!r}")
        # Every field but the channel phrase ("通道1-4") may come out Latin ("Plate1 A1", "20ul", "Quick_25x").
        literal = re.sub(r"\{[a-z]+\}", "", template.replace("{ch}", "通道"))
        if ".zh." in family and not _CJK.search(literal):
            raise ValueError(f"phrasing family {family} may write a Chinese record without Chinese: {template!r}")


_check_templates()


class TemplateDecks:
    """Deals each command's allowed templates like shuffled cards, so rare commands still show every phrasing."""

    def __init__(self, rng: random.Random, families: frozenset[str]) -> None:
        self._rng = rng
        self._allowed: dict[tuple[str, str, str], list[int]] = {}
        for kind, table in TEMPLATE_TABLES.items():
            for name, by_lang in table.items():
                for lang, templates in by_lang.items():
                    indices = [i for i in range(len(templates)) if family_id(name, lang, kind, i) in families]
                    if indices:
                        self._allowed[(kind, name, lang)] = indices
        self._decks: dict[tuple[str, str, str], list[int]] = {}

    def has(self, kind: str, name: str, lang: str) -> bool:
        return (kind, name, lang) in self._allowed

    def draw(self, kind: str, name: str, lang: str) -> int:
        deck = self._decks.setdefault((kind, name, lang), [])
        if not deck:
            deck.extend(self._allowed[(kind, name, lang)])
            self._rng.shuffle(deck)
        return deck.pop()
