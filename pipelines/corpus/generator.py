"""Generate the bundled seed corpus (data/raw/training_data.jsonl) deterministically from a fixed seed.

Each record is planned as catalog commands first and only then written as lab text, so the text and
its gold commands always agree. The plan keeps a long tail with a floor: tip handling and pipetting in
most records, Mix and Transfer in fewer, and PCR, Delay, Incubate, Shake and MoveLabware in an exact
quota of records each (RARE_SHARE, so the shares do not drift with the seed). An exact quota of
single-command records (SINGLE_SHARE) is spread evenly over all 11 commands, so each command is also
seen alone.

Every step is written from one template, a phrasing family (corpus_phrasings). About a tenth of the
families are held out: the training corpus never uses them, and a second file of records written only
with them (data/heldout/phrasing_families.jsonl) measures whether a model generalizes to phrasings it
has never seen. No generated text copies or nearly copies an input of the public test examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
import os
import random
import re
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from data_contracts.forms import render_text_commands
from pipelines.corpus import phrasings as P
from pipelines.config import CorpusParams, load_params

RARE_COMMANDS = ("PCR", "Delay", "Incubate", "Shake", "MoveLabware")
RARE_SHARE = 0.08  # records containing each rare command, as a share of all records
SINGLE_SHARE = 0.25  # records holding exactly one command, spread evenly over the catalog's commands
ZH_SHARE = 0.65
MAX_COMMANDS = 6
# Held-out phrasing families: this share of each group of templates (one command, language and kind),
# at least one, in every group with at least MIN_FAMILIES_TO_HOLD_OUT templates (smaller groups would
# leave too few phrasings to train on).
HELD_OUT_FAMILY_SHARE = 0.1
MIN_FAMILIES_TO_HOLD_OUT = 4
# A text is a near copy of a protected text when difflib's similarity ratio reaches NEAR_COPY_RATIO, or
# when they share a run of LONG_SHARED_RUN characters (or SHORT_TEXT_SHARE of a shorter protected text).
NEAR_COPY_RATIO = 0.9
LONG_SHARED_RUN = 30
SHORT_TEXT_SHARE = 0.75
# Framings of a record's text, as shares of the records that can take them.
INHERIT_SHARE = 0.65  # a step with the previous step's channels leaves them unstated
MULTI_LINE_SHARE = 0.07  # multi-command records written one numbered step per line
CHANNEL_HEADER_SHARE = 0.07  # "加样（通道1-4）：" states the channels once for the steps after it
PLAIN_HEADER_SHARE = 0.05  # "Prep:" before the steps
PREFIX_SHARE = 0.5  # a step prefix such as "行3：" or "Step 3:"
QUOTE_SHARE = 0.07  # a labware, program or position name in quotes
PER_CHANNEL_VOLUME_SHARE = 0.2  # two to four channels drawing different volumes
LIQUID_CLASS_SHARE = 0.07
HALF_WIDTH_SHARE = 0.25  # Chinese records typed with half-width punctuation
# Retries for a record whose text repeats an earlier one or nears a protected text; far more than a
# corpus needs (about one record in fifteen needs one at 100k records), so reaching it means the
# phrasings of some kind of record are used up.
MAX_ATTEMPTS_PER_RECORD = 1000

# Step markers a record may start with (or each line of a numbered multi-line record), exactly what
# pipelines.data.normalize strips: a bare number needs its punctuation and never swallows a decimal ("1.5 ml")
# or a list of channels ("3、5号通道").
STEP_PREFIX = re.compile(
    r"^(?:行\d+[:：]|步骤\d+[:：]|第\d+步[:：]|Line \d+:|Step \d+[.:]|\d+(?:\.(?!\d)|、(?!\s*\d)|\))|[(（]\d+[)）])\s*"
)

# Pipetting plans (operation sequences) with their weights: get = GetDiti, asp = Aspirate,
# disp = Dispense, drop = DropDiti, split = two Dispenses of half each. Single operations go with a rare
# command (single-command records have their own quota); the rest make the multi-command pipetting records.
PIPETTING_PLANS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("get",), 4),
    (("asp",), 3),
    (("disp",), 3),
    (("drop",), 4),
    (("mix",), 3),
    (("transfer",), 3),
    (("get", "asp"), 7),
    (("asp", "disp"), 5),
    (("disp", "drop"), 2),
    (("drop", "get"), 2),
    (("disp", "mix"), 3),
    (("get", "asp", "disp"), 6),
    (("asp", "disp", "drop"), 4),
    (("get", "transfer"), 3),
    (("get", "mix", "drop"), 4),
    (("get", "transfer", "drop"), 7),
    (("asp", "disp", "mix"), 3),
    (("get", "asp", "disp", "drop"), 16),
    (("get", "transfer", "mix", "drop"), 4),
    (("get", "asp", "disp", "mix", "drop"), 7),
    (("get", "asp", "split", "drop"), 4),
    (("get", "asp", "disp", "drop", "get", "asp"), 3),
)
MULTI_PLANS = tuple((ops, weight) for ops, weight in PIPETTING_PLANS if len(ops) > 1)
OPERATION_OF = {
    "GetDiti": "get", "DropDiti": "drop", "Aspirate": "asp", "Dispense": "disp", "Mix": "mix", "Transfer": "transfer",
}
# Verb endings that agree with an English channel subject ("channel 4 draws", "channels 1-4 draw").
SINGULAR_SUBJECT = {"s": "s", "es": "es", "ies": "ies"}
PLURAL_SUBJECT = {"s": "", "es": "", "ies": "y"}
TIP_WEIGHTS = {"10ul": 0.15, "50ul": 0.25, "200ul": 0.4, "1000ul": 0.2}
TEMPLATE_TABLES = {"ch": P.WITH_CHANNELS, "inh": P.INHERITED}


@dataclass(frozen=True)
class GeneratedRecord:
    """One corpus record with what the tests want to know about how it was written."""

    lang: str  # "zh" | "en"
    text: str
    commands: tuple[Command, ...]
    templates: tuple[str, ...]  # one phrasing family (template id) per command, e.g. "Aspirate.zh.ch.3"
    channel_header: bool = False  # a header states the first step's channels ("加样（通道1-4）：")

    def to_raw(self) -> dict[str, Any]:
        """The raw corpus line; ingestion reads only `conversation`, `phrasing` records the families."""
        turn = {"input": self.text, "output": render_text_commands(self.commands)}
        return {"conversation": [turn], "phrasing": list(self.templates)}

    def to_case(self, case_id: str) -> dict[str, Any]:
        """A held-out case: the raw corpus line with an `id`, as pipelines.serve.evaluate.read_cases reads it."""
        raw = self.to_raw()
        return {"conversation": raw["conversation"], "id": case_id, "phrasing": raw["phrasing"]}


# --- phrasing families ------------------------------------------------------------------------


def template_families() -> dict[str, str]:
    """Every phrasing family id ("<command>.<lang>.<ch|inh>.<index>") with its template."""
    return {
        f"{name}.{lang}.{kind}.{index}": template
        for kind, table in TEMPLATE_TABLES.items()
        for name, by_lang in table.items()
        for lang, templates in by_lang.items()
        for index, template in enumerate(templates)
    }


def held_out_families(seed: int) -> frozenset[str]:
    """The families the training corpus never uses, chosen by the seed alone.

    Within each group a family's rank is a hash of the seed and its id, so the choice does not depend on
    Python's hash seed, and appending a template to a group moves no other family in or out.
    """
    held: set[str] = set()
    for kind, table in TEMPLATE_TABLES.items():
        for name, by_lang in table.items():
            for lang, templates in by_lang.items():
                if len(templates) < MIN_FAMILIES_TO_HOLD_OUT:
                    continue
                ids = [f"{name}.{lang}.{kind}.{index}" for index in range(len(templates))]
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


# --- planning commands ------------------------------------------------------------------------


@dataclass
class _PipettingState:
    """What a pipetting plan has set up so far; later steps reuse it as lab procedures do."""

    channels: list[int]
    tip: str | None = None
    vols: list[int | float] | None = None
    src: tuple[str, list[str]] | None = None
    dst: tuple[str, list[str]] | None = None


def _pick_channels(rng: random.Random) -> tuple[list[int], bool]:
    """Channels in ascending order, and whether their wells sit on the rows matching their numbers."""
    kind = rng.choices(("all", "first", "span", "one", "list"), weights=(20, 33, 20, 17, 10))[0]
    if kind == "all":
        return list(range(1, 9)), False
    if kind == "first":
        return list(range(1, rng.randint(2, 7) + 1)), False
    if kind == "span":
        first = rng.randint(2, 7)
        return list(range(first, rng.randint(first + 1, 8) + 1)), False
    if kind == "one":
        return [rng.randint(1, 8)], False
    channels = sorted(rng.sample(range(1, 9), rng.randint(2, 4)))
    if all(b - a == 1 for a, b in zip(channels, channels[1:])):
        return channels, False
    return channels, rng.random() < 0.6


def _pick_wells(rng: random.Random, channels: list[int], aligned: bool, avoid_column: int | None = None) -> list[str]:
    """One well per channel, down one column (the catalog's range rule), never overflowing row H."""
    catalog = load_catalog()
    rows = catalog.plate_rows
    column = rng.choice([c for c in range(1, catalog.plate_columns + 1) if c != avoid_column])
    if aligned:
        return [f"{rows[ch - 1]}{column}" for ch in channels]
    start = rng.randint(0, len(rows) - len(channels))
    return [f"{rows[start + i]}{column}" for i in range(len(channels))]


def _pick_tip(rng: random.Random) -> str:
    return rng.choices(list(TIP_WEIGHTS), weights=list(TIP_WEIGHTS.values()))[0]


def _pick_vols(rng: random.Random, tip: str, n: int, max_vol: float | None = None) -> list[int | float]:
    choices = [v for v in P.VOLUMES_BY_TIP[tip] if max_vol is None or v <= max_vol]
    if 1 < n <= 4 and rng.random() < PER_CHANNEL_VOLUME_SHARE:
        return [rng.choice(choices) for _ in range(n)]
    return [rng.choice(choices)] * n


def _pick_labware(rng: random.Random, lang: str, avoid: Sequence[str] = ()) -> str:
    pool = P.ZH_LABWARE if lang == "zh" and rng.random() < 0.75 else P.EN_LABWARE
    return rng.choice([name for name in pool if name not in avoid])


def _liquid_class(rng: random.Random) -> dict[str, str]:
    return {"liquidClass": rng.choice(P.LIQUID_CLASSES)} if rng.random() < LIQUID_CLASS_SHARE else {}


def _plan_pipetting(rng: random.Random, lang: str, ops: Sequence[str]) -> list[Command]:
    channels, aligned = _pick_channels(rng)
    state = _PipettingState(channels=channels)
    # Without a GetDiti the tips were mounted before this text; any tip type could be on.
    assumed_tip = _pick_tip(rng)
    commands: list[Command] = []
    for index, op in enumerate(ops):
        tip = state.tip or assumed_tip
        if op == "get":
            state.tip = _pick_tip(rng) if state.tip is None else rng.choice([t for t in TIP_WEIGHTS if t != state.tip])
            commands.append(Command(func_name="GetDiti", func_parameters={"ditiType": state.tip, "channels": channels}))
        elif op == "drop":
            commands.append(Command(func_name="DropDiti", func_parameters={"channels": channels}))
        elif op == "asp":
            # Before a split, draw twice the dispensed volume, still within the tip.
            split = "split" in ops[index + 1 : index + 2]
            cap = P.VOLUMES_BY_TIP[tip][-1]
            vols = _pick_vols(rng, tip, len(channels), max_vol=cap / 2 if split else None)
            state.vols = vols
            lw = _pick_labware(rng, lang, avoid=[state.src[0]] if state.src else ())
            state.src = (lw, _pick_wells(rng, channels, aligned))
            aspirated = [v * 2 for v in vols] if split else vols
            params = {"channels": channels, "labware": lw, "wells": state.src[1], "vols": aspirated}
            commands.append(Command(func_name="Aspirate", func_parameters=params | _liquid_class(rng)))
        elif op in ("disp", "split"):
            vols = state.vols or _pick_vols(rng, tip, len(channels))
            avoid = [state.src[0]] if state.src else []
            for _ in range(2 if op == "split" else 1):
                lw = _pick_labware(rng, lang, avoid=avoid)
                avoid.append(lw)
                previous_column = int(state.dst[1][0][1:]) if state.dst else None
                state.dst = (lw, _pick_wells(rng, channels, aligned, avoid_column=previous_column))
                params = {"channels": channels, "labware": lw, "wells": state.dst[1], "vols": vols}
                commands.append(Command(func_name="Dispense", func_parameters=params | _liquid_class(rng)))
        elif op == "mix":
            lw, wells = state.dst or (_pick_labware(rng, lang), _pick_wells(rng, channels, aligned))
            state.dst = (lw, wells)
            params = {
                "channels": channels,
                "labware": lw,
                "wells": wells,
                "vols": _pick_vols(rng, tip, len(channels)),
                "times": rng.choice(P.MIX_TIMES),
            }
            commands.append(Command(func_name="Mix", func_parameters=params))
        elif op == "transfer":
            src_lw = _pick_labware(rng, lang)
            dst_lw = _pick_labware(rng, lang, avoid=[src_lw])
            src_wells = _pick_wells(rng, channels, aligned)
            # Plate-to-plate copies keep the layout more often than not.
            dst_wells = src_wells if rng.random() < 0.5 else _pick_wells(rng, channels, aligned)
            state.dst = (dst_lw, dst_wells)
            params = {
                "channels": channels,
                "srcLabware": src_lw,
                "srcWells": src_wells,
                "dstLabware": dst_lw,
                "dstWells": dst_wells,
                "vols": _pick_vols(rng, tip, len(channels)),
            }
            commands.append(Command(func_name="Transfer", func_parameters=params))
        else:
            raise ValueError(f"unknown pipetting operation {op!r}")
    return commands


def _n_commands(ops: Sequence[str]) -> int:
    return len(ops) + ops.count("split")  # a split is two Dispenses


def _plan_rare(rng: random.Random, lang: str, name: str, labware: str | None) -> Command:
    lw = labware or _pick_labware(rng, lang)
    if name == "PCR":
        return Command(func_name="PCR", func_parameters={"labware": lw, "program": rng.choice(P.PCR_PROGRAMS)})
    if name == "Delay":
        return Command(func_name="Delay", func_parameters={"seconds": rng.choice(P.SHORT_SECONDS + P.LONG_SECONDS[:8])})
    if name == "Incubate":
        params = {"labware": lw, "temperature": rng.choice(P.TEMPERATURES), "seconds": rng.choice(P.LONG_SECONDS)}
        return Command(func_name="Incubate", func_parameters=params)
    if name == "Shake":
        params = {"labware": lw, "rpm": rng.choice(P.RPMS), "seconds": rng.choice(P.SHORT_SECONDS[3:] + (900, 1200))}
        return Command(func_name="Shake", func_parameters=params)
    if name == "MoveLabware":
        return Command(func_name="MoveLabware", func_parameters={"labware": lw, "position": rng.choice(P.POSITIONS)})
    raise ValueError(f"{name} is not a rare command")


def _plan_rare_record(rng: random.Random, lang: str, rares: Sequence[str]) -> list[Command]:
    """Rare commands around a short pipetting plan whose plate they then act on, or (two or more) alone.

    A lone rare command always has pipetting company: alone it would be a single-command record, and
    those come from their own quota.
    """
    base: list[Command] = []
    if len(rares) == 1 or rng.random() < 0.5:
        room = MAX_COMMANDS - len(rares)
        plans = [ops for ops, _ in PIPETTING_PLANS if _n_commands(ops) <= room]
        base = _plan_pipetting(rng, lang, rng.choice(plans))
    plate = None
    for command in reversed(base):
        params = command.func_parameters
        if "labware" in params or "dstLabware" in params:
            plate = params.get("dstLabware", params.get("labware"))
            break
    shared_plate = plate if plate and rng.random() < 0.7 else (_pick_labware(rng, lang) if rng.random() < 0.6 else None)
    rare_commands = [_plan_rare(rng, lang, name, shared_plate) for name in rares]
    return base + rare_commands if rng.random() < 0.8 else rare_commands + base


def _plan_single(rng: random.Random, lang: str, name: str) -> list[Command]:
    if name in OPERATION_OF:
        return _plan_pipetting(rng, lang, (OPERATION_OF[name],))
    return [_plan_rare(rng, lang, name, None)]


# --- which records to write -------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """What one record will hold: one command alone, rare commands with company, or pipetting only."""

    lang: str
    single: str | None = None
    rares: tuple[str, ...] = ()


def _pair_up(rng: random.Random, tokens: list[str]) -> list[tuple[str, ...]]:
    """Rare-command tokens grouped into records, about a third of them pairs of two different commands."""
    rng.shuffle(tokens)
    groups: list[tuple[str, ...]] = []
    while tokens:
        first = tokens.pop()
        partner = next((i for i in range(len(tokens) - 1, -1, -1) if tokens[i] != first), None)
        if partner is not None and rng.random() < 0.35:
            groups.append((first, tokens.pop(partner)))
        else:
            groups.append((first,))
    return groups


def _english_count(n: int) -> int:
    return math.floor(n * (1 - ZH_SHARE))


def _plan_slots(rng: random.Random, n_records: int) -> list[_Slot]:
    """One slot per record, shuffled: exact quotas of single-command and rare-command records.

    Each single-command group and each rare command gets its own share of English, so their few
    records still show English phrasings; the pipetting records make up the corpus-wide share.
    """
    names = list(load_catalog().commands)
    n_single = round(SINGLE_SHARE * n_records)
    singles = dict.fromkeys(names, n_single // len(names))
    for name in rng.sample(names, n_single % len(names)):
        singles[name] += 1
    slots: list[_Slot] = []
    for name in names:
        n_en = _english_count(singles[name])
        slots += [_Slot("en", single=name)] * n_en + [_Slot("zh", single=name)] * (singles[name] - n_en)

    rare_target = round(RARE_SHARE * n_records)
    tokens = [name for name in RARE_COMMANDS for _ in range(max(0, rare_target - singles[name]))]
    seen = dict.fromkeys(RARE_COMMANDS, 0)
    english = dict.fromkeys(RARE_COMMANDS, 0)
    for group in sorted(_pair_up(rng, tokens)):
        is_en = any(_english_count(seen[m] + 1) > english[m] for m in group)
        for member in group:
            seen[member] += 1
            english[member] += is_en
        slots.append(_Slot("en" if is_en else "zh", rares=group))

    slots = slots[:n_records]
    n_en_total = n_records - math.ceil(ZH_SHARE * n_records)
    n_rest = n_records - len(slots)
    n_en_rest = min(n_rest, max(0, n_en_total - sum(slot.lang == "en" for slot in slots)))
    slots += [_Slot("en")] * n_en_rest + [_Slot("zh")] * (n_rest - n_en_rest)
    rng.shuffle(slots)
    return slots


def _plan_slot(rng: random.Random, slot: _Slot) -> list[Command]:
    if slot.single:
        return _plan_single(rng, slot.lang, slot.single)
    if slot.rares:
        return _plan_rare_record(rng, slot.lang, slot.rares)
    plans = [ops for ops, _ in MULTI_PLANS]
    return _plan_pipetting(rng, slot.lang, rng.choices(plans, weights=[w for _, w in MULTI_PLANS])[0])


# --- writing text -----------------------------------------------------------------------------


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _english_units(phrase: str) -> str:
    """'1 hours' reads wrong: singular units after a lone 1."""
    return re.sub(r"(?<![\d.])1 (hour|minute|second|min|sec)s\b", r"1 \1", phrase)


def _time_phrase(rng: random.Random, seconds: int, lang: str) -> str:
    """One of the ways people write a duration; every one reads back to exactly `seconds`."""
    zh = lang == "zh"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(seconds, 60)
    options: list[str] = []
    if seconds % 3600 == 0:
        options += [p.format(x=hours) for p in (P.HOURS_ZH if zh else P.HOURS_EN)]
        if zh and hours in P.ZH_NUMERALS:
            options += [f"{P.ZH_NUMERALS[hours]}小时", f"{P.ZH_NUMERALS[hours]}个小时"]
    elif seconds % 1800 == 0:
        fraction = _number(Decimal(seconds) / 3600)
        options += [f"{fraction}小时", f"{fraction} h"] if zh else [f"{fraction} h", f"{fraction} hours"]
        if seconds == 1800:
            options.append("半小时" if zh else "half an hour")
        elif zh and hours in P.ZH_NUMERALS:
            options.append(f"{P.ZH_NUMERALS[hours]}个半小时")  # 5400 s: "一个半小时"
    if hours and rest and rest % 60 == 0:
        options += [p.format(h=hours, m=rest // 60) for p in (P.HOUR_MIN_ZH if zh else P.HOUR_MIN_EN)]
    if seconds % 60 == 0 and seconds < 10800:
        options += [p.format(x=minutes) for p in (P.MINUTES_ZH if zh else P.MINUTES_EN)]
        if zh and minutes in P.ZH_NUMERALS:
            options.append(f"{P.ZH_NUMERALS[minutes]}分钟")
    if seconds > 60 and secs:
        options += [p.format(m=minutes, s=secs) for p in (P.MIN_SEC_ZH if zh else P.MIN_SEC_EN)]
        if secs == 30:
            options.append(f"{minutes}.5分钟" if zh else f"{minutes}.5 min")
    if seconds == 30 and zh:
        options.append("半分钟")
    if seconds <= 300 or not options:
        options += [p.format(x=seconds) for p in (P.SECONDS_ZH if zh else P.SECONDS_EN)]
        if zh and seconds in P.ZH_NUMERALS and seconds >= 10:
            options.append(f"{P.ZH_NUMERALS[seconds]}秒")
    phrase = rng.choice(options)
    return phrase if zh else _english_units(phrase)


def _tip_phrase(rng: random.Random, tip: str, lang: str, single: bool) -> str:
    capacity = load_catalog().tip_types[tip]
    zh = lang == "zh"
    unit = rng.choice(P.UL_UNITS_ZH if zh else P.UL_UNITS_EN)
    size = f"{capacity}{'' if unit in P.GLUED_UNITS or rng.random() < 0.5 else ' '}{unit}"
    if capacity >= 1000 and rng.random() < 0.3:
        ml = rng.choice(P.ML_UNITS_ZH if zh else P.ML_UNITS_EN)
        size = f"{_number(Decimal(capacity) / 1000)}{'' if ml in P.GLUED_UNITS else rng.choice(['', ' '])}{ml}"
    word = rng.choice(P.TIP_WORDS_ZH if zh else P.TIP_WORD_EN_SINGLE if single else P.TIP_WORDS_EN)
    # "200 ultip头" would read as a unit "ultip"; Latin words never touch the unit.
    glued = zh and not word[0].isascii()
    return f"{size}{word}" if glued else f"{size} {word}"


def _volume_phrases(rng: random.Random, vols: list[int | float], lang: str) -> tuple[str, str]:
    """(each, volume): the distributive word (Chinese only) and the volume phrase."""
    zh = lang == "zh"
    uniform = len(set(vols)) == 1
    # Millilitres for larger volumes written once; lists of different volumes stay in microlitres.
    if uniform and vols[0] >= 50 and rng.random() < (0.35 if vols[0] >= 100 else 0.15):
        unit = rng.choice(P.ML_UNITS_ZH if zh else P.ML_UNITS_EN)
        numbers = [_number(Decimal(str(v)) / 1000) for v in vols]
    else:
        unit = rng.choice(P.UL_UNITS_ZH if zh else P.UL_UNITS_EN)
        numbers = [_number(v) for v in vols]
    space = "" if unit in P.GLUED_UNITS or rng.random() < 0.55 else " "
    with_unit = [f"{x}{space}{unit}" for x in numbers]
    if len(vols) == 1:
        return "", with_unit[0]
    if uniform:
        if zh:
            return rng.choice(P.EACH_ZH), with_unit[0]
        return "", with_unit[0] + rng.choice(P.EACH_EN)
    # One volume per channel, in channel order.
    style = rng.randrange(4)
    if zh:
        listed = ["、".join(with_unit), "、".join(numbers) + space + unit, "/".join(numbers) + space + unit][style % 3]
        return rng.choice(P.PER_CHANNEL_ZH), listed
    if style == 0:
        listed = ", ".join(with_unit[:-1]) + " and " + with_unit[-1] + " respectively"
    elif style == 1:
        listed = ", ".join(numbers[:-1]) + " and " + numbers[-1] + f"{space}{unit} respectively"
    elif style == 2:
        listed = "/".join(numbers) + f"{space}{unit} respectively"
    else:
        listed = ", ".join(with_unit[:-1]) + " and " + with_unit[-1] + ", respectively"
    return "", listed


def _channel_phrase(rng: random.Random, channels: list[int], lang: str) -> tuple[str, bool]:
    """(phrase, singular): the channels as text, and whether an English verb after it takes -s."""
    zh = lang == "zh"
    first, last, n = channels[0], channels[-1], len(channels)
    contiguous = channels == list(range(first, last + 1))
    if n == 1:
        pattern = rng.choice(P.CH_ONE_ZH if zh else P.CH_ONE_EN)
    elif channels == list(range(1, 9)):
        pattern = rng.choice(P.CH_ALL_ZH if zh else P.CH_ALL_EN)
    elif contiguous and first == 1:
        pattern = rng.choice(P.CH_FIRST_ZH if zh else P.CH_FIRST_EN)
    elif contiguous:
        pattern = rng.choice(P.CH_SPAN_ZH if zh else P.CH_SPAN_EN)
    elif n == 2 and rng.random() < 0.4:
        pattern = rng.choice(P.CH_PAIR_ZH if zh else P.CH_PAIR_EN)
    else:
        pattern = rng.choice(P.CH_LIST_ZH if zh else P.CH_LIST_EN)
    numbers = [str(c) for c in channels]
    if zh:
        listed = rng.choice(["、", ",", "，"]).join(numbers)
    else:
        listed = rng.choice([", ".join(numbers), ", ".join(numbers[:-1]) + " and " + numbers[-1], "/".join(numbers)])
    phrase = pattern.format(
        n=n, nz=P.ZH_NUMERALS.get(n, str(n)), nw=P.EN_NUMERALS.get(n, str(n)), a=first, b=last, c=first, lst=listed
    )
    return phrase, n == 1 or phrase.startswith("every ")


def _wells_phrase(rng: random.Random, wells: list[str], lang: str) -> str:
    if len(wells) == 1:
        return wells[0]
    rows = load_catalog().plate_rows
    row_numbers = [rows.index(w[0]) for w in wells]
    consecutive = all(b - a == 1 for a, b in zip(row_numbers, row_numbers[1:]))
    if consecutive and not (len(wells) <= 3 and rng.random() < 0.3):
        separator = rng.choice(P.RANGE_SEPARATORS_ZH if lang == "zh" else P.RANGE_SEPARATORS_EN)
        return f"{wells[0]}{separator}{wells[-1]}"
    if lang == "zh":
        return rng.choice(["、", ",", "，"]).join(wells)
    return ", ".join(wells[:-1]) + rng.choice([", ", " and "]) + wells[-1]


def _name(rng: random.Random, name: str, lang: str) -> str:
    """A labware, program or position name, sometimes in quotes; the name itself is always verbatim."""
    if rng.random() < QUOTE_SHARE:
        return rng.choice(P.QUOTES_ZH if lang == "zh" else P.QUOTES_EN).format(name)
    return name


def _location_phrase(rng: random.Random, labware: str, wells: list[str], lang: str) -> str:
    well_text = _wells_phrase(rng, wells, lang)
    shown = _name(rng, labware, lang)
    if lang == "zh":
        # A Latin label glued to a well name ("Plate1A1") would be unreadable, so it keeps a space.
        if shown[-1].isascii():
            return rng.choice(
                [f"{shown} {well_text}", f"{shown}的{well_text}孔", f"{shown}的{well_text}", f"{shown}上的{well_text}孔"]
            )
        return rng.choice(
            [
                f"{shown}{well_text}",
                f"{shown}的{well_text}孔",
                f"{shown}{well_text}孔",
                f"{shown}{well_text}",
                f"{shown}中{well_text}",
            ]
        )
    noun = "well" if len(wells) == 1 else "wells"
    return rng.choice(
        [
            f"{shown} {well_text}",
            f"{shown} {noun} {well_text}",
            f"{noun} {well_text} of {shown}",
            f"{shown} {well_text}",
            f"{shown} ({well_text})",
        ]
    )


def _fields(rng: random.Random, command: Command, lang: str) -> dict[str, str]:
    params = command.func_parameters
    zh = lang == "zh"
    fields: dict[str, str] = {}
    if "channels" in params:
        fields["ch"], singular = _channel_phrase(rng, params["channels"], lang)
        fields |= SINGULAR_SUBJECT if singular else PLURAL_SUBJECT
        fields["tips"] = "tip" if len(params["channels"]) == 1 else "tips"
    if "ditiType" in params:
        fields["tip"] = _tip_phrase(rng, params["ditiType"], lang, single=len(params["channels"]) == 1)
    if "vols" in params:
        fields["each"], fields["v"] = _volume_phrases(rng, params["vols"], lang)
    if command.func_name == "Transfer":
        fields["src"] = _location_phrase(rng, params["srcLabware"], params["srcWells"], lang)
        fields["dst"] = _location_phrase(rng, params["dstLabware"], params["dstWells"], lang)
    elif "wells" in params:
        location = _location_phrase(rng, params["labware"], params["wells"], lang)
        fields["src"] = fields["dst"] = fields["loc"] = location
    elif "labware" in params:
        fields["lw"] = _name(rng, params["labware"], lang)
    if "times" in params:
        fields["n"] = rng.choice(P.TIMES_ZH if zh else P.TIMES_EN).format(x=params["times"])
    if "seconds" in params:
        fields["t"] = _time_phrase(rng, params["seconds"], lang)
    if "temperature" in params:
        fields["temp"] = rng.choice(P.TEMP_ZH if zh else P.TEMP_EN).format(x=_number(params["temperature"]))
    if "rpm" in params:
        fields["rpm"] = rng.choice(P.RPM_ZH if zh else P.RPM_EN).format(x=params["rpm"])
    if "program" in params:
        fields["prog"] = _name(rng, params["program"], lang)
    if "position" in params:
        fields["pos"] = _name(rng, params["position"], lang)
    return fields


class _TemplateDecks:
    """Deals each command's allowed templates like shuffled cards, so rare commands still show every phrasing."""

    def __init__(self, rng: random.Random, families: frozenset[str]) -> None:
        self._rng = rng
        self._allowed: dict[tuple[str, str, str], list[int]] = {}
        for kind, table in TEMPLATE_TABLES.items():
            for name, by_lang in table.items():
                for lang, templates in by_lang.items():
                    indices = [i for i in range(len(templates)) if f"{name}.{lang}.{kind}.{i}" in families]
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


class _Writer:
    """Writes a planned record as lab text with the phrasing families it is allowed to use."""

    def __init__(self, rng: random.Random, families: frozenset[str]) -> None:
        self._rng = rng
        self._decks = _TemplateDecks(rng, families)
        missing = [
            f"{name}.{lang}"
            for name in P.WITH_CHANNELS
            for lang in ("zh", "en")
            if not self._decks.has("ch", name, lang)
        ]
        if missing:
            raise ValueError(f"no phrasing family left to write {missing} with")

    def _step_text(self, command: Command, lang: str, inherit: bool) -> tuple[str, str]:
        """(text, family id) for one command; `inherit` leaves its channels unstated."""
        rng = self._rng
        name = command.func_name
        kind = "inh" if inherit else "ch"
        index = self._decks.draw(kind, name, lang)
        template = TEMPLATE_TABLES[kind][name][lang][index]
        fields = _fields(rng, command, lang)
        if lang == "zh" and fields.get("each") == "" and re.search(r"\{(?:src|dst|loc)\}\{each\}\{v\}", template):
            # "H4" + "6 μl" would read as "H46 μl"; "H4的6 μl" cannot be misread.
            fields["each"] = "的"
        text = template.format(**fields)
        liquid_class = command.func_parameters.get("liquidClass")
        if liquid_class:
            wrapper = rng.choice(P.LIQUID_CLASS_ZH if lang == "zh" else P.LIQUID_CLASS_EN)
            text = wrapper.format(lc=liquid_class, text=text)
        return text, f"{name}.{lang}.{kind}.{index}"

    def _can_inherit(self, command: Command, lang: str, previous_channels: list[int] | None) -> bool:
        channels = command.func_parameters.get("channels")
        same_channels = channels is not None and channels == previous_channels
        return same_channels and self._decks.has("inh", command.func_name, lang)

    def write(self, commands: Sequence[Command], lang: str) -> tuple[str, tuple[str, ...], bool]:
        """(text, family ids, whether a header states the first step's channels)."""
        rng = self._rng
        zh = lang == "zh"
        multi_line = len(commands) > 1 and rng.random() < MULTI_LINE_SHARE
        first_channels = commands[0].func_parameters.get("channels")
        channel_header = (
            not multi_line
            and self._can_inherit(commands[0], lang, first_channels)
            and rng.random() < CHANNEL_HEADER_SHARE
        )
        header = ""
        if channel_header:
            pattern = rng.choice(P.CHANNEL_HEADERS_ZH if zh else P.CHANNEL_HEADERS_EN)
            header = pattern.format(ch=_channel_phrase(rng, first_channels, lang)[0])
        elif not multi_line and rng.random() < PLAIN_HEADER_SHARE:
            header = rng.choice(P.HEADERS_ZH if zh else P.HEADERS_EN) + ("" if zh else " ")

        steps: list[str] = []
        family_ids: list[str] = []
        previous_channels = first_channels if channel_header else None
        for index, command in enumerate(commands):
            inherit = self._can_inherit(command, lang, previous_channels) and (
                (index == 0 and channel_header) or rng.random() < INHERIT_SHARE
            )
            text, family_id = self._step_text(command, lang, inherit)
            family_ids.append(family_id)
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


# --- near copies ------------------------------------------------------------------------------


def _folded(text: str) -> str:
    """Text reduced to what a near-copy check should compare: no step prefixes, case, spaces or end marks."""
    text = unicodedata.normalize("NFKC", text).casefold()
    lines = (STEP_PREFIX.sub("", line.strip()) for line in text.splitlines())
    return "".join("".join(lines).split()).rstrip("。.")


class NearCopyGuard:
    """Recognizes texts that copy or nearly copy a protected text (the public test examples' inputs).

    Similarity is judged on the text as written and as the model sees it (pipelines.data.normalize.normalize_text),
    both folded. Shared runs are looked for in the written text only: normalization expands ranges
    ("A10-H10" -> eight wells), so any two 8-channel steps on column 10 would share a long run there.
    """

    def __init__(self, protected_texts: Iterable[str]) -> None:
        from pipelines.data.normalize import normalize_text  # pandas and deltalake: only when a guard is wanted

        protected_texts = list(protected_texts)
        self._normalized_view: Callable[[str], str] = lambda text: _folded(normalize_text(text))
        views = {_folded(text) for text in protected_texts} | {self._normalized_view(text) for text in protected_texts}
        self._similar_to = [(text, Counter(text)) for text in sorted(views - {""})]
        written = sorted({_folded(text) for text in protected_texts} - {""})
        self._runs_of = [(text, _shared_run_limit(text)) for text in written]
        # Every shared run is at least this long; its first characters find where one could start.
        self._seed = min((limit for _, limit in self._runs_of), default=1)
        self._seeds: dict[str, list[tuple[int, int]]] = {}
        for number, (text, _) in enumerate(self._runs_of):
            for start in range(len(text) - self._seed + 1):
                self._seeds.setdefault(text[start : start + self._seed], []).append((number, start))

    def is_near_copy(self, text: str) -> bool:
        written = _folded(text)
        if self._shares_a_long_run(written) or self._is_similar(written):
            return True
        normalized = self._normalized_view(text)
        return normalized != written and self._is_similar(normalized)

    def _shares_a_long_run(self, folded: str) -> bool:
        for start in range(len(folded) - self._seed + 1):
            for number, protected_start in self._seeds.get(folded[start : start + self._seed], ()):
                protected, limit = self._runs_of[number]
                length = self._seed
                while (
                    start + length < len(folded)
                    and protected_start + length < len(protected)
                    and folded[start + length] == protected[protected_start + length]
                ):
                    length += 1
                if length >= limit:
                    return True
        return False

    def _is_similar(self, folded: str) -> bool:
        counts = Counter(folded)
        for protected, protected_counts in self._similar_to:
            total = len(folded) + len(protected)
            # Upper bounds first (length, then shared characters), as difflib's real_quick_ratio and
            # quick_ratio do, so the exact ratio runs only for texts that could reach the threshold.
            if 2 * min(len(folded), len(protected)) < NEAR_COPY_RATIO * total:
                continue
            shared = sum(min(n, protected_counts[char]) for char, n in counts.items())
            if 2 * shared < NEAR_COPY_RATIO * total:
                continue
            if difflib.SequenceMatcher(None, folded, protected, autojunk=False).ratio() >= NEAR_COPY_RATIO:
                return True
        return False


def _shared_run_limit(protected: str) -> int:
    """A shared run this long makes a near copy: LONG_SHARED_RUN, or most of a short protected text."""
    return min(LONG_SHARED_RUN, math.ceil(SHORT_TEXT_SHARE * len(protected)))


def read_protected_texts(path: str | os.PathLike[str]) -> list[str]:
    """The inputs of a file in the raw corpus format (the public test examples)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus.public_examples: {path} does not exist (inputs the corpus must never copy)")
    texts = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                texts.append(str(json.loads(line)["conversation"][0]["input"]))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: not a raw corpus record ({error})") from error
    return texts


# --- the corpus -------------------------------------------------------------------------------


def _dedup_key(text: str) -> str:
    """The text without step prefixes and end marks, so two records never differ only there."""
    return "\n".join(STEP_PREFIX.sub("", line).rstrip("。.") for line in text.splitlines())


def _generate(
    n_records: int, rng: random.Random, families: frozenset[str], guard: NearCopyGuard | None
) -> list[GeneratedRecord]:
    if n_records < 1:
        raise ValueError(f"n_records must be at least 1, got {n_records}")
    writer = _Writer(rng, families)
    records: list[GeneratedRecord] = []
    seen: set[str] = set()
    for slot in _plan_slots(rng, n_records):
        for _attempt in range(MAX_ATTEMPTS_PER_RECORD):
            commands = _plan_slot(rng, slot)
            text, family_ids, channel_header = writer.write(commands, slot.lang)
            key = _dedup_key(text)
            if key not in seen and not (guard and guard.is_near_copy(text)):
                break
        else:
            raise ValueError(
                f"no new text for a record like {slot} after {MAX_ATTEMPTS_PER_RECORD} attempts: "
                f"its phrasings are used up; ask for fewer than {n_records} records"
            )
        seen.add(key)
        records.append(GeneratedRecord(slot.lang, text, tuple(commands), family_ids, channel_header))
    return records


def generate_records(
    n_records: int, seed: int, protected_texts: Sequence[str] = ()
) -> list[GeneratedRecord]:
    """The training corpus as planned records, written without the held-out phrasing families."""
    families = frozenset(template_families()) - held_out_families(seed)
    guard = NearCopyGuard(protected_texts) if protected_texts else None
    return _generate(n_records, random.Random(seed), families, guard)


def generate_heldout_records(
    n_records: int, seed: int, protected_texts: Sequence[str] = ()
) -> list[GeneratedRecord]:
    """Records written only with the held-out phrasing families (same plans and shares as training)."""
    guard = NearCopyGuard(protected_texts) if protected_texts else None
    # A stream of its own: the held-out cases do not change with the size of the training corpus.
    return _generate(n_records, random.Random(f"heldout:{seed}"), held_out_families(seed), guard)


def generate_corpus(n_records: int, seed: int) -> list[dict[str, Any]]:
    """Raw corpus records `{"conversation": [...], "phrasing": [...]}`, the same for the same seed."""
    return [record.to_raw() for record in generate_records(n_records, seed)]


def heldout_cases(records: Sequence[GeneratedRecord]) -> list[dict[str, Any]]:
    """The held-out file's lines: ids H0001, H0002, ..."""
    return [record.to_case(f"H{number:04d}") for number, record in enumerate(records, start=1)]


def corpus_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def write_corpus(records: Sequence[dict[str, Any]], path: str | Path) -> str:
    """Write the records as JSONL and return the file's sha256; an identical file is left untouched."""
    path = Path(path)
    content = corpus_bytes(records)
    digest = hashlib.sha256(content).hexdigest()
    if path.is_file() and path.read_bytes() == content:
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a reader never sees half a corpus.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(content)
        temporary = Path(handle.name)
    # NamedTemporaryFile creates the file private (0600); a corpus is data everyone on the machine may read.
    temporary.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(temporary, path)
    return digest


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default="params.yaml", help="params file with a corpus: section (default: %(default)s)"
    )
    parser.add_argument("--output", default=None, help="JSONL file to write (default: corpus.output from params)")
    parser.add_argument(
        "--heldout-output", default=None, help="held-out phrasing-family cases (default: corpus.heldout_output)"
    )
    parser.add_argument("--n-records", type=int, default=None, help="number of records (default: corpus.n_records)")
    parser.add_argument(
        "--heldout-records", type=int, default=None, help="number of held-out cases (default: corpus.heldout_records)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: corpus.seed)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file whose content differs")


def _resolve(args: argparse.Namespace) -> CorpusParams:
    settings = load_params(args.params).corpus
    chosen = {
        "output": args.output,
        "heldout_output": args.heldout_output,
        "n_records": args.n_records,
        "heldout_records": args.heldout_records,
        "seed": args.seed,
    }
    return dataclasses.replace(settings, **{key: value for key, value in chosen.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    settings = _resolve(args)
    protected = read_protected_texts(settings.public_examples) if settings.public_examples else []
    training = generate_records(settings.n_records, settings.seed, protected)
    heldout = generate_heldout_records(settings.heldout_records, settings.seed, protected)
    outputs = [
        (Path(settings.output), [record.to_raw() for record in training]),
        (Path(settings.heldout_output), heldout_cases(heldout)),
    ]
    for output, records in outputs:
        if output.is_file() and output.read_bytes() != corpus_bytes(records) and not args.force:
            print(
                f"error: {output} exists with different content (another seed, size or a hand-made corpus); "
                "pass --force to overwrite it",
                file=sys.stderr,
            )
            return 1
    for output, records in outputs:
        unchanged = output.is_file() and output.read_bytes() == corpus_bytes(records)
        digest = write_corpus(records, output)
        state = "unchanged" if unchanged else "written"
        print(f"{output}: {len(records)} records, seed {settings.seed}, sha256 {digest} ({state})")
    return 0
