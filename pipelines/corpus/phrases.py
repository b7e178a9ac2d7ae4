"""The field values of a step template as lab text: channels, tips, volumes, wells, labels and durations.

Each value has several spellings people use, drawn at random; every one reads back to exactly the value
the plan holds (the record's gold command).
"""

from __future__ import annotations

import random
import re
from decimal import Decimal

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from pipelines.corpus import phrasings as P

QUOTE_SHARE = 0.07  # a labware, program or position name in quotes
# Verb endings that agree with an English channel subject ("channel 4 draws", "channels 1-4 draw").
SINGULAR_SUBJECT = {"s": "s", "es": "es", "ies": "ies"}
PLURAL_SUBJECT = {"s": "", "es": "", "ies": "y"}


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


def channel_phrase(rng: random.Random, channels: list[int], lang: str) -> tuple[str, bool]:
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
                [
                    f"{shown} {well_text}",
                    f"{shown}的{well_text}孔",
                    f"{shown}的{well_text}",
                    f"{shown}上的{well_text}孔",
                ]
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


def step_fields(rng: random.Random, command: Command, lang: str) -> dict[str, str]:
    """The value of every template field `command` fills, as text (see phrasings for the fields)."""
    params = command.func_parameters
    zh = lang == "zh"
    fields: dict[str, str] = {}
    if "channels" in params:
        fields["ch"], singular = channel_phrase(rng, params["channels"], lang)
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
