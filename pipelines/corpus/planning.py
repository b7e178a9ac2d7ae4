"""Plan each record as catalog commands before any text is written, so text and gold commands always agree.

The plan keeps a long tail with a floor: tip handling and pipetting in most records, Mix and Transfer in
fewer, and PCR, Delay, Incubate, Shake and MoveLabware in an exact quota of records each (RARE_SHARE, so
the shares do not drift with the random seed). An exact quota of single-command records (SINGLE_SHARE) is
spread evenly over all 11 commands, so each command is also seen alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from data_contracts.catalog import load_catalog
from data_contracts.commands import Command
from pipelines.corpus import phrasings as P

RARE_COMMANDS = ("PCR", "Delay", "Incubate", "Shake", "MoveLabware")
RARE_SHARE = 0.08  # records containing each rare command, as a share of all records
SINGLE_SHARE = 0.25  # records holding exactly one command, spread evenly over the catalog's commands
ZH_SHARE = 0.65
MAX_COMMANDS = 6
PER_CHANNEL_VOLUME_SHARE = 0.2  # two to four channels drawing different volumes
LIQUID_CLASS_SHARE = 0.07

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
TIP_WEIGHTS = {"10ul": 0.15, "50ul": 0.25, "200ul": 0.4, "1000ul": 0.2}


# --- drawing values ---------------------------------------------------------------------------


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


# --- planning commands ------------------------------------------------------------------------


@dataclass
class _PipettingPlan:
    """One pipetting plan being drawn; each step reuses what earlier steps set up, as lab procedures do."""

    rng: random.Random
    lang: str
    channels: list[int]
    aligned: bool  # wells sit on the rows matching the channel numbers
    assumed_tip: str  # without a GetDiti the tips were mounted before this text; any tip type could be on
    tip: str | None = None
    vols: list[int | float] | None = None
    src: tuple[str, list[str]] | None = None
    dst: tuple[str, list[str]] | None = None

    @property
    def current_tip(self) -> str:
        return self.tip or self.assumed_tip

    def get_tips(self) -> Command:
        rng = self.rng
        self.tip = _pick_tip(rng) if self.tip is None else rng.choice([t for t in TIP_WEIGHTS if t != self.tip])
        return Command(func_name="GetDiti", func_parameters={"ditiType": self.tip, "channels": self.channels})

    def drop_tips(self) -> Command:
        return Command(func_name="DropDiti", func_parameters={"channels": self.channels})

    def aspirate(self, before_split: bool) -> Command:
        """Before a split, draw twice the dispensed volume, still within the tip."""
        rng, channels = self.rng, self.channels
        cap = P.VOLUMES_BY_TIP[self.current_tip][-1]
        vols = _pick_vols(rng, self.current_tip, len(channels), max_vol=cap / 2 if before_split else None)
        self.vols = vols
        lw = _pick_labware(rng, self.lang, avoid=[self.src[0]] if self.src else ())
        self.src = (lw, _pick_wells(rng, channels, self.aligned))
        aspirated = [v * 2 for v in vols] if before_split else vols
        params = {"channels": channels, "labware": lw, "wells": self.src[1], "vols": aspirated}
        return Command(func_name="Aspirate", func_parameters=params | _liquid_class(rng))

    def dispense(self, times: int) -> list[Command]:
        """`times` Dispenses of the aspirated volume, each into another labware."""
        rng, channels = self.rng, self.channels
        vols = self.vols or _pick_vols(rng, self.current_tip, len(channels))
        avoid = [self.src[0]] if self.src else []
        commands = []
        for _ in range(times):
            lw = _pick_labware(rng, self.lang, avoid=avoid)
            avoid.append(lw)
            previous_column = int(self.dst[1][0][1:]) if self.dst else None
            self.dst = (lw, _pick_wells(rng, channels, self.aligned, avoid_column=previous_column))
            params = {"channels": channels, "labware": lw, "wells": self.dst[1], "vols": vols}
            commands.append(Command(func_name="Dispense", func_parameters=params | _liquid_class(rng)))
        return commands

    def mix(self) -> Command:
        rng, channels = self.rng, self.channels
        lw, wells = self.dst or (_pick_labware(rng, self.lang), _pick_wells(rng, channels, self.aligned))
        self.dst = (lw, wells)
        params = {
            "channels": channels,
            "labware": lw,
            "wells": wells,
            "vols": _pick_vols(rng, self.current_tip, len(channels)),
            "times": rng.choice(P.MIX_TIMES),
        }
        return Command(func_name="Mix", func_parameters=params)

    def transfer(self) -> Command:
        rng, channels = self.rng, self.channels
        src_lw = _pick_labware(rng, self.lang)
        dst_lw = _pick_labware(rng, self.lang, avoid=[src_lw])
        src_wells = _pick_wells(rng, channels, self.aligned)
        # Plate-to-plate copies keep the layout more often than not.
        dst_wells = src_wells if rng.random() < 0.5 else _pick_wells(rng, channels, self.aligned)
        self.dst = (dst_lw, dst_wells)
        params = {
            "channels": channels,
            "srcLabware": src_lw,
            "srcWells": src_wells,
            "dstLabware": dst_lw,
            "dstWells": dst_wells,
            "vols": _pick_vols(rng, self.current_tip, len(channels)),
        }
        return Command(func_name="Transfer", func_parameters=params)


def _plan_pipetting(rng: random.Random, lang: str, ops: Sequence[str]) -> list[Command]:
    channels, aligned = _pick_channels(rng)
    plan = _PipettingPlan(rng, lang, channels, aligned, assumed_tip=_pick_tip(rng))
    commands: list[Command] = []
    for index, op in enumerate(ops):
        if op == "get":
            commands.append(plan.get_tips())
        elif op == "drop":
            commands.append(plan.drop_tips())
        elif op == "asp":
            commands.append(plan.aspirate(before_split="split" in ops[index + 1 : index + 2]))
        elif op in ("disp", "split"):
            commands += plan.dispense(times=2 if op == "split" else 1)
        elif op == "mix":
            commands.append(plan.mix())
        elif op == "transfer":
            commands.append(plan.transfer())
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
        seconds = rng.choice(P.SHORT_SECONDS + P.LONG_SECONDS[:8])
        return Command(func_name="Delay", func_parameters={"seconds": seconds})
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
    if plate and rng.random() < 0.7:
        shared_plate = plate
    else:
        shared_plate = _pick_labware(rng, lang) if rng.random() < 0.6 else None
    rare_commands = [_plan_rare(rng, lang, name, shared_plate) for name in rares]
    return base + rare_commands if rng.random() < 0.8 else rare_commands + base


def _plan_single(rng: random.Random, lang: str, name: str) -> list[Command]:
    if name in OPERATION_OF:
        return _plan_pipetting(rng, lang, (OPERATION_OF[name],))
    return [_plan_rare(rng, lang, name, None)]


# --- which records to write -------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSlot:
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


def plan_slots(rng: random.Random, n_records: int) -> list[RecordSlot]:
    """One slot per record, shuffled: exact quotas of single-command and rare-command records.

    Each single-command group and each rare command gets its own share of English, so their few
    records still show English phrasings; the pipetting records make up the corpus-wide share.
    """
    names = list(load_catalog().commands)
    n_single = round(SINGLE_SHARE * n_records)
    singles = dict.fromkeys(names, n_single // len(names))
    for name in rng.sample(names, n_single % len(names)):
        singles[name] += 1
    slots: list[RecordSlot] = []
    for name in names:
        n_en = _english_count(singles[name])
        slots += [RecordSlot("en", single=name)] * n_en + [RecordSlot("zh", single=name)] * (singles[name] - n_en)

    rare_target = round(RARE_SHARE * n_records)
    tokens = [name for name in RARE_COMMANDS for _ in range(max(0, rare_target - singles[name]))]
    seen = dict.fromkeys(RARE_COMMANDS, 0)
    english = dict.fromkeys(RARE_COMMANDS, 0)
    for group in sorted(_pair_up(rng, tokens)):
        is_en = any(_english_count(seen[m] + 1) > english[m] for m in group)
        for member in group:
            seen[member] += 1
            english[member] += is_en
        slots.append(RecordSlot("en" if is_en else "zh", rares=group))

    slots = slots[:n_records]
    n_en_total = n_records - math.ceil(ZH_SHARE * n_records)
    n_rest = n_records - len(slots)
    n_en_rest = min(n_rest, max(0, n_en_total - sum(slot.lang == "en" for slot in slots)))
    slots += [RecordSlot("en")] * n_en_rest + [RecordSlot("zh")] * (n_rest - n_en_rest)
    rng.shuffle(slots)
    return slots


def plan_slot(rng: random.Random, slot: RecordSlot) -> list[Command]:
    """The commands of one record that fills `slot`."""
    if slot.single:
        return _plan_single(rng, slot.lang, slot.single)
    if slot.rares:
        return _plan_rare_record(rng, slot.lang, slot.rares)
    plans = [ops for ops, _ in MULTI_PLANS]
    return _plan_pipetting(rng, slot.lang, rng.choices(plans, weights=[w for _, w in MULTI_PLANS])[0])
