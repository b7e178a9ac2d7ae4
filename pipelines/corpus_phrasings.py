"""Vocabulary and sentence templates the corpus generator writes lab text with.

Templates are `str.format` patterns. The fields a command's templates may use:

- GetDiti: ch, tip                    - DropDiti: ch
- Aspirate: ch, src, each, v          - Dispense: ch, dst, each, v
- Mix: ch, loc, each, v, n            - Transfer: ch, src, dst, each, v
- PCR: lw, prog                       - Delay: t
- Incubate: lw, temp, t               - Shake: lw, rpm, t
- MoveLabware: lw, pos

`each` is the Chinese distributive adverb ("各", "每孔", "分别", or empty); English volume phrases
already carry "each"/"per well"/"respectively", so English templates use only `v`. English templates
whose subject is the channel phrase agree with it through `s`, `es`, `ies` ("channel 4 draws",
"channels 1-4 draw") and `tips` ("tip" for one channel).
`WITH_CHANNELS` templates state the channels; `INHERITED` ones leave them out, for a step that uses
the channels of the step before it (the catalog's channel-inheritance rule).
"""

from __future__ import annotations

# --- names ---------------------------------------------------------------------------------

ZH_LABWARE = (
    "样品板", "细胞板", "储液槽", "反应板", "检测板", "标曲板", "试剂槽", "深孔板",
    "扩增板", "稀释板", "母板", "子板", "缓冲液槽", "培养板", "酶标板", "质控板",
)
EN_LABWARE = (
    "Plate1", "Plate2", "Plate3", "PCR_Plate", "Src_Plate", "Dest_Plate", "Assay_Plate",
    "Deep_Block", "Buffer_Res", "Reagent_Trough", "Sample_Plate", "Dil_Plate", "Cell_Plate",
    "Elution_Plate", "QC_Plate", "Master_Mix",
)
PCR_PROGRAMS = (
    "Standard_35", "qPCR_40", "Touchdown_60", "HotStart_30x", "RT_Step", "Amp_Long",
    "Colony_PCR", "Gradient_55_65", "Quick_25x", "HRM_Run",
)
POSITIONS = (
    "Deck_1", "Deck_4", "Deck_9", "P3", "P12", "Hotel_2", "Mag_Station", "Shaker_Pos",
    "Heater_1", "Cycler_Dock", "Waste_Pos", "Carrier_5", "Reader_Slot", "Cooling_Block",
)
LIQUID_CLASSES = (
    "Water_Free", "Serum_Slow", "DMSO_Contact", "Glycerol_Viscous", "Buffer_Jet", "Ethanol_Wet",
)

# --- numbers -------------------------------------------------------------------------------

# Volumes (µl) that look like what people pipette, per tip capacity; all fit the tip.
VOLUMES_BY_TIP: dict[str, tuple[int | float, ...]] = {
    "10ul": (1, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10),
    "50ul": (5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50),
    "200ul": (20, 25, 30, 50, 60, 75, 80, 100, 120, 150, 180, 200),
    "1000ul": (100, 150, 200, 250, 300, 400, 500, 600, 750, 800, 900, 1000),
}
MIX_TIMES = (2, 3, 3, 5, 5, 6, 8, 10, 12, 15, 20)
TEMPERATURES = (4, 16, 25, 30, 37, 37, 37, 42, 50, 56, 60, 65, 72, 95, 37.5)
RPMS = (300, 400, 500, 600, 750, 800, 900, 1000, 1200, 1500, 1800, 2000)
SHORT_SECONDS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600)
LONG_SECONDS = (60, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400)

# --- unit spellings ------------------------------------------------------------------------

UL_UNITS_ZH = ("ul", "uL", "µl", "μL", "µL", "μl", "微升", "微升")
UL_UNITS_EN = ("ul", "uL", "µl", "μL", "µL", "μl")
ML_UNITS_ZH = ("ml", "mL", "毫升", "毫升")
ML_UNITS_EN = ("ml", "mL")

# --- channel phrases (n = count, a..b = first..last, c = single, lst = list) ---------------

CH_ALL_ZH = ("8通道", "八个通道", "通道1-8", "1-8号通道", "全部8个通道", "1至8号通道", "8个通道")
CH_ALL_EN = ("8 channels", "all 8 channels", "channels 1-8", "channels 1 to 8", "all eight channels")
CH_FIRST_ZH = ("前{n}个通道", "通道1-{n}", "1至{n}号通道", "通道1到{n}", "1-{n}号通道", "前{n}通道")
CH_FIRST_EN = ("the first {n} channels", "channels 1-{n}", "channels 1 to {n}", "channels 1 through {n}", "ch 1-{n}")
CH_SPAN_ZH = ("通道{a}-{b}", "{a}至{b}号通道", "{a}-{b}号通道", "通道{a}到通道{b}", "第{a}到第{b}通道")
CH_SPAN_EN = ("channels {a}-{b}", "channels {a} to {b}", "channels {a} through {b}", "ch {a}-{b}")
CH_ONE_ZH = ("通道{c}", "{c}号通道", "第{c}通道", "第{c}号通道")
CH_ONE_EN = ("channel {c}", "ch {c}", "channel #{c}")
CH_LIST_ZH = ("通道{lst}", "{lst}号通道")
CH_LIST_EN = ("channels {lst}",)

# --- tips, times, temperatures, speeds -----------------------------------------------------

TIP_WORDS_ZH = ("吸头", "枪头", "tip头", "吸头")
TIP_WORDS_EN = ("tips", "DiTis", "tips")
TIP_WORD_EN_SINGLE = ("tip", "DiTi", "tip")
TEMP_ZH = ("{x}℃", "{x} °C", "{x}°C", "{x}度", "{x}摄氏度")
TEMP_EN = ("{x} °C", "{x}°C", "{x} degrees C", "{x} deg C", "{x}℃")
RPM_ZH = ("{x} rpm", "{x}rpm", "{x}转/分", "{x}转每分钟", "{x} r/min", "转速{x}")
RPM_EN = ("{x} rpm", "{x} RPM", "{x} r/min", "{x}rpm")
HOURS_ZH = ("{x}小时", "{x} h", "{x}个小时")
HOURS_EN = ("{x} h", "{x} hours", "{x} hr")
MINUTES_ZH = ("{x}分钟", "{x} min", "{x}分钟", "{x}min")
MINUTES_EN = ("{x} min", "{x} minutes", "{x} mins", "{x}min")
SECONDS_ZH = ("{x}秒", "{x} s", "{x}秒钟", "{x} sec")
SECONDS_EN = ("{x} s", "{x} seconds", "{x} sec", "{x}s")
TIMES_ZH = ("{x}次", "{x}遍")
TIMES_EN = ("{x} times", "{x}x", "{x} cycles")

# --- record framing ------------------------------------------------------------------------

PREFIXES_ZH = ("行{i}:", "行{i}：", "步骤{i}：", "步骤{i}:", "行{i}：")
PREFIXES_EN = ("Line {i}:", "Step {i}.", "Step {i}:", "Line {i}:")
CONNECTIVES_ZH = ("，然后", "，再", "，随后", "；", "，之后", "。然后", "，接着", "，", "后，", "，结束后")
CONNECTIVES_EN = (
    "; then ", ", then ", ", and then ", ". Then ", "; ", ", after that ", ". Next, ", "; afterwards ", ", ",
)
# Said only before the last step of a record.
FINAL_CONNECTIVES_ZH = ("，最后", "，最后再", "。最后")
FINAL_CONNECTIVES_EN = (", and finally ", "; finally ", ". Finally, ")
ENDINGS_ZH = ("。", "", "。")
ENDINGS_EN = (".", "", ".")

# Full-width -> half-width punctuation, applied to some Chinese records as people type both.
HALF_WIDTH = str.maketrans({"，": ", ", "：": ":", "；": ";", "（": "(", "）": ")"})

# --- step templates ------------------------------------------------------------------------

WITH_CHANNELS: dict[str, dict[str, tuple[str, ...]]] = {
    "GetDiti": {
        "zh": (
            "{ch}取{tip}", "{ch}装载{tip}", "{ch}换上{tip}", "给{ch}装上{tip}", "{ch}安装{tip}", "取{tip}（{ch}）",
            "用{ch}拿取新的{tip}", "{ch}上{tip}",
        ),
        "en": (
            "pick up {tip} on {ch}", "load {tip} onto {ch}", "{ch}: get {tip}", "mount {tip} on {ch}",
            "{ch} take{s} new {tip}", "fit {ch} with {tip}", "get fresh {tip} for {ch}", "{ch} pick{s} up {tip}",
        ),
    },
    "DropDiti": {
        "zh": ("{ch}弃去枪头", "{ch}卸下吸头", "{ch}退吸头", "丢弃{ch}上的吸头", "{ch}把枪头打掉", "{ch}脱去吸头", "{ch}退掉枪头"),
        "en": (
            "drop the tips on {ch}", "{ch} eject{s} the {tips}", "discard the tips from {ch}", "{ch}: drop tips",
            "eject the tips of {ch} into the waste", "unload tips from {ch}", "{ch} discard{s} the {tips}",
        ),
    },
    "Aspirate": {
        "zh": (
            "用{ch}从{src}{each}吸取{v}", "{ch}在{src}{each}吸{v}", "{ch}：{src}，{each}吸{v}", "{src}{each}吸取{v}（{ch}）",
            "{ch}自{src}{each}抽取{v}", "{ch}从{src}{each}吸液{v}", "以{ch}吸取{src}{each}{v}",
        ),
        "en": (
            "aspirate {v} from {src} with {ch}", "{ch} aspirate{s} {v} from {src}",
            "draw {v} out of {src} using {ch}", "{ch}: take up {v} from {src}", "from {src}, aspirate {v} on {ch}",
            "pull {v} from {src} ({ch})", "{ch} draw{s} {v} from {src}", "aspirate {v} from {src}, {ch}",
            "{ch} take{s} up {v} from {src}",
        ),
    },
    "Dispense": {
        "zh": (
            "{ch}向{dst}{each}加入{v}", "用{ch}将{v}分配到{dst}", "{ch}注入{dst}，{each}{v}", "{dst}{each}加{v}（{ch}）",
            "{ch}在{dst}{each}排出{v}", "{ch}把液体打入{dst}，{each}{v}", "{ch}往{dst}{each}分液{v}",
        ),
        "en": (
            "dispense {v} into {dst} with {ch}", "{ch} dispense{s} {v} to {dst}", "{ch}: release {v} into {dst}",
            "add {v} to {dst} using {ch}", "deliver {v} into {dst} ({ch})", "{ch} empt{ies} {v} into {dst}",
            "{ch} release{s} {v} into {dst}",
        ),
    },
    "Mix": {
        "zh": (
            "{ch}在{loc}{each}用{v}吹打混匀{n}", "{loc}：{ch}上下吹吸{n}，{each}{v}", "用{ch}混匀{loc}，{v}，{n}",
            "{ch}对{loc}{each}以{v}混合{n}", "{ch}在{loc}吹打{n}混匀（{each}{v}）", "混匀{loc}（{ch}，{v}，{n}）",
        ),
        "en": (
            "mix {loc} {n} with {v} on {ch}", "{ch}: pipette-mix {v} in {loc}, {n}",
            "mix {n} at {v} in {loc} using {ch}", "{ch} mix{es} {loc}, {v}, {n}",
            "pipette up and down {n} in {loc} ({v}, {ch})", "with {ch}, mix {v} in {loc} {n}",
        ),
    },
    "Transfer": {
        "zh": (
            "{ch}把{src}{each}{v}转移到{dst}", "{ch}把{src}{each}{v}转移进{dst}", "用{ch}从{src}转移{v}至{dst}",
            "{ch}：{src} → {dst}，{each}{v}", "将{src}的液体{each}{v}移至{dst}（{ch}）", "{ch}从{src}{each}转{v}到{dst}",
            "转移（{ch}）：{src}到{dst}，{each}{v}",
        ),
        "en": (
            "transfer {v} from {src} to {dst} with {ch}", "{ch}: move {v} from {src} into {dst}",
            "transfer, {ch}: {v}, {src} -> {dst}", "{ch} transfer{s} {v} {src} to {dst}",
            "using {ch}, transfer {v} from {src} over to {dst}", "carry {v} from {src} to {dst} on {ch}",
        ),
    },
    "PCR": {
        "zh": (
            "在{lw}上运行PCR程序{prog}", "热循环仪对{lw}运行{prog}", "{lw}放入PCR仪执行{prog}程序", "对{lw}执行PCR，程序{prog}",
            "启动{prog}扩增程序，板子为{lw}", "{lw}跑PCR（程序：{prog}）",
        ),
        "en": (
            "run PCR program {prog} on {lw}", "thermocycle {lw} with program {prog}",
            "start the {prog} PCR program for {lw}", "{lw}: PCR, program {prog}",
            "put {lw} through the {prog} cycling program", "run {prog} on the cycler for {lw}",
            "thermocycler: run {prog} for {lw}",
        ),
    },
    "Delay": {
        "zh": ("等待{t}", "暂停{t}", "静置{t}", "延时{t}", "计时{t}后继续", "停{t}", "程序暂停{t}"),
        "en": ("wait {t}", "pause for {t}", "delay {t}", "hold for {t}", "let it sit for {t}", "wait for {t}"),
    },
    "Incubate": {
        "zh": (
            "{lw}在{temp}孵育{t}", "将{lw}于{temp}温育{t}", "{lw}置于{temp}下孵育{t}", "孵育{lw}：{temp}，{t}", "{lw}在{temp}保温{t}",
            "把{lw}放到{temp}孵育{t}",
        ),
        "en": (
            "incubate {lw} at {temp} for {t}", "hold {lw} at {temp} for {t}", "keep {lw} at {temp} for {t}",
            "{lw}: incubate {t} at {temp}", "incubate {lw} ({temp}, {t})", "let {lw} incubate at {temp} for {t}",
        ),
    },
    "Shake": {
        "zh": (
            "{lw}以{rpm}振荡{t}", "振荡{lw}，{rpm}，{t}", "将{lw}放在摇床上{rpm}摇{t}", "摇板：{lw}，{rpm}，持续{t}", "{lw}在{rpm}下震荡{t}",
            "{lw}摇匀{t}，{rpm}",
        ),
        "en": (
            "shake {lw} at {rpm} for {t}", "{lw}: shake {t} at {rpm}", "put {lw} on the shaker, {rpm}, {t}",
            "agitate {lw} at {rpm} for {t}", "orbital shake {lw} ({rpm}, {t})", "shake {lw} for {t} at {rpm}",
        ),
    },
    "MoveLabware": {
        "zh": ("把{lw}移到{pos}", "夹爪将{lw}搬运至{pos}", "将{lw}移至{pos}", "用机械臂把{lw}放到{pos}", "移动{lw}到{pos}", "{lw}搬到{pos}"),
        "en": (
            "move {lw} to {pos}", "gripper: {lw} -> {pos}", "the gripper places {lw} on {pos}",
            "use the gripper to place {lw} on {pos}", "relocate {lw} to {pos}", "carry {lw} to {pos}",
            "have the gripper put {lw} onto {pos}",
        ),
    },
}

INHERITED: dict[str, dict[str, tuple[str, ...]]] = {
    "GetDiti": {
        "zh": ("换上新的{tip}", "重新取{tip}", "再装{tip}"),
        "en": ("get fresh {tip}", "pick up new {tip}", "load new {tip}"),
    },
    "DropDiti": {
        "zh": ("弃去枪头", "退掉吸头", "丢弃吸头", "卸下枪头", "把枪头扔进废料槽", "用完退吸头", "脱掉吸头"),
        "en": (
            "drop the tips", "discard the {tips}", "eject the tips", "throw the {tips} away",
            "drop tips into the waste", "the {tips} go to the waste",
        ),
    },
    "Aspirate": {
        "zh": ("从{src}{each}吸取{v}", "在{src}{each}吸{v}", "吸取{src}{each}{v}", "自{src}{each}抽取{v}"),
        "en": ("aspirate {v} from {src}", "draw {v} from {src}", "take up {v} from {src}", "pull {v} out of {src}"),
    },
    "Dispense": {
        "zh": (
            "注入{dst}（{each}{v}）", "向{dst}{each}加入{v}", "{each}分配{v}到{dst}", "打入{dst}，{each}{v}",
            "排到{dst}，{each}{v}",
        ),
        "en": (
            "dispense {v} into {dst}", "release {v} into {dst}", "add {v} to {dst}", "deliver {v} to {dst}",
            "empty {v} into {dst}", "put {v} into {dst}",
        ),
    },
    "Mix": {
        "zh": ("在{loc}{each}用{v}吹打混匀{n}", "混匀{loc}，{v}，{n}", "{loc}上下吹吸{n}（{each}{v}）"),
        "en": ("mix {loc} {n} with {v}", "pipette-mix {v} in {loc}, {n}", "mix {n} at {v} in {loc}"),
    },
    "Transfer": {
        "zh": ("把{src}{each}{v}转移到{dst}", "从{src}转移{v}至{dst}", "将{src}{each}{v}移到{dst}"),
        "en": ("transfer {v} from {src} to {dst}", "move {v} from {src} into {dst}", "transfer {v} {src} -> {dst}"),
    },
}
