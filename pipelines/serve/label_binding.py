"""Labels bound to their wells: a step's labware is the label the text writes next to that step's wells.

Grounding keeps a label to text the description has, but not to the right place in it. A small model's commonest
label error is a label from another step: a repeated Dispense that keeps the previous Dispense's labware where the
text names a new one ("排到裂解液槽中A8,…。试剂槽A4,…每孔加4ul"), a source that takes the destination's name
("将洗脱板B1,…移入检测板中B1,…"), a label that runs into the wells ("子板中E2, F2, G2"); see docs/results.md.

The text writes a step's label right before the step's run of wells, after the run before it, joined to the run
by nothing, a closing quote, 的, 中, 上的, a space, " (" or " wells " ("从Sample_Plate的A8,…", "试剂槽A4,…",
"「培养板」中C4"), or right behind the run, joined by "of" ("wells C11,D11 of Cell_Plate"). The k-th well list of
a plan is the text's k-th run (`pipelines.serve.well_order`), and the catalog writes a command's labware ahead of
its wells (srcLabware ahead of srcWells, dstLabware ahead of dstWells). So while a row writes the labware of an
Aspirate, Dispense, Mix or Transfer whose well list will be the k-th, the greedy processor keeps the value on the
way to a copy of text between the (k-1)-th run and the k-th that ends where the words joining it to the k-th run
begin, or that follows the k-th run's "of" (`LabelBindingRow`). A word of the text away from the wells ("每孔"),
the joining word itself ("中") or a name cut at either end is no such copy.

A command without wells (PCR, Incubate, Shake, MoveLabware) written after k well lists is a step the text writes
after the k-th run and before the (k+1)-th, so its labware, position and program are copied from there
(`fits_between_runs`): "…C11,G11 3x; then incubate Reagent_Trough at 37°C" does not incubate a plate named before
the last run. The labware of a well list beyond the text's last run is left to grounding alone; so is every label
of a text without a run of wells.

In every gold plan of the generated corpus, the held-out families and the public examples, each of these labels
lies there (`tests/pipelines/serve/test_label_binding.py`). A text that writes a step's wells with no label near them
would get a copy of the words there instead; no gold text does that.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from pipelines.model.plan_layout import string_opener
from pipelines.serve.coverage import COMMAND_OPENER
from pipelines.serve.grounding import ASCII_WORD, closes_label, label_may_end_at
from pipelines.serve.well_order import WELL_LIST_JSON, WELL_STATEMENT, commands_with_wells

# The labware fields of the commands with wells: each comes right before its well list in the catalog's order.
_LABEL_OPENERS = tuple(string_opener(field) for field in ("labware", "srcLabware", "dstLabware"))
# The label fields of the commands without wells (PCR, Incubate, Shake, MoveLabware): their values lie between runs.
_BETWEEN_RUNS_OPENERS = tuple(string_opener(field) for field in ("labware", "position", "program"))
# What joins a label written behind its run: "wells C11,D11 of Cell_Plate", "… of 'PCR_Plate'".
_JOINED_BEHIND = re.compile(r"\s+of\s+[\"'“‘]?")
# What joins a label written ahead of its run to the run, anchored at the run: a closing quote, then 的, 中, 上,
# 里 or 内 (with 的 or not), a space, " (" or " wells " ("样品板的A1", "「培养板」中C4", "'Cell_Plate' wells E4").
_JOINED_AHEAD = re.compile(r"[\"'”’」』]?(?:\s*(?:wells?\s+|\(\s*)|[的中]|[上里内]的?|\s+)?\Z")
# A label is a name: it holds no line break and no clause punctuation, so one ahead of its run starts after the last.
_CLAUSE_BREAKS = ("\n", "\r", ",", "，", ";", "；", "。", "、", ":", "：", "!", "！", "?", "？")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# The Chinese characters that may follow a label written behind its run ("… of Plate3的A1").
_PARTICLES = "的中上"


@dataclass(frozen=True)
class LabelPlace:
    """Where the label of one run of wells may be copied from: text in [start, end) that ends at `end`, where the
    words joining it to the run begin, and starts after the run before it and after any clause break; or text
    starting exactly at `behind` (after the run's "of"), ending before `behind_end`. The run itself spans
    [run_start, run_end)."""

    start: int
    end: int
    behind: int | None
    behind_end: int
    run_start: int
    run_end: int


def label_places(description: str) -> list[LabelPlace]:
    """One place per run of wells of a (normalized) description, in the text's order, as offsets into its UTF-8
    bytes."""
    def at(offset: int) -> int:
        return len(description[:offset].encode("utf-8"))

    runs = [(run.start(), run.end()) for run in WELL_STATEMENT.finditer(description)]
    places = []
    for index, (start, end) in enumerate(runs):
        previous_end = runs[index - 1][1] if index else 0
        next_start = runs[index + 1][0] if index + 1 < len(runs) else len(description)
        label_end = _JOINED_AHEAD.search(description, previous_end, start).start()
        clause_break = max(description.rfind(mark, previous_end, label_end) for mark in _CLAUSE_BREAKS)
        label_start = max(previous_end, clause_break + 1)
        joined = _JOINED_BEHIND.match(description, end)
        behind = at(joined.end()) if joined else None
        places.append(LabelPlace(at(label_start), at(label_end), behind, at(next_start), at(start), at(end)))
    return places


def fits_place(description: bytes, place: LabelPlace, value: bytes, closed: bool) -> bool:
    """Whether `value` (closed: the whole label; otherwise its start) is copied from the run's place."""
    if closed and not value:
        return False
    if place.behind is not None and _copied_behind(description, place, value, closed):
        return True
    if closed:
        at = place.end - len(value)
        return at >= place.start and description.startswith(value, at) and _label_starts_at(description, at, place)
    at = description.find(value, place.start, place.end)
    while at >= 0 and not _label_starts_at(description, at, place):
        at = description.find(value, at + 1, place.end)
    return at >= 0


def _label_starts_at(description: bytes, at: int, place: LabelPlace) -> bool:
    """Whether the label ahead of the run may start at byte `at`: not inside an ASCII name, and not one Chinese
    character short of the place's end (a lone 板 or 槽 is a word of a name, never a whole name)."""
    label = description[at : place.end].decode("utf-8", "ignore")
    return _name_starts_at(description, at) and not _CJK.fullmatch(label)


def _copied_behind(description: bytes, place: LabelPlace, value: bytes, closed: bool) -> bool:
    stop = place.behind + len(value)
    return (stop <= place.behind_end and description.startswith(value, place.behind)
            and (not closed or _label_ends(description, stop)))


def _name_starts_at(description: bytes, at: int) -> bool:
    """Whether a label may start at byte `at`: not inside an ASCII name ("ample_Plate" of "Sample_Plate")."""
    return at == 0 or description[at - 1] not in ASCII_WORD or description[at] not in ASCII_WORD


def _label_ends(description: bytes, stop: int) -> bool:
    """Whether a label may stop at byte `stop`: not inside an ASCII name (`label_may_end_at`) nor inside a Chinese
    word: a Chinese character right after it must be 的, 中 or 上 ("Plate3的A1")."""
    after = description[stop : stop + 3].decode("utf-8", "ignore")[:1]
    return label_may_end_at(description, stop) and (not _CJK.match(after) or after in _PARTICLES)


def fits_between_runs(description: bytes, places: list[LabelPlace], listed: int, value: bytes, closed: bool) -> bool:
    """Whether `value` (closed: the whole label; otherwise its start) is copied from text after the last run of wells
    the plan has listed (`listed` lists so far) and before the next run: where the text writes that step."""
    low = places[min(listed, len(places)) - 1].run_end if listed else 0
    high = places[listed].run_start if listed < len(places) else len(description)
    return closes_label(description, value, low, high) if closed else description.find(value, low, high) >= 0


def _last_label_start(text: bytes) -> int:
    """Where the value of the last label field in `text` starts; -1 when there is none."""
    openers = (*_LABEL_OPENERS, *_BETWEEN_RUNS_OPENERS)
    starts = [text.rfind(opener) + len(opener) for opener in openers if opener in text]
    return max(starts, default=-1)


@functools.cache
def _names_with_wells() -> tuple[bytes, ...]:
    """The catalog's commands with a well list, as JSON writes their names up to the closing quote."""
    return tuple(f'{name}"'.encode() for name in sorted(commands_with_wells()))


class LabelBindingRow:
    """One batch row's places for labels, and the bytes generated: the labware of a command with wells is copied
    from the place of the run its wells will be, a label of a command without wells from between the runs."""

    __slots__ = ("description", "places", "generated")

    def __init__(self, description: str) -> None:
        self.description = description.encode("utf-8")
        self.places = label_places(description)
        self.generated = bytearray()

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def keeps_grounding(self, token: bytes) -> bool:
        """Whether appending `token` keeps the label value it writes (if any) on the way to a copy of its place."""
        if not self.places:
            return True
        text = bytes(self.generated) + token
        value_at = _last_label_start(text)
        if value_at < 0:
            return True
        close = text.find(b'"', value_at)
        if 0 <= close < len(self.generated):  # closed before this token: judged then
            return True
        command_at = text.rfind(COMMAND_OPENER, 0, value_at)
        if command_at < 0:
            return True
        run = sum(1 for written in WELL_LIST_JSON.finditer(text, 0, value_at) if written.group(2))
        value = text[value_at:close] if close >= 0 else text[value_at:]
        if not text.startswith(_names_with_wells(), command_at + len(COMMAND_OPENER)):
            if not text.endswith(_BETWEEN_RUNS_OPENERS, 0, value_at):
                return True
            return fits_between_runs(self.description, self.places, run, value, closed=close >= 0)
        if not text.endswith(_LABEL_OPENERS, 0, value_at) or run >= len(self.places):
            return True
        return fits_place(self.description, self.places[run], value, closed=close >= 0)
