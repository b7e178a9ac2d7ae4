"""Per-phenomenon tags of an evaluation case, and exact match broken down by tag.

A headline exact-match rate hides which reading rules the model has not learnt. Each case is tagged
with the phenomena its text and gold commands exercise, so "wells written as a range", "ml in the text"
or "a command that inherits its channels" each get their own exact-match rate.

Tags are derived from the gold commands plus the case's *raw* text: the normalizer rewrites ranges, ml
and minutes into the commands' own forms (`pipelines.data.canonicalize`), which would erase the very
phenomena these tags name. The rules (each one tested in tests/pipelines/serve/test_phenomena.py):

- range_expansion: a wells list (`wells`, `srcWells`, `dstWells`) of >= 2 wells that the text does not
  spell out well by well: it writes a range ("A1-D1", "A1至D1", "A1 to D1") or leaves a well unnamed
  ("column 1"). "G5 and H5" is an enumeration, not a range.
- each_volume: a `vols` list of >= 2 values, all equal ("20 ul each").
- per_channel_vols: a `vols` list with >= 2 distinct values ("22 ul and 31 ul respectively").
- unit_conversion: the commands carry a volume and the text states one in ml / mL / 毫升.
- time_conversion: the commands carry `seconds` and the text states a duration in minutes or hours
  (minutes, min, hours, h, 分钟, 小时, "1分20秒").
- channel_inheritance: a command after the first has the same channels as the previous command that has
  channels, and the text names channels fewer times than there are commands with channels, so at least
  one command takes its channels from context. An approximation: it counts channel mentions that carry a
  number ("通道1-4", "4号通道", "channel 6", "channels 1-2"), not which command each mention belongs to.
- multi_command / single_command: >= 2 commands / exactly one.
- rare_command: any of PCR, Delay, Incubate, Shake, MoveLabware (the long tail of the corpus).
- liquid_class: a command sets `liquidClass`.
- zh / en: the language of the text, as the normalizer detects it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts.commands import Command
from pipelines.data.normalize import detect_lang
from pipelines.serve.eval_cases import CaseResult

RANGE_EXPANSION = "range_expansion"
EACH_VOLUME = "each_volume"
PER_CHANNEL_VOLS = "per_channel_vols"
UNIT_CONVERSION = "unit_conversion"
TIME_CONVERSION = "time_conversion"
CHANNEL_INHERITANCE = "channel_inheritance"
MULTI_COMMAND = "multi_command"
SINGLE_COMMAND = "single_command"
RARE_COMMAND = "rare_command"
LIQUID_CLASS = "liquid_class"
ZH = "zh"
EN = "en"

# The order tags are listed in, everywhere.
TAGS = (
    RANGE_EXPANSION,
    EACH_VOLUME,
    PER_CHANNEL_VOLS,
    UNIT_CONVERSION,
    TIME_CONVERSION,
    CHANNEL_INHERITANCE,
    MULTI_COMMAND,
    SINGLE_COMMAND,
    RARE_COMMAND,
    LIQUID_CLASS,
    ZH,
    EN,
)

RARE_COMMANDS = frozenset({"PCR", "Delay", "Incubate", "Shake", "MoveLabware"})
ALL_SLICES = "all"

# ASCII edges only: Python's \b treats CJK characters as word characters ("3小时后" has no \b after 时).
_NOT_AFTER_ASCII = r"(?<![A-Za-z0-9_.])"
_NOT_BEFORE_ASCII = r"(?![A-Za-z0-9_])"
_NUMBER = r"(?:\d+(?:\.\d+)?|[零一二两三四五六七八九十百半]+)"

_WELL = r"[A-Pa-p]\d{1,2}"
_WELL_RANGE = re.compile(
    rf"{_NOT_AFTER_ASCII}{_WELL}\s*(?:-|–|—|~|至|到|(?<![A-Za-z])(?:to|through|thru)(?![A-Za-z]))\s*{_WELL}(?!\d)"
)
# A number right before the unit: "Buffer_5ml" (a label) does not count, "0.75 mL" and "0.12毫升" do.
_ML = re.compile(rf"{_NOT_AFTER_ASCII}{_NUMBER}\s*(?:[mM][lL]{_NOT_BEFORE_ASCII}|毫升|millilit(?:er|re)s?)")
_MINUTES_OR_HOURS = re.compile(
    rf"{_NOT_AFTER_ASCII}{_NUMBER}\s*个?\s*"
    rf"(?:分钟|小时|钟头|分(?=\s*\d+\s*秒)|(?:minutes?|mins?|hours?|hrs?|h){_NOT_BEFORE_ASCII})"
)
# A channel mention that names channels: "通道1-4", "4号通道", "channel 6", "ch 3"; not "每通道" or "per channel".
_CHANNEL_MENTION = re.compile(
    r"通道\s*\d+|\d+\s*号?\s*通道|(?<![A-Za-z])(?:channels?|ch\.?)\s*#?\s*\d+|\d+\s*channels?(?![A-Za-z])",
    re.IGNORECASE,
)


def _well_lists(command: Command) -> list[list[str]]:
    return [
        [str(well) for well in value]
        for name, value in command.func_parameters.items()
        if (name == "wells" or name.endswith("Wells")) and isinstance(value, list | tuple)
    ]


def _spelled_out(well: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(well)}(?!\d)", text, re.IGNORECASE) is not None


def _is_range_expansion(gold: Sequence[Command], text: str) -> bool:
    writes_a_range = _WELL_RANGE.search(text) is not None
    for command in gold:
        for wells in _well_lists(command):
            if len(wells) >= 2 and (writes_a_range or not all(_spelled_out(well, text) for well in wells)):
                return True
    return False


def _volume_lists(gold: Sequence[Command]) -> list[list[Any]]:
    return [list(c.func_parameters["vols"]) for c in gold if isinstance(c.func_parameters.get("vols"), list | tuple)]


def _inherits_channels(gold: Sequence[Command], text: str) -> bool:
    with_channels = [c.func_parameters["channels"] for c in gold if "channels" in c.func_parameters]
    reuses_previous = any(
        list(current) == list(previous) for previous, current in zip(with_channels, with_channels[1:])
    )
    return reuses_previous and len(_CHANNEL_MENTION.findall(text)) < len(with_channels)


def case_tags(description: str, gold: Sequence[Command]) -> list[str]:
    """The phenomena one case exercises, in `TAGS` order. Pass the raw text (before canonicalization)."""
    text = unicodedata.normalize("NFKC", description)
    volumes = _volume_lists(gold)
    tags = set()
    if _is_range_expansion(gold, text):
        tags.add(RANGE_EXPANSION)
    if any(len(vols) >= 2 and len(set(vols)) == 1 for vols in volumes):
        tags.add(EACH_VOLUME)
    if any(len(set(vols)) >= 2 for vols in volumes):
        tags.add(PER_CHANNEL_VOLS)
    if volumes and _ML.search(text):
        tags.add(UNIT_CONVERSION)
    if any("seconds" in c.func_parameters for c in gold) and _MINUTES_OR_HOURS.search(text):
        tags.add(TIME_CONVERSION)
    if _inherits_channels(gold, text):
        tags.add(CHANNEL_INHERITANCE)
    tags.add(MULTI_COMMAND if len(gold) >= 2 else SINGLE_COMMAND)
    if any(c.func_name in RARE_COMMANDS for c in gold):
        tags.add(RARE_COMMAND)
    if any(c.func_parameters.get("liquidClass") for c in gold):
        tags.add(LIQUID_CLASS)
    tags.add(detect_lang(text))
    return [tag for tag in TAGS if tag in tags]


# --- exact match per tag ---------------------------------------------------------------------


@dataclass(frozen=True)
class TagScore:
    slice: str  # a split_source, or "all"
    tag: str
    cases: int
    exact_matches: int

    @property
    def exact_match(self) -> float:
        return self.exact_matches / self.cases if self.cases else 0.0


def result_tags(result: CaseResult) -> list[str]:
    case = result.case
    return case_tags(case.raw_description or case.description, case.gold)


def exact_match_by_tag(results: Iterable[CaseResult]) -> list[TagScore]:
    """Cases and exact matches per (slice, tag): every slice present in `results`, then "all" slices together.

    Rows are ordered by slice (first appearance in `results`, "all" last) then by `TAGS`; a tag no case of
    a slice carries has no row for that slice.
    """
    counts: dict[tuple[str, str], list[int]] = {}
    slices: list[str] = []
    for result in results:
        source = result.case.split_source
        if source not in slices:
            slices.append(source)
        for tag in result_tags(result):
            for slice_name in (source, ALL_SLICES):
                entry = counts.setdefault((slice_name, tag), [0, 0])
                entry[0] += 1
                entry[1] += int(result.exact_match)
    return [
        TagScore(slice=slice_name, tag=tag, cases=counts[(slice_name, tag)][0],
                 exact_matches=counts[(slice_name, tag)][1])
        for slice_name in [*slices, ALL_SLICES]
        for tag in TAGS
        if (slice_name, tag) in counts
    ]


# The columns of a tag-score table row, as (name, type); `tag_score_rows` writes them, `tag_scores_from_rows` reads.
TAG_SCORE_COLUMNS = [
    ("slice", "string"),
    ("tag", "string"),
    ("cases", "int"),
    ("exact_matches", "int"),
    ("exact_match", "float"),
]


def tag_score_rows(scores: Iterable[TagScore]) -> list[dict[str, Any]]:
    return [
        {"slice": score.slice, "tag": score.tag, "cases": score.cases, "exact_matches": score.exact_matches,
         "exact_match": score.exact_match}
        for score in scores
    ]


def tag_scores_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[TagScore]:
    return [
        TagScore(slice=str(row["slice"]), tag=str(row["tag"]), cases=int(row["cases"]),
                 exact_matches=int(row["exact_matches"]))
        for row in rows
    ]


def tag_scores_markdown(scores: Sequence[TagScore]) -> str:
    """Tags as rows, slices as columns, each cell "exact matches/cases (rate)": the model card's table."""
    slices = list(dict.fromkeys(score.slice for score in scores))
    cells = {(score.tag, score.slice): score for score in scores}
    lines = ["| tag | " + " | ".join(slices) + " |", "| --- " * (len(slices) + 1) + "|"]
    for tag in TAGS:
        if not any((tag, s) in cells for s in slices):
            continue
        row = []
        for slice_name in slices:
            score = cells.get((tag, slice_name))
            row.append(f"{score.exact_matches}/{score.cases} ({score.exact_match:.2f})" if score else "-")
        lines.append(f"| {tag} | " + " | ".join(row) + " |")
    return "\n".join(lines)
