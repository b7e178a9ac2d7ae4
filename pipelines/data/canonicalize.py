"""Rewrite the amounts of a description into the units and forms of the robot's commands.

The model copies far more reliably than it computes: a 135M model asked to turn "3小时" into 10800 or
"A1-D1" into four wells gets the arithmetic wrong, while it copies "10800s" or "A1,B1,C1,D1" verbatim.
Every rewrite here is one of the catalog's reading rules (command_catalog.yaml `rules:`), done by code:

- volumes: ml / mL / 毫升 x1000, and every microlitre spelling (ul, uL, μl, μL, 微升) -> "<n>ul";
- durations, compound ones too ("1分20秒", "1 h 30 min", "半小时") -> "<seconds>s";
- temperatures (°C, ℃, 度, 摄氏度, "degrees C") -> "<n>°C"; shaking speeds (转/分, 转每分钟, r/min) -> "<n>rpm";
- well ranges ("A1-D1", "A1到D1", "A1 to D1") -> "A1,B1,C1,D1" (down the column, or along a row);
- channel ranges and counts ("通道1-4", "前4个通道", "1至4号通道", "all 8 channels", "channels 1 to 4")
  -> "通道1,2,3,4" / "channels 1,2,3,4".

What is never touched: labels (labware, program, position, liquid class). Each pattern refuses to start
right after an ASCII letter, digit, underscore or dot, so "Buffer_5ml", "Deck_7" or "Fast_40x" stay as
written. The input is already NFKC-folded (full-width digits, "℃" -> "°C", "µ" -> "μ").
`canonicalize` is idempotent: every output form is a fixed point of every rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

_NUM = r"\d+(?:\.\d+)?"
# Not inside an ASCII identifier or a decimal: keeps labels such as "Plate_2ml" or "Deck_7" intact.
_START = r"(?<![A-Za-z0-9_.])"
_END_ASCII = r"(?![A-Za-z0-9_])"
# ASCII word edges: Python's \b counts CJK as word characters, and "然后channels" or "2 hours后" are common.
_WORD_START = r"(?<![A-Za-z0-9_])"

_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_NUM = r"[零一二两三四五六七八九十]+"
_EN_COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_EN_COUNT = r"(?:\d|one|two|three|four|five|six|seven|eight)"


def _zh_number(text: str) -> int:
    """'三' -> 3, '十五' -> 15, '二十' -> 20, '三十五' -> 35 (counts up to 99 are all a step needs)."""
    if "十" not in text:
        return int("".join(str(_ZH_DIGITS[char]) for char in text))
    tens, _, ones = text.partition("十")
    return (_ZH_DIGITS[tens] if tens else 1) * 10 + (_ZH_DIGITS[ones] if ones else 0)


def _number(text: str) -> Decimal:
    if re.fullmatch(_NUM, text):
        return Decimal(text)
    if text.lower() in _EN_COUNTS:
        return Decimal(_EN_COUNTS[text.lower()])
    return Decimal(_zh_number(text))


def format_number(value: Decimal) -> str:
    """20 not 20.0, 3.5 not 3.50: the way the catalog writes numbers."""
    return format(value.normalize(), "f")


# --- volumes ---------------------------------------------------------------------------------------

# No bare comma: in "channels 1-4, 0.5 ml" the 4 is a channel, not a volume.
_LIST_SEP = r"\s*(?:、|和|与|及|(?<![A-Za-z])and(?![A-Za-z]))\s*"
_ML_UNIT = r"(?:[mM][lL]|毫升)"
_UL_UNIT = r"(?:[uμ][lL]|UL|微升)"
# A list of volumes sharing one unit ("0.1、0.2毫升") converts every item, not only the last one.
_ML = re.compile(rf"{_START}({_NUM}(?:{_LIST_SEP}{_NUM})*)\s*{_ML_UNIT}{_END_ASCII}")
_UL = re.compile(rf"{_START}({_NUM})\s*{_UL_UNIT}{_END_ASCII}")
_NUMBER_IN_LIST = re.compile(_NUM)


def _ml_to_ul(match: re.Match[str]) -> str:
    items = match.group(1)
    converted = _NUMBER_IN_LIST.sub(lambda m: format_number(Decimal(m.group(0)) * 1000), items)
    return f"{converted}ul"


def canonical_volumes(text: str) -> str:
    text = _ML.sub(_ml_to_ul, text)
    return _UL.sub(lambda m: f"{format_number(Decimal(m.group(1)))}ul", text)


# --- speeds and temperatures -------------------------------------------------------------------------

_RPM = re.compile(
    rf"{_START}({_NUM})\s*(?:rpm|RPM|Rpm|r/min|转/分钟|转/分|转每分钟|转每分|转(?![\u4e00-\u9fff]))"
)
_RPM_AFTER_WORD = re.compile(rf"(转速|振荡速度|速度)\s*[:为]?\s*({_NUM}){_END_ASCII}(?!\s*(?:rpm|r/min|转))")
_TEMPERATURE = re.compile(
    rf"{_START}({_NUM})\s*(?:°\s*C|°|摄氏度|度|degrees?\s*(?:Celsius|C)(?![A-Za-z])|deg\.?\s*C(?![A-Za-z])|degC(?![A-Za-z]))"
)


def canonical_speeds_and_temperatures(text: str) -> str:
    text = _RPM.sub(lambda m: f"{format_number(Decimal(m.group(1)))}rpm", text)
    text = _RPM_AFTER_WORD.sub(lambda m: f"{m.group(1)}{format_number(Decimal(m.group(2)))}rpm", text)
    return _TEMPERATURE.sub(lambda m: f"{format_number(Decimal(m.group(1)))}°C", text)


# --- durations -------------------------------------------------------------------------------------

_HOUR_UNITS = r"(?:个半小时|个小时|小时|个钟头|钟头|hours?(?![A-Za-z])|hrs?(?![A-Za-z])|h(?![A-Za-z0-9_]))"
# A bare "分" is a minute only where no other word continues it ("分配", "分液" and "每分钟" are not).
_MINUTE_UNITS = (
    r"(?:分钟|分(?=\s*\d+\s*秒)|分(?=之?后|以后)|分(?![\u4e00-\u9fff])|minutes?(?![A-Za-z])|mins?(?![A-Za-z])|min(?![A-Za-z0-9_]))"
)
_SECOND_UNITS = r"(?:秒钟|秒|seconds?(?![A-Za-z])|secs?(?![A-Za-z])|s(?![A-Za-z0-9_]))"
_AMOUNT = rf"(?:{_NUM}|{_ZH_NUM}|半)"
_PART = rf"{_AMOUNT}\s*(?:{_HOUR_UNITS}|{_MINUTE_UNITS}|{_SECOND_UNITS})"
_DURATION = re.compile(rf"{_START}{_PART}(?:\s*(?:and\s+)?{_PART})*")
_PART_SPLIT = re.compile(
    rf"({_AMOUNT})\s*(?:(?P<h>{_HOUR_UNITS})|(?P<m>{_MINUTE_UNITS})|(?P<s>{_SECOND_UNITS}))"
)
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def _duration_seconds(text: str) -> Decimal:
    total = Decimal(0)
    for part in _PART_SPLIT.finditer(text):
        amount = Decimal("0.5") if part.group(1) == "半" else _number(part.group(1))
        unit = next(name for name in ("h", "m", "s") if part.group(name))
        if part.group("h") and part.group("h").startswith("个半"):
            amount += Decimal("0.5")  # "1个半小时" is an hour and a half
        total += amount * _UNIT_SECONDS[unit]
    return total


_EN_WORD_DURATIONS = re.compile(r"(?<![A-Za-z])(?:(half) an? |an? |one )(hour|minute)(?![A-Za-z])", re.IGNORECASE)


def _en_word_duration(match: re.Match[str]) -> str:
    seconds = 3600 if match.group(2).lower() == "hour" else 60
    return f"{seconds // 2 if match.group(1) else seconds}s"


def canonical_durations(text: str) -> str:
    text = _EN_WORD_DURATIONS.sub(_en_word_duration, text)
    return _DURATION.sub(lambda m: f"{format_number(_duration_seconds(m.group(0)))}s", text)


# --- wells -----------------------------------------------------------------------------------------

_ROWS = "ABCDEFGH"
_WELL = r"([A-H])(1[0-2]|[1-9])"
# What joins the two ends of a range: a dash, or a word for "to".
_DASHES = "-|–|—|~"
_ZH_TO = "到|至"
_EN_TO = r"(?<![A-Za-z])(?:to|through|thru)(?![A-Za-z])"
_RANGE_DASH = rf"\s*(?:{_DASHES}|{_ZH_TO}|{_EN_TO})\s*"
_WELL_RANGE = re.compile(rf"(?<![A-Za-z0-9_]){_WELL}{_RANGE_DASH}{_WELL}(?![0-9])")


def _expand_wells(match: re.Match[str]) -> str:
    row_a, col_a, row_b, col_b = match.group(1), int(match.group(2)), match.group(3), int(match.group(4))
    if col_a == col_b and row_a < row_b:
        rows = _ROWS[_ROWS.index(row_a) : _ROWS.index(row_b) + 1]
        return ",".join(f"{row}{col_a}" for row in rows)
    if row_a == row_b and col_a < col_b:
        return ",".join(f"{row_a}{col}" for col in range(col_a, col_b + 1))
    return match.group(0)  # a block or a backwards range has no reading rule: leave it as written


def canonical_wells(text: str) -> str:
    return _WELL_RANGE.sub(_expand_wells, text)


# --- channels --------------------------------------------------------------------------------------

_CHANNEL_NUM = r"([1-8])"
_CHANNEL_COUNT_ZH = r"([1-8]|[一二两三四五六七八])"
_ZH_CHANNEL_PATTERNS = (
    # 通道1-4, 通道1到通道4, 第1到第4通道, 1-4号通道, 1至4号通道
    re.compile(rf"通道\s*{_CHANNEL_NUM}\s*(?:{_DASHES}|{_ZH_TO})\s*(?:通道)?\s*{_CHANNEL_NUM}(?![0-9])"),
    re.compile(rf"(?<![0-9A-Za-z_])第?\s*{_CHANNEL_NUM}\s*(?:{_DASHES}|{_ZH_TO})\s*第?\s*{_CHANNEL_NUM}\s*号?\s*通道"),
)
# "2,8通道" lists channels 2 and 8; "H5孔,8通道" counts eight.
_ZH_CHANNEL_COUNTS = re.compile(rf"(?:前|全部|所有)?\s*(?<![0-9第号、])(?<![0-9],)({_CHANNEL_COUNT_ZH})\s*个?\s*通道")
_ZH_ALL_CHANNELS = re.compile(r"(?:全部|所有)通道")
_EN_CHANNEL_RANGE = re.compile(
    rf"{_WORD_START}(?:channels?|ch\.?)\s*{_CHANNEL_NUM}\s*(?:{_DASHES}|{_EN_TO})\s*"
    rf"(?:channel\s*)?{_CHANNEL_NUM}(?![0-9])",
    re.IGNORECASE,
)
_EN_CHANNEL_COUNTS = re.compile(
    rf"{_WORD_START}(?:(?:the\s+)?first\s+|all\s+(?:the\s+)?)?({_EN_COUNT})\s+channels(?![A-Za-z])", re.IGNORECASE
)
_EN_ALL_CHANNELS = re.compile(rf"{_WORD_START}(?:all(?:\s+the)?|every)\s+channels?(?![A-Za-z])", re.IGNORECASE)


def _channel_list(first: int, last: int) -> str:
    return ",".join(str(channel) for channel in range(first, last + 1))


def _channel_range(prefix: str) -> Callable[[re.Match[str]], str]:
    """A rewrite of a matched channel range (first, last) to `prefix` + "1,2,...", or as written if backwards."""

    def rewrite(match: re.Match[str]) -> str:
        first, last = int(match.group(1)), int(match.group(2))
        return f"{prefix}{_channel_list(first, last)}" if first < last else match.group(0)

    return rewrite


_zh_range = _channel_range("通道")
_en_range = _channel_range("channels ")


def _zh_count(match: re.Match[str]) -> str:
    count = int(_number(match.group(1)))
    # "3号通道" / "第3通道" name channel 3 and never reach here (the lookbehind and "号" keep them out).
    return f"通道{_channel_list(1, count)}"


def _en_count(match: re.Match[str]) -> str:
    count = int(_number(match.group(1)))
    return f"channels {_channel_list(1, count)}" if 1 <= count <= 8 else match.group(0)


def canonical_channels(text: str) -> str:
    for pattern in _ZH_CHANNEL_PATTERNS:
        text = pattern.sub(_zh_range, text)
    text = _ZH_CHANNEL_COUNTS.sub(_zh_count, text)
    text = _ZH_ALL_CHANNELS.sub(f"通道{_channel_list(1, 8)}", text)
    text = _EN_CHANNEL_RANGE.sub(_en_range, text)
    text = _EN_CHANNEL_COUNTS.sub(_en_count, text)
    return _EN_ALL_CHANNELS.sub(f"channels {_channel_list(1, 8)}", text)


def canonicalize(text: str) -> str:
    """One line of NFKC-folded description with every amount in the commands' own units and forms."""
    text = canonical_volumes(text)
    text = canonical_speeds_and_temperatures(text)
    text = canonical_durations(text)
    text = canonical_wells(text)
    return canonical_channels(text)
