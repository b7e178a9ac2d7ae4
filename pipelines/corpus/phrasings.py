"""Vocabulary the corpus generator writes lab text with: names, numbers, units, channel phrases, framing.

Step templates, which these words fill, are in `pipelines.corpus.step_templates`; `pipelines.corpus.phrases`
picks among the spellings below.
"""

from __future__ import annotations

import re

# --- names ---------------------------------------------------------------------------------

ZH_LABWARE = (
    "样品板", "细胞板", "储液槽", "反应板", "检测板", "标曲板", "试剂槽", "深孔板",
    "扩增板", "稀释板", "母板", "子板", "缓冲液槽", "培养板", "酶标板", "质控板",
    "洗脱板", "裂解液槽", "血清板", "中转板",
)
EN_LABWARE = (
    "Plate1", "Plate2", "Plate3", "PCR_Plate", "Src_Plate", "Dest_Plate", "Assay_Plate",
    "Deep_Block", "Buffer_Res", "Reagent_Trough", "Sample_Plate", "Dil_Plate", "Cell_Plate",
    "Elution_Plate", "QC_Plate", "Master_Mix", "Lysis_Res", "Wash_Trough", "Std_Plate", "Plate_B2",
)
PCR_PROGRAMS = (
    "Standard_35", "qPCR_40", "Touchdown_60", "HotStart_30x", "RT_Step", "Amp_Long",
    "Colony_PCR", "Gradient_55_65", "Quick_25x", "HRM_Run", "LAMP_65", "Denature_95",
)
POSITIONS = (
    "Deck_1", "Deck_4", "Deck_9", "P3", "P12", "Hotel_2", "Mag_Station", "Shaker_Pos",
    "Heater_1", "Cycler_Dock", "Waste_Pos", "Carrier_5", "Reader_Slot", "Cooling_Block",
    "Stacker_3", "Lid_Park",
)
LIQUID_CLASSES = (
    "Water_Free", "Serum_Slow", "DMSO_Contact", "Glycerol_Viscous", "Buffer_Jet", "Ethanol_Wet",
    "Plasma_Surface", "Beads_Mix",
)

# --- numbers -------------------------------------------------------------------------------

# Volumes (µl) that look like what people pipette, per tip capacity; all fit the tip.
VOLUMES_BY_TIP: dict[str, tuple[int | float, ...]] = {
    "10ul": (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10),
    "50ul": (5, 8, 10, 12, 12.5, 15, 20, 25, 30, 35, 40, 45, 50),
    "200ul": (20, 25, 30, 50, 60, 75, 80, 100, 120, 150, 175, 180, 200),
    "1000ul": (100, 150, 200, 250, 300, 400, 500, 600, 750, 800, 900, 1000),
}
MIX_TIMES = (2, 3, 3, 4, 5, 5, 6, 8, 10, 12, 15, 20)
TEMPERATURES = (4, 16, 25, 30, 37, 37, 37, 42, 50, 55, 56, 60, 65, 68, 72, 95, 37.5)
RPMS = (250, 300, 400, 500, 600, 650, 750, 800, 900, 1000, 1100, 1200, 1500, 1600, 1800, 2000)
SHORT_SECONDS = (5, 10, 15, 20, 30, 40, 45, 60, 80, 90, 100, 120, 150, 180, 300, 600)
LONG_SECONDS = (60, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600, 4500, 5400, 7200, 9000, 10800, 14400)

# --- unit spellings ------------------------------------------------------------------------

UL_UNITS_ZH = ("ul", "uL", "µl", "μL", "µL", "μl", "微升", "微升")
UL_UNITS_EN = ("ul", "uL", "µl", "μL", "µL", "μl")
ML_UNITS_ZH = ("ml", "mL", "毫升", "毫升")
ML_UNITS_EN = ("ml", "mL")
# Units written without a space before them.
GLUED_UNITS = frozenset({"微升", "毫升"})

# Distributive words: the same volume on every channel, or one volume per channel in channel order.
EACH_ZH = ("各", "每孔", "每通道", "各", "每个孔", "每个通道", "每孔各")
PER_CHANNEL_ZH = ("分别", "分别", "依次")
EACH_EN = (" each", " per well", " per channel", " each", " per tip", " apiece")

# Number words: Chinese ones for durations ("五分钟", "两小时") and channel counts ("前四个通道"), English
# ones for channel counts only ("the first four channels").
ZH_NUMERALS = {
    1: "一", 2: "两", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 10: "十", 15: "十五", 20: "二十", 30: "三十",
}
EN_NUMERALS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}

# --- channel phrases (n = count, nz/nw = count in words, a..b = first..last, c = single, lst = list) ----

CH_ALL_ZH = (
    "8通道", "八个通道", "通道1-8", "1-8号通道", "全部8个通道", "1至8号通道", "8个通道", "所有通道", "全部通道",
    "通道1~8",
)
CH_ALL_EN = (
    "8 channels", "all 8 channels", "channels 1-8", "channels 1 to 8", "all eight channels", "every channel",
    "all channels", "channels 1 through 8", "channels 1–8",
)
CH_FIRST_ZH = (
    "前{n}个通道", "通道1-{n}", "1至{n}号通道", "通道1到{n}", "1-{n}号通道", "前{n}通道", "前{nz}个通道",
    "1~{n}号通道",
)
CH_FIRST_EN = (
    "the first {n} channels", "channels 1-{n}", "channels 1 to {n}", "channels 1 through {n}", "ch 1-{n}",
    "the first {nw} channels", "channels 1–{n}",
)
CH_SPAN_ZH = ("通道{a}-{b}", "{a}至{b}号通道", "{a}-{b}号通道", "通道{a}到通道{b}", "第{a}到第{b}通道", "通道{a}~{b}")
CH_SPAN_EN = ("channels {a}-{b}", "channels {a} to {b}", "channels {a} through {b}", "ch {a}-{b}", "channels {a}–{b}")
CH_ONE_ZH = ("通道{c}", "{c}号通道", "第{c}通道", "第{c}号通道", "第{c}个通道")
CH_ONE_EN = ("channel {c}", "ch {c}", "channel #{c}", "channel no. {c}")
CH_LIST_ZH = ("通道{lst}", "{lst}号通道")
CH_LIST_EN = ("channels {lst}", "ch {lst}")
# Two channels named one by one: "通道3与通道5", "channel 3 and channel 6".
CH_PAIR_ZH = ("通道{a}与通道{b}", "通道{a}和{b}", "通道{a}和通道{b}", "{a}号和{b}号通道")
CH_PAIR_EN = ("channel {a} and channel {b}", "channels {a} & {b}")

# --- tips, times, temperatures, speeds -----------------------------------------------------

TIP_WORDS_ZH = ("吸头", "枪头", "tip头", "吸头", "一次性吸头", "Tip")
TIP_WORDS_EN = ("tips", "DiTis", "tips", "pipette tips", "disposable tips")
TIP_WORD_EN_SINGLE = ("tip", "DiTi", "tip", "pipette tip")
TEMP_ZH = ("{x}℃", "{x} °C", "{x}°C", "{x}度", "{x}摄氏度", "{x} ℃")
TEMP_EN = ("{x} °C", "{x}°C", "{x} degrees C", "{x} deg C", "{x}℃", "{x} degrees Celsius", "{x} °C")
RPM_ZH = ("{x} rpm", "{x}rpm", "{x}转/分", "{x}转每分钟", "{x} r/min", "转速{x}", "{x}转/分钟")
RPM_EN = ("{x} rpm", "{x} RPM", "{x} r/min", "{x}rpm")
HOURS_ZH = ("{x}小时", "{x} h", "{x}个小时")
HOURS_EN = ("{x} h", "{x} hours", "{x} hr")
MINUTES_ZH = ("{x}分钟", "{x} min", "{x}分钟", "{x}min")
MINUTES_EN = ("{x} min", "{x} minutes", "{x} mins", "{x}min")
SECONDS_ZH = ("{x}秒", "{x} s", "{x}秒钟", "{x} sec")
SECONDS_EN = ("{x} s", "{x} seconds", "{x} sec", "{x}s")
# Minutes and seconds together ("1分20秒", "2 min 30 s"); hours and minutes together ("1小时15分钟").
MIN_SEC_ZH = ("{m}分{s}秒", "{m}分钟{s}秒", "{m} min {s} s")
MIN_SEC_EN = ("{m} min {s} s", "{m} min {s} sec", "{m} minutes {s} seconds", "{m}min {s}s")
HOUR_MIN_ZH = ("{h}小时{m}分钟", "{h}个小时{m}分钟", "{h} h {m} min")
HOUR_MIN_EN = ("{h} h {m} min", "{h} hours {m} minutes", "{h}h {m}min")
TIMES_ZH = ("{x}次", "{x}遍", "{x}次", "{x}个循环")
TIMES_EN = ("{x} times", "{x}x", "{x} cycles", "{x} times", "{x} strokes")

# --- record framing ------------------------------------------------------------------------

PREFIXES_ZH = ("行{i}:", "行{i}：", "步骤{i}：", "步骤{i}:", "行{i}：", "第{i}步：", "{i}.", "{i}、", "（{i}）")
PREFIXES_EN = ("Line {i}:", "Step {i}.", "Step {i}:", "Line {i}:", "{i}.", "{i})", "({i})")
# Numbered lines of a record written one step per line.
LINE_NUMBERS_ZH = ("{i}.", "{i}、", "步骤{i}：", "（{i}）", "{i})")
LINE_NUMBERS_EN = ("{i}.", "{i})", "Step {i}:", "({i})")
# The step markers above (PREFIXES_*, LINE_NUMBERS_*), as a record may start with them (or each line of
# a numbered multi-line record): exactly what pipelines.data.normalize strips. A bare number needs its
# punctuation and never swallows a decimal ("1.5 ml") or a list of channels ("3、5号通道").
STEP_PREFIX = re.compile(
    r"^(?:行\d+[:：]|步骤\d+[:：]|第\d+步[:：]|Line \d+:|Step \d+[.:]|\d+(?:\.(?!\d)|、(?!\s*\d)|\))|[(（]\d+[)）])\s*"
)
# Headers are content, not step markers: normalization keeps them.
HEADERS_ZH = ("准备：", "预处理：", "操作：", "样品制备：", "实验步骤：")
HEADERS_EN = ("Prep:", "Setup:", "Procedure:", "Sample prep:", "Pipetting:")
# Headers that state the channels for the steps after them: "加样（通道1-4）：".
CHANNEL_HEADERS_ZH = ("加样（{ch}）：", "移液（{ch}）：", "分液（{ch}）：", "样品处理（{ch}）：", "{ch}操作：")
CHANNEL_HEADERS_EN = ("Pipetting ({ch}): ", "Sample loading ({ch}): ", "Setup ({ch}): ", "With {ch}: ")
CONNECTIVES_ZH = (
    "，然后", "，再", "，随后", "；", "，之后", "。然后", "，接着", "，", "后，", "，结束后", "，并", "，完成后",
    "；然后", "。之后", "，紧接着",
)
CONNECTIVES_EN = (
    "; then ", ", then ", ", and then ", ". Then ", "; ", ", after that ", ". Next, ", "; afterwards ", " then ",
    " and then ", "; next, ", ", and ",
)
# Said only before the last step of a record.
FINAL_CONNECTIVES_ZH = ("，最后", "，最后再", "。最后")
FINAL_CONNECTIVES_EN = (", and finally ", "; finally ", ". Finally, ")
ENDINGS_ZH = ("。", "", "。")
ENDINGS_EN = (".", "", ".")
# Labware, program and position names in quotes, as people paste them from a deck layout.
QUOTES_ZH = ("“{}”", "「{}」", '"{}"', "‘{}’")
QUOTES_EN = ('"{}"', "'{}'", "“{}”")
# Well ranges down a column ("A1-D1") and well lists ("A1、C1").
RANGE_SEPARATORS_ZH = ("-", "到", "至", "~", "-", "～", "–", " - ")
RANGE_SEPARATORS_EN = ("-", " to ", " through ", "-", "–", "~", " - ")
LIQUID_CLASS_ZH = ("液体类型{lc}：{text}", "使用液体类{lc}，{text}", "{text}（液体类{lc}）", "{text}，液体类别为{lc}")
LIQUID_CLASS_EN = (
    "liquid class {lc}: {text}", "{text} using liquid class {lc}", "{text} (liquid class {lc})",
    "{text} with liquid class {lc}", "[{lc}] {text}",
)

# Full-width -> half-width punctuation, applied to some Chinese records as people type both.
HALF_WIDTH = str.maketrans({"，": ", ", "：": ":", "；": ";", "（": "(", "）": ")"})
