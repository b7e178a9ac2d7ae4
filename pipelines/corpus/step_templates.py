"""Step templates the corpus generator writes lab text with, one per phrasing family.

Templates are `str.format` patterns. The fields a command's templates may use:

- GetDiti: ch, tip                    - DropDiti: ch, tips
- Aspirate: ch, src, each, v          - Dispense: ch, dst, each, v
- Mix: ch, loc, each, v, n            - Transfer: ch, src, dst, each, v
- PCR: lw, prog                       - Delay: t
- Incubate: lw, temp, t               - Shake: lw, rpm, t
- MoveLabware: lw, pos

`each` is the Chinese distributive adverb ("各", "每孔", "分别", or empty); English volume phrases
already carry "each"/"per well"/"respectively", so English templates use only `v`. English templates
whose subject is the channel phrase agree with it through `s`, `es`, `ies` ("channel 4 draws",
"channels 1-4 draw", "every channel draws"); `tips` is "tip" for one channel.
`WITH_CHANNELS` templates state the channels; `INHERITED` ones leave them out, for a step that uses
the channels of the step (or the header) before it: the catalog's channel-inheritance rule.

Each template is a phrasing family, named "<command>.<lang>.<ch|inh>.<index>"; the generator holds some
families out of the training corpus (see pipelines.corpus.families.held_out_families), so an index must
keep naming the same pattern: append new templates rather than inserting them.
Chinese templates never put a volume or a count right after a well ("A1-D15次" would be unreadable),
and say something in Chinese themselves (labware names may be Latin); pipelines.corpus.families checks
both when it loads them.
"""

from __future__ import annotations

WITH_CHANNELS: dict[str, dict[str, tuple[str, ...]]] = {
    "GetDiti": {
        "zh": (
            "{ch}取{tip}", "{ch}装载{tip}", "{ch}换上{tip}", "给{ch}装上{tip}", "{ch}安装{tip}", "取{tip}（{ch}）",
            "用{ch}拿取新的{tip}", "{ch}上{tip}", "{ch}各取一个{tip}", "在{ch}上加载{tip}", "{ch}：取{tip}",
            "为{ch}更换{tip}", "{ch}插上{tip}",
        ),
        "en": (
            "pick up {tip} on {ch}", "load {tip} onto {ch}", "{ch}: get {tip}", "{ch}: mount {tip}",
            "{ch} take{s} new {tip}", "fit {ch} with {tip}", "get fresh {tip} for {ch}", "{ch} pick{s} up {tip}",
            "attach {tip} to {ch}", "grab {tip} with {ch}", "equip {ch} with {tip}", "{ch} load{s} {tip}",
            "take {tip} on {ch}",
        ),
    },
    "DropDiti": {
        "zh": (
            "{ch}弃去枪头", "{ch}卸下吸头", "{ch}退吸头", "丢弃{ch}上的吸头", "{ch}把枪头打掉", "{ch}脱去吸头",
            "{ch}退掉枪头",
            "{ch}丢弃吸头", "将{ch}的吸头弃入废料槽", "{ch}：退枪头", "{ch}弃tip", "卸掉{ch}的枪头",
        ),
        "en": (
            "drop the tips on {ch}", "{ch} eject{s} the {tips}", "discard the tips from {ch}", "{ch}: drop tips",
            "eject the tips of {ch} into the waste", "unload tips from {ch}", "{ch} discard{s} the {tips}",
            "strip the {tips} off {ch}", "release the tips on {ch}", "{ch}: eject tips to waste",
            "remove the {tips} from {ch}",
        ),
    },
    "Aspirate": {
        "zh": (
            "用{ch}从{src}{each}吸取{v}", "{ch}在{src}{each}吸{v}", "{ch}对准{src}，{each}吸{v}",
            "{src}{each}吸取{v}（{ch}）",
            "{ch}自{src}{each}抽取{v}", "{ch}从{src}{each}吸液{v}", "以{ch}吸取{src}{each}{v}",
            "{ch}于{src}{each}吸入{v}",
            "吸液：{ch}，{src}，{each}{v}", "从{src}用{ch}{each}吸{v}", "{ch}{each}吸取{v}，来源为{src}",
            "{ch}由{src}{each}吸{v}",
        ),
        "en": (
            "aspirate {v} from {src} with {ch}", "{ch} aspirate{s} {v} from {src}",
            "withdraw {v} from {src} using {ch}", "{ch}: take up {v} from {src}", "from {src}, aspirate {v} on {ch}",
            "pull {v} from {src} ({ch})", "{ch} draw{s} {v} from {src}", "aspirate {v} from {src}, {ch}",
            "{ch} take{s} up {v} from {src}", "suck up {v} from {src} with {ch}",
            "using {ch}, aspirate {v} out of {src}", "aspirate from {src}: {v}, {ch}",
        ),
    },
    "Dispense": {
        "zh": (
            "{ch}向{dst}{each}加入{v}", "用{ch}{each}分配{v}到{dst}", "{ch}注入{dst}，{each}{v}",
            "{dst}{each}加{v}（{ch}）",
            "{ch}在{dst}{each}排出{v}", "{ch}把液体打入{dst}，{each}{v}", "{ch}往{dst}{each}分液{v}",
            "{ch}于{dst}{each}加样{v}", "加样：{ch}→{dst}，{each}{v}", "{ch}{each}释放{v}至{dst}",
            "向{dst}{each}打入{v}，使用{ch}",
        ),
        "en": (
            "dispense {v} into {dst} with {ch}", "{ch} dispense{s} {v} to {dst}", "{ch}: release {v} into {dst}",
            "add {v} to {dst} using {ch}", "deliver {v} into {dst} ({ch})", "{ch} empt{ies} {v} into {dst}",
            "{ch} deposit{s} {v} in {dst}", "dispense {v} to {dst}, {ch}", "with {ch}, dispense {v} into {dst}",
            "{ch} add{s} {v} to {dst}", "into {dst}: dispense {v} ({ch})", "push out {v} into {dst} on {ch}",
        ),
    },
    "Mix": {
        "zh": (
            "{ch}在{loc}{each}用{v}吹打混匀{n}", "{loc}处{ch}反复吹吸{n}，{each}{v}",
            "用{ch}混匀{loc}，{each}{v}，{n}",
            "{ch}对{loc}{each}以{v}混合{n}", "{ch}在{loc}吹打{n}混匀（{each}{v}）",
            "混匀{loc}（{ch}，{each}{v}，{n}）",
            "{ch}于{loc}{each}用{v}上下吹打{n}", "{ch}将{loc}混匀{n}，{each}{v}", "混匀：{ch}，{loc}，{each}{v}，{n}",
            "{ch}在{loc}{each}以{v}体积混匀{n}",
        ),
        "en": (
            "mix {loc} {n} with {v} on {ch}", "{ch}: pipette-mix {v} in {loc}, {n}",
            "mix {n} at {v} in {loc} using {ch}", "{ch} mix{es} {loc}, {v}, {n}",
            "pipette up and down {n} in {loc} ({v}, {ch})", "with {ch}, mix {v} in {loc} {n}",
            "{ch} mix{es} {v} in {loc} {n}", "mix the contents of {loc} ({v}, {n}) with {ch}",
            "triturate {loc} {n} with {v} on {ch}", "{ch}: mix {loc}, {v}, {n}",
        ),
    },
    "Transfer": {
        "zh": (
            "{ch}把{src}{each}{v}转移到{dst}", "{ch}将{src}{each}{v}移入{dst}", "用{ch}从{src}{each}转移{v}至{dst}",
            "{ch}：{src} → {dst}，{each}{v}", "将{src}的液体{each}{v}移至{dst}（{ch}）",
            "{ch}从{src}{each}转{v}到{dst}",
            "转移（{ch}）：{src}到{dst}，{each}{v}", "{src}→{dst}，{ch}{each}转移{v}",
            "{ch}{each}把{v}从{src}转到{dst}",
            "{ch}转移{src} -> {dst}，{each}{v}", "从{src}到{dst}转移{each}{v}，使用{ch}",
        ),
        "en": (
            "transfer {v} from {src} to {dst} with {ch}", "{ch}: move {v} from {src} into {dst}",
            "{src} -> {dst}: transfer {v} with {ch}", "{ch} transfer{s} {v} {src} to {dst}",
            "using {ch}, transfer {v} from {src} over to {dst}", "carry {v} from {src} to {dst} on {ch}",
            "{ch}: {src} → {dst}, {v}", "transfer {v} ({ch}) from {src} into {dst}",
            "{ch} move{s} {v} from {src} to {dst}", "shift {v} from {src} to {dst} using {ch}",
        ),
    },
    "PCR": {
        "zh": (
            "在{lw}上运行PCR程序{prog}", "PCR仪运行{prog}，样品为{lw}", "{lw}放入PCR仪执行{prog}程序",
            "对{lw}执行PCR，程序{prog}",
            "启动{prog}扩增程序，板子为{lw}", "{lw}跑PCR（程序：{prog}）", "{lw}上机扩增，程序{prog}",
            "用程序{prog}对{lw}进行PCR扩增", "PCR扩增：{lw}，程序{prog}", "将{lw}置于热循环仪，运行{prog}",
            "{lw}进行PCR反应（{prog}）",
        ),
        "en": (
            "run PCR program {prog} on {lw}", "thermocycle {lw} with program {prog}",
            "start the {prog} PCR program for {lw}", "{lw}: PCR, program {prog}",
            "put {lw} through the {prog} cycling program", "run {prog} on the cycler for {lw}",
            "cycler program {prog} on {lw}", "amplify {lw} using {prog}", "PCR {lw} with the {prog} protocol",
            "execute thermocycler program {prog} on {lw}", "{lw} goes through PCR ({prog})",
        ),
    },
    "Delay": {
        "zh": (
            "等待{t}", "暂停{t}", "静置{t}", "延时{t}", "停{t}", "等{t}", "稍等{t}", "延迟{t}", "原地等待{t}",
            "等候{t}再继续",
            "间隔{t}",
        ),
        "en": (
            "wait {t}", "pause for {t}", "delay {t}", "hold for {t}", "let it sit for {t}", "wait for {t}",
            "idle for {t}", "stand by for {t}", "pause {t}", "leave it for {t}",
        ),
    },
    "Incubate": {
        "zh": (
            "{lw}在{temp}孵育{t}", "将{lw}于{temp}温育{t}", "{lw}置于{temp}下孵育{t}", "孵育{lw}：{temp}，{t}",
            "{lw}在{temp}保温{t}",
            "把{lw}放到{temp}孵育{t}", "{temp}下将{lw}孵育{t}", "{lw}于{temp}静置孵育{t}",
            "温育{lw}，温度{temp}，时间{t}",
            "{lw}放入{temp}培养箱孵育{t}",
        ),
        "en": (
            "incubate {lw} at {temp} for {t}", "hold {lw} at {temp} for {t}", "leave {lw} at {temp} for {t}",
            "{lw}: incubate {t} at {temp}", "incubate {lw} ({temp}, {t})", "let {lw} incubate at {temp} for {t}",
            "incubate {lw} for {t} at {temp}", "place {lw} at {temp} for {t}", "incubation: {lw}, {temp}, {t}",
            "{lw} is incubated at {temp} for {t}",
        ),
    },
    "Shake": {
        "zh": (
            "{lw}以{rpm}振荡{t}", "振荡{lw}，{rpm}，{t}", "将{lw}放在摇床上{rpm}摇{t}", "{lw}上摇床，{rpm}摇{t}",
            "{lw}在{rpm}下震荡{t}", "{lw}摇匀{t}，{rpm}", "以{rpm}将{lw}振荡{t}", "振荡混匀{lw}：{rpm}，{t}",
            "{lw}振荡{t}（{rpm}）",
        ),
        "en": (
            "shake {lw} at {rpm} for {t}", "{lw}: shake {t} at {rpm}", "put {lw} on the shaker, {rpm}, {t}",
            "agitate {lw} at {rpm} for {t}", "orbital shake {lw} ({rpm}, {t})", "shake {lw} for {t} at {rpm}",
            "{lw} on the shaker at {rpm} for {t}", "shake: {lw}, {rpm}, {t}",
            "run the shaker at {rpm} for {t} with {lw}",
        ),
    },
    "MoveLabware": {
        "zh": (
            "把{lw}移到{pos}", "夹爪将{lw}搬运至{pos}", "将{lw}移至{pos}", "用机械臂把{lw}放到{pos}",
            "移动{lw}到{pos}",
            "{lw}搬到{pos}", "{lw} → {pos}（夹爪）", "夹爪：{lw}->{pos}", "将{lw}转运至{pos}",
            "用夹爪抓取{lw}放至{pos}",
            "{lw}移位到{pos}",
        ),
        "en": (
            "move {lw} to {pos}", "gripper: {lw} -> {pos}", "the gripper sets {lw} down on {pos}",
            "use the gripper to place {lw} on {pos}", "relocate {lw} to {pos}", "carry {lw} to {pos}",
            "have the gripper put {lw} onto {pos}", "{lw} → {pos}", "transport {lw} to {pos}",
            "bring {lw} over to {pos}", "the gripper moves {lw} to {pos}",
        ),
    },
}

INHERITED: dict[str, dict[str, tuple[str, ...]]] = {
    "GetDiti": {
        "zh": ("换上新的{tip}", "重新取{tip}", "重新装上{tip}", "更换{tip}", "取新的{tip}"),
        "en": ("get fresh {tip}", "pick up new {tip}", "load new {tip}", "take new {tip}", "swap in fresh {tip}"),
    },
    "DropDiti": {
        "zh": (
            "弃去枪头", "退掉吸头", "丢弃吸头", "卸下枪头", "把枪头扔进废料槽", "用完退吸头", "脱掉吸头", "弃tip",
            "退枪头",
        ),
        "en": (
            "drop the tips", "discard the {tips}", "eject the tips", "throw the {tips} away",
            "drop tips into the waste", "the {tips} go to the waste", "eject {tips} to waste",
        ),
    },
    "Aspirate": {
        "zh": (
            "从{src}{each}吸取{v}", "在{src}{each}吸{v}", "吸取{src}{each}{v}", "自{src}{each}抽取{v}",
            "由{src}{each}吸液{v}",
            "于{src}{each}吸入{v}",
        ),
        "en": (
            "aspirate {v} from {src}", "draw {v} from {src}", "take up {v} from {src}", "pull {v} out of {src}",
            "withdraw {v} from {src}", "suck up {v} from {src}",
        ),
    },
    "Dispense": {
        "zh": (
            "注入{dst}（{each}{v}）", "向{dst}{each}加入{v}", "{each}分配{v}到{dst}", "打入{dst}，{each}{v}",
            "排到{dst}，{each}{v}", "于{dst}{each}加样{v}",
        ),
        "en": (
            "dispense {v} into {dst}", "release {v} into {dst}", "add {v} to {dst}", "deliver {v} to {dst}",
            "empty {v} into {dst}", "put {v} into {dst}", "deposit {v} in {dst}",
        ),
    },
    "Mix": {
        "zh": (
            "在{loc}{each}用{v}吹打混匀{n}", "混匀{loc}，{each}{v}，{n}", "{loc}上下吹吸{n}（{each}{v}）",
            "于{loc}{each}以{v}混匀{n}",
            "吹打混匀{loc}，{n}，{each}{v}",
        ),
        "en": (
            "mix {loc} {n} with {v}", "pipette-mix {v} in {loc}, {n}", "mix {n} at {v} in {loc}",
            "triturate {loc} {n} with {v}", "mix {v} in {loc} {n}",
        ),
    },
    "Transfer": {
        "zh": (
            "把{src}{each}{v}转移到{dst}", "从{src}{each}转移{v}至{dst}", "将{src}{each}{v}移到{dst}",
            "{src}→{dst}，{each}转移{v}",
            "{each}转移{v}：{src}到{dst}",
        ),
        "en": (
            "transfer {v} from {src} to {dst}", "move {v} from {src} into {dst}", "transfer {v} {src} -> {dst}",
            "carry {v} from {src} to {dst}", "{src} → {dst}, {v}",
        ),
    },
}
