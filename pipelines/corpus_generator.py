"""Generate the bundled seed corpus (data/raw/training_data.jsonl) deterministically from a fixed seed.

Each record is planned as catalog commands first and only then written as lab text, so the text and
its gold commands always agree. The plan keeps the seed corpus's long tail: tip handling and pipetting
in most records, Mix and Transfer in some, and PCR, Delay, Incubate, Shake and MoveLabware in a few
percent each (an exact quota per rare command, so the shares do not drift with the seed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from data_contracts.forms import render_text_commands
from pipelines import corpus_phrasings as P
from pipelines.config import load_params

RARE_COMMANDS = ("PCR", "Delay", "Incubate", "Shake", "MoveLabware")
RARE_SHARE = 0.035  # records containing each rare command, as a share of all records
ZH_SHARE = 0.65
MAX_COMMANDS = 6
STEP_PREFIX = re.compile(r"^(?:行\d+[:：]|步骤\d+[:：]|Line \d+:|Step \d+[.:])\s*")

# Pipetting plans (operation sequences) for the records without rare commands, with their weights.
# get = GetDiti, asp = Aspirate, disp = Dispense, drop = DropDiti, split = two Dispenses of half each.
PIPETTING_PLANS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("get",), 6),
    (("asp",), 5),
    (("disp",), 5),
    (("drop",), 4),
    (("mix",), 4),
    (("transfer",), 4),
    (("get", "asp"), 7),
    (("asp", "disp"), 5),
    (("disp", "drop"), 2),
    (("drop", "get"), 2),
    (("get", "asp", "disp"), 6),
    (("asp", "disp", "drop"), 4),
    (("get", "transfer"), 3),
    (("get", "mix", "drop"), 3),
    (("get", "transfer", "drop"), 6),
    (("get", "asp", "disp", "drop"), 18),
    (("get", "transfer", "mix", "drop"), 3),
    (("get", "asp", "disp", "mix", "drop"), 7),
    (("get", "asp", "split", "drop"), 4),
    (("get", "asp", "disp", "drop", "get", "asp"), 3),
)
# Verb and noun endings that agree with an English channel subject ("channel 4 draws", "channels 1-4 draw").
SINGULAR_SUBJECT = {"s": "s", "es": "es", "ies": "ies", "tips": "tip"}
PLURAL_SUBJECT = {"s": "", "es": "", "ies": "y", "tips": "tips"}
TIP_WEIGHTS = {"10ul": 0.15, "50ul": 0.25, "200ul": 0.4, "1000ul": 0.2}


@dataclass(frozen=True)
class GeneratedRecord:
    """One corpus record with what the tests want to know about how it was written."""

    lang: str  # "zh" | "en"
    text: str
    commands: tuple[Command, ...]
    templates: tuple[str, ...]  # one template id per command, e.g. "Aspirate.zh.ch.3"

    def to_raw(self) -> dict[str, Any]:
        return {"conversation": [{"input": self.text, "output": render_text_commands(self.commands)}]}


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
    if n > 1 and n <= 4 and rng.random() < 0.15:
        return [rng.choice(choices) for _ in range(n)]
    return [rng.choice(choices)] * n


def _pick_labware(rng: random.Random, lang: str, avoid: Sequence[str] = ()) -> str:
    pool = P.ZH_LABWARE if lang == "zh" and rng.random() < 0.75 else P.EN_LABWARE
    return rng.choice([name for name in pool if name not in avoid])


def _liquid_class(rng: random.Random) -> dict[str, str]:
    return {"liquidClass": rng.choice(P.LIQUID_CLASSES)} if rng.random() < 0.07 else {}


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
        return Command(func_name="Delay", func_parameters={"seconds": rng.choice(P.SHORT_SECONDS + P.LONG_SECONDS[:6])})
    if name == "Incubate":
        params = {"labware": lw, "temperature": rng.choice(P.TEMPERATURES), "seconds": rng.choice(P.LONG_SECONDS)}
        return Command(func_name="Incubate", func_parameters=params)
    if name == "Shake":
        params = {"labware": lw, "rpm": rng.choice(P.RPMS), "seconds": rng.choice(P.SHORT_SECONDS[2:] + (900, 1200))}
        return Command(func_name="Shake", func_parameters=params)
    if name == "MoveLabware":
        return Command(func_name="MoveLabware", func_parameters={"labware": lw, "position": rng.choice(P.POSITIONS)})
    raise ValueError(f"{name} is not a rare command")


def _plan_rare_record(rng: random.Random, lang: str, rares: Sequence[str]) -> list[Command]:
    """Rare commands alone, or around a short pipetting plan whose plate they then act on."""
    base: list[Command] = []
    if rng.random() < 0.5:
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


def _rare_groups(rng: random.Random, n_records: int) -> list[tuple[str, ...]]:
    """Exactly round(RARE_SHARE * n) records per rare command, some holding two different ones."""
    per_command = max(1, round(RARE_SHARE * n_records))
    tokens = [name for name in RARE_COMMANDS for _ in range(per_command)]
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


def _language_slots(rng: random.Random, n_records: int) -> list[tuple[str, tuple[str, ...] | None]]:
    """(language, rare commands or None) per record, in a shuffled order.

    Each rare command's records get their own share of English, so its few records still show
    English phrasings; the remaining records make up the corpus-wide share.
    """
    n_en_total = n_records - math.ceil(ZH_SHARE * n_records)
    groups = sorted(_rare_groups(rng, n_records)[:n_records])
    rare_slots: list[tuple[str, tuple[str, ...] | None]] = []
    seen: dict[str, int] = dict.fromkeys(RARE_COMMANDS, 0)
    english: dict[str, int] = dict.fromkeys(RARE_COMMANDS, 0)
    for group in groups:
        is_en = n_en_total > 0 and any(math.floor((seen[m] + 1) * (1 - ZH_SHARE)) > english[m] for m in group)
        for member in group:
            seen[member] += 1
            english[member] += is_en
        rare_slots.append(("en" if is_en else "zh", group))
    n_en_rest = max(0, n_en_total - sum(lang == "en" for lang, _ in rare_slots))
    n_rest = n_records - len(rare_slots)
    rest_slots: list[tuple[str, tuple[str, ...] | None]] = [("en", None)] * min(n_en_rest, n_rest)
    rest_slots += [("zh", None)] * (n_rest - len(rest_slots))
    slots = rare_slots + rest_slots
    rng.shuffle(slots)
    return slots


# --- writing text -----------------------------------------------------------------------------


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _channel_phrase(rng: random.Random, channels: list[int], lang: str) -> str:
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
    else:
        pattern = rng.choice(P.CH_LIST_ZH if zh else P.CH_LIST_EN)
    numbers = [str(c) for c in channels]
    if zh:
        listed = rng.choice(["、", ",", "，"]).join(numbers)
        if n == 2 and rng.random() < 0.3:
            return rng.choice([f"通道{first}与通道{last}", f"通道{first}和{last}"])
    else:
        listed = rng.choice([", ".join(numbers), ", ".join(numbers[:-1]) + " and " + numbers[-1], "/".join(numbers)])
    return pattern.format(n=n, a=first, b=last, c=first, lst=listed)


def _tip_phrase(rng: random.Random, tip: str, lang: str, single: bool) -> str:
    capacity = load_catalog().tip_types[tip]
    zh = lang == "zh"
    units = P.UL_UNITS_ZH if zh else P.UL_UNITS_EN
    unit = rng.choice(units)
    size = f"{capacity}{'' if unit in ('微升',) or rng.random() < 0.5 else ' '}{unit}"
    if capacity >= 1000 and rng.random() < 0.3:
        ml = rng.choice(P.ML_UNITS_ZH if zh else P.ML_UNITS_EN)
        size = f"{_number(Decimal(capacity) / 1000)}{'' if ml == '毫升' else rng.choice(['', ' '])}{ml}"
    word = rng.choice(P.TIP_WORDS_ZH if zh else P.TIP_WORD_EN_SINGLE if single else P.TIP_WORDS_EN)
    # "200 ultip头" would read as a unit "ultip"; Latin words never touch the unit.
    glued = zh and not word[0].isascii()
    return f"{size}{word}" if glued else f"{size} {word}"


def _volume_phrases(rng: random.Random, vols: list[int | float], lang: str) -> tuple[str, str]:
    """(each, volume): the distributive word (Chinese only) and the volume phrase."""
    zh = lang == "zh"
    use_ml = min(vols) >= 100 and all(Decimal(str(v)) % 10 == 0 for v in vols) and rng.random() < 0.3
    if use_ml:
        unit = rng.choice(P.ML_UNITS_ZH if zh else P.ML_UNITS_EN)
        numbers = [_number(Decimal(str(v)) / 1000) for v in vols]
    else:
        unit = rng.choice(P.UL_UNITS_ZH if zh else P.UL_UNITS_EN)
        numbers = [_number(v) for v in vols]
    space = "" if unit in ("微升", "毫升") or rng.random() < 0.55 else " "
    with_unit = [f"{x}{space}{unit}" for x in numbers]
    uniform = len(set(vols)) == 1
    if zh:
        if len(vols) == 1:
            return "", with_unit[0]
        if uniform:
            return rng.choice(["各", "每孔", "每通道", "各", "每个孔"]), with_unit[0]
        if rng.random() < 0.5:
            return "分别", "、".join(with_unit)
        return "分别", "、".join(numbers) + f"{space}{unit}"
    if len(vols) == 1:
        return "", with_unit[0]
    if uniform:
        return "", with_unit[0] + rng.choice([" each", " per well", " per channel", " each"])
    joined = ", ".join(with_unit[:-1]) + " and " + with_unit[-1]
    if rng.random() < 0.5:
        joined = ", ".join(numbers[:-1]) + " and " + numbers[-1] + f"{space}{unit}"
    return "", joined + " respectively"


def _wells_phrase(rng: random.Random, wells: list[str], lang: str) -> str:
    if len(wells) == 1:
        return wells[0]
    rows = load_catalog().plate_rows
    row_numbers = [rows.index(w[0]) for w in wells]
    consecutive = all(b - a == 1 for a, b in zip(row_numbers, row_numbers[1:]))
    if consecutive and not (len(wells) <= 3 and rng.random() < 0.3):
        separator = rng.choice(["-", "到", "至", "~", "-"] if lang == "zh" else ["-", " to ", " through ", "-"])
        return f"{wells[0]}{separator}{wells[-1]}"
    if lang == "zh":
        return rng.choice(["、", ",", "，"]).join(wells)
    return ", ".join(wells[:-1]) + rng.choice([", ", " and "]) + wells[-1]


def _location_phrase(rng: random.Random, labware: str, wells: list[str], lang: str) -> str:
    well_text = _wells_phrase(rng, wells, lang)
    if lang == "zh":
        # A Latin label glued to a well name ("Plate1A1") would be unreadable, so it keeps a space.
        if labware.isascii():
            return rng.choice([f"{labware} {well_text}", f"{labware}的{well_text}孔", f"{labware}的{well_text}"])
        return rng.choice(
            [f"{labware}{well_text}", f"{labware}的{well_text}孔", f"{labware}{well_text}孔", f"{labware}{well_text}"]
        )
    noun = "well" if len(wells) == 1 else "wells"
    return rng.choice(
        [
            f"{labware} {well_text}",
            f"{labware} {noun} {well_text}",
            f"{noun} {well_text} of {labware}",
            f"{labware} {well_text}",
        ]
    )


def _time_phrase(rng: random.Random, seconds: int, lang: str) -> str:
    zh = lang == "zh"
    options: list[str] = []
    if seconds % 3600 == 0:
        hours = seconds // 3600
        options += [p.format(x=hours) for p in (P.HOURS_ZH if zh else P.HOURS_EN)]
    elif seconds % 1800 == 0 and seconds > 1800:
        options.append(f"{seconds / 3600}小时" if zh else f"{seconds / 3600} h")
    if seconds == 1800:
        options.append("半小时" if zh else "half an hour")
    if seconds % 60 == 0 and seconds < 7200:
        options += [p.format(x=seconds // 60) for p in (P.MINUTES_ZH if zh else P.MINUTES_EN)]
    if seconds == 90:
        options.append("1.5分钟" if zh else "1.5 min")
    if seconds <= 300 or not options:
        options += [p.format(x=seconds) for p in (P.SECONDS_ZH if zh else P.SECONDS_EN)]
    phrase = rng.choice(options)
    if not zh:
        # "1 hours" reads wrong; singular for one.
        for plural in ("hours", "minutes", "seconds", "mins"):
            if phrase == f"1 {plural}":
                phrase = f"1 {plural.rstrip('s')}"
    return phrase


def _fields(rng: random.Random, command: Command, lang: str) -> dict[str, str]:
    params = command.func_parameters
    zh = lang == "zh"
    fields: dict[str, str] = {}
    if "channels" in params:
        fields["ch"] = _channel_phrase(rng, params["channels"], lang)
        single = len(params["channels"]) == 1
        fields |= SINGULAR_SUBJECT if single else PLURAL_SUBJECT
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
        fields["lw"] = params["labware"]
    if "times" in params:
        fields["n"] = rng.choice(P.TIMES_ZH if zh else P.TIMES_EN).format(x=params["times"])
    if "seconds" in params:
        fields["t"] = _time_phrase(rng, params["seconds"], lang)
    if "temperature" in params:
        fields["temp"] = rng.choice(P.TEMP_ZH if zh else P.TEMP_EN).format(x=_number(params["temperature"]))
    if "rpm" in params:
        fields["rpm"] = rng.choice(P.RPM_ZH if zh else P.RPM_EN).format(x=params["rpm"])
    if "program" in params:
        fields["prog"] = params["program"]
    if "position" in params:
        fields["pos"] = params["position"]
    return fields


def _with_liquid_class(rng: random.Random, text: str, liquid_class: str, lang: str) -> str:
    if lang == "zh":
        return rng.choice(
            [f"液体类型{liquid_class}：{text}", f"使用液体类{liquid_class}，{text}", f"{text}（液体类{liquid_class}）"]
        )
    return rng.choice(
        [
            f"liquid class {liquid_class}: {text}",
            f"{text} using liquid class {liquid_class}",
            f"{text} (liquid class {liquid_class})",
        ]
    )


class _TemplateDecks:
    """Deals each command's templates like shuffled cards, so rare commands still show every phrasing."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._decks: dict[tuple[str, str, str], list[int]] = {}

    def draw(self, kind: str, name: str, lang: str, size: int) -> int:
        deck = self._decks.setdefault((kind, name, lang), [])
        if not deck:
            deck.extend(range(size))
            self._rng.shuffle(deck)
        return deck.pop()


def _step_text(
    rng: random.Random, decks: _TemplateDecks, command: Command, lang: str, inherit: bool
) -> tuple[str, str]:
    """(text, template id) for one command; `inherit` leaves its channels unstated."""
    name = command.func_name
    table, kind = (P.INHERITED, "inh") if inherit else (P.WITH_CHANNELS, "ch")
    templates = table[name][lang]
    index = decks.draw(kind, name, lang, len(templates))
    template = templates[index]
    fields = _fields(rng, command, lang)
    if "each" in fields and "{each}" not in template:
        fields["v"] = fields["each"] + fields["v"]
    if lang == "zh" and fields.get("each") == "" and re.search(r"\{(?:src|dst|loc)\}\{each\}\{v\}", template):
        # "H4" + "6 μl" would read as "H46 μl"; "H4的6 μl" cannot be misread.
        fields["each"] = "的"
    text = template.format(**fields)
    liquid_class = command.func_parameters.get("liquidClass")
    if liquid_class:
        text = _with_liquid_class(rng, text, liquid_class, lang)
    return text, f"{name}.{lang}.{kind}.{index}"


def _write_text(
    rng: random.Random, decks: _TemplateDecks, commands: Sequence[Command], lang: str
) -> tuple[str, tuple[str, ...]]:
    zh = lang == "zh"
    parts: list[str] = []
    template_ids: list[str] = []
    previous_channels = None
    for index, command in enumerate(commands):
        channels = command.func_parameters.get("channels")
        inherit = (
            channels is not None
            and channels == previous_channels
            and command.func_name in P.INHERITED
            and rng.random() < 0.65
        )
        text, template_id = _step_text(rng, decks, command, lang, inherit)
        template_ids.append(template_id)
        if index > 0:
            final = index == len(commands) - 1 >= 2 and rng.random() < 0.25
            if final:
                connectives = P.FINAL_CONNECTIVES_ZH if zh else P.FINAL_CONNECTIVES_EN
            else:
                connectives = P.CONNECTIVES_ZH if zh else P.CONNECTIVES_EN
            text = rng.choice(connectives) + text
        parts.append(text)
        previous_channels = channels
    body = "".join(parts)
    if not zh:
        body = body[0].upper() + body[1:]
    body += rng.choice(P.ENDINGS_ZH if zh else P.ENDINGS_EN)
    if zh and rng.random() < 0.25:
        body = body.translate(P.HALF_WIDTH).replace(" ,", ",").replace("  ", " ")
    if rng.random() < 0.5:
        prefix = rng.choice(P.PREFIXES_ZH if zh else P.PREFIXES_EN).format(i=rng.randint(1, 12))
        separator = (" " if rng.random() < 0.2 else "") if zh else " "
        body = f"{prefix}{separator}{body}"
    return body, tuple(template_ids)


# --- the corpus -------------------------------------------------------------------------------


def _dedup_key(text: str) -> str:
    """The text without its step prefix and end mark, so two records never differ only there."""
    return STEP_PREFIX.sub("", text).rstrip("。.")


def generate_records(n_records: int, seed: int) -> list[GeneratedRecord]:
    """The corpus as planned records: command plans, texts and the templates that wrote them."""
    if n_records < 1:
        raise ValueError(f"n_records must be at least 1, got {n_records}")
    rng = random.Random(seed)
    slots = _language_slots(rng, n_records)
    plans = [ops for ops, _ in PIPETTING_PLANS]
    weights = [weight for _, weight in PIPETTING_PLANS]

    decks = _TemplateDecks(rng)
    records: list[GeneratedRecord] = []
    seen: set[str] = set()
    for lang, rares in slots:
        while True:
            if rares:
                commands = _plan_rare_record(rng, lang, rares)
            else:
                commands = _plan_pipetting(rng, lang, rng.choices(plans, weights=weights)[0])
            text, template_ids = _write_text(rng, decks, commands, lang)
            key = _dedup_key(text)
            if key not in seen:
                break
        seen.add(key)
        records.append(GeneratedRecord(lang=lang, text=text, commands=tuple(commands), templates=template_ids))
    return records


def generate_corpus(n_records: int, seed: int) -> list[dict[str, Any]]:
    """Raw corpus records `{"conversation": [{"input": ..., "output": ...}]}`, the same for the same seed."""
    return [record.to_raw() for record in generate_records(n_records, seed)]


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
    os.replace(temporary, path)
    return digest


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default="params.yaml", help="params file with a corpus: section (default: %(default)s)"
    )
    parser.add_argument("--output", default=None, help="JSONL file to write (default: corpus.output from params)")
    parser.add_argument("--n-records", type=int, default=None, help="number of records (default: corpus.n_records)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: corpus.seed)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file whose content differs")


def run(args: argparse.Namespace) -> int:
    settings = load_params(args.params).corpus
    output = Path(args.output or settings.output)
    n_records = args.n_records if args.n_records is not None else settings.n_records
    seed = args.seed if args.seed is not None else settings.seed
    records = generate_corpus(n_records, seed)
    content = corpus_bytes(records)
    if output.is_file() and output.read_bytes() != content and not args.force:
        print(
            f"error: {output} exists with different content (another seed, size or a hand-made corpus); "
            "pass --force to overwrite it",
            file=sys.stderr,
        )
        return 1
    unchanged = output.is_file() and output.read_bytes() == content
    digest = write_corpus(records, output)
    state = "unchanged" if unchanged else "written"
    print(f"{output}: {len(records)} records, seed {seed}, sha256 {digest} ({state})")
    return 0
