"""Text normalization and the stable sample id.

`normalize_text` is idempotent: normalize_text(normalize_text(x)) == normalize_text(x).
NFKC is intended to fold full-width punctuation to ASCII and the micro sign to Greek mu,
so "２０µｌ，" and "20μl," become the same training text ("20ul," once canonicalized).
The one normalizer: training rows, evaluation cases, `predict` and serving all go through it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import pandas as pd

from pipelines.data.canonicalize import canonicalize
from pipelines.data.lake import NORMALIZE_QUARANTINE_TABLE, NORMALIZED_TABLE, frame

# Applied after NFKC, so full-width "：" "．" "（" already read as ":" "." "(".
# A bare number prefix needs its punctuation and must not swallow a decimal ("1.5 ml").
_LINE_PREFIX = re.compile(
    r"""^\s*(?:
        (?:(?:行|步骤)\s*\d+|第\s*\d+\s*[步行])\s*(?:[:、)]|\.(?!\d)|(?![.\d])) # 行1:  步骤3:  第2步、 (not 第2号通道)
      | (?:line|step)\s*\d+(?:\s*(?:[:)]|\.(?!\d))|\s+) # Line 2:  Step 4.  Step 5 (not "Step 1.5")
      | \(\s*\d+\s*\)                                    # (1)
      | \d+\s*(?:[:)]|、(?!\s*\d)|\.(?!\d))              # 1.  2、  3)  (not the list 1、3、5)
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
# Characters NFKC keeps but that are invisible in text: zero-width space/joiners, BOM, soft hyphen.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"\s+")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def split_line_prefix(line: str) -> tuple[str, str]:
    """(prefix, rest) where prefix is every leading step marker ("行1: 1." strips both)."""
    rest = line
    while True:
        match = _LINE_PREFIX.match(rest)
        if not match or match.end() == 0 or match.end() == len(rest):
            # Never strip a whole line: "3." alone is content, not a prefix.
            break
        rest = rest[match.end() :]
    return line[: len(line) - len(rest)].strip(), rest


def normalize_line(line: str) -> str:
    line = _SPACES.sub(" ", line).strip()
    return canonicalize(split_line_prefix(line)[1].strip())


def normalize_text(text: str) -> str:
    """NFKC, drop invisible characters, strip step prefixes per line, collapse whitespace, drop empty lines,
    and write every amount in the commands' own units and forms (`pipelines.data.canonicalize`)."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    lines = (normalize_line(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def line_prefixes(text: str) -> list[str]:
    """The step prefix of each line that normalize_text keeps ('' where a line has none)."""
    prefixes = []
    for line in text.splitlines():
        if line and _starts_without_prefix(line[0]):
            prefixes.append("")
            continue
        # A prefix sits at the start of a line, so NFKC of the line's head is enough (and much cheaper).
        head = _SPACES.sub(" ", _INVISIBLE.sub("", unicodedata.normalize("NFKC", line[:_HEAD_CHARS]))).strip()
        if len(line) > _HEAD_CHARS and (not head or split_line_prefix(head)[0] == head):
            head = normalize_line_keeping_prefix(line)
        if head:
            prefixes.append(split_line_prefix(head)[0])
    return prefixes


# Characters a prefix can start with after NFKC; a line whose first character is none of these, is no
# space, and has no compatibility decomposition (NFKC leaves it as it is) cannot carry a prefix.
_PREFIX_STARTS = frozenset("行步第LlSs(0123456789")


def _starts_without_prefix(char: str) -> bool:
    return (
        char not in _PREFIX_STARTS
        and not char.isspace()
        and not _INVISIBLE.match(char)
        and unicodedata.decomposition(char) == ""
    )


_HEAD_CHARS = 48


def normalize_line_keeping_prefix(line: str) -> str:
    return _SPACES.sub(" ", _INVISIBLE.sub("", unicodedata.normalize("NFKC", line))).strip()


def detect_lang(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def source_index(normalized_input: str, commands_json: str) -> str:
    """Content id of a sample: identical content gets the identical id in every run and corpus."""
    digest = hashlib.sha256(f"{normalized_input}\x1f{commands_json}".encode("utf-8")).hexdigest()
    return digest[:16]


def command_names(commands_json: str) -> list[str]:
    # The canonical JSON always lists func_name first in each command, so a regex avoids a json.loads per row.
    return _FUNC_NAME.findall(commands_json)


_FUNC_NAME = re.compile(r'"func_name": "([^"]+)"')


@dataclass(frozen=True)
class NormalizeResult:
    samples: pd.DataFrame
    quarantine: pd.DataFrame


def normalize_records(raw: pd.DataFrame) -> NormalizeResult:
    """Raw records -> normalized samples; later copies of a sample already seen are quarantined.

    `raw` has the columns of the raw_training_data table. Row order decides which copy is kept,
    so the caller passes raw records sorted by (source_file, line_number).
    """
    inputs = [normalize_text(text) for text in raw["input_text"].tolist()]
    commands = raw["commands_json"].tolist()
    ids = [source_index(text, cmds) for text, cmds in zip(inputs, commands)]
    files = raw["source_file"].tolist()
    lines = [int(n) for n in raw["line_number"].tolist()]
    first_of: dict[str, int] = {}
    kept: list[int] = []
    removed: list[int] = []
    for row, sid in enumerate(ids):
        if sid in first_of:
            removed.append(row)
        else:
            first_of[sid] = row
            kept.append(row)
    names = [command_names(commands[row]) for row in kept]
    samples = frame(
        {
            "source_index": [ids[row] for row in kept],
            "input_text": [inputs[row] for row in kept],
            "raw_input": raw["input_text"].take(kept).tolist(),
            "commands_json": [commands[row] for row in kept],
            "command_names": names,
            "n_commands": [len(n) for n in names],
            "lang": [detect_lang(inputs[row]) for row in kept],
            "source_file": [files[row] for row in kept],
            "line_number": [lines[row] for row in kept],
        },
        NORMALIZED_TABLE,
    )

    def kept_copy(row: int) -> str:
        first = first_of[ids[row]]
        return f"same normalized sample as source_index {ids[row]} (kept {files[first]}:{lines[first]})"

    quarantine = frame(
        {
            "stage": ["normalize"] * len(removed),
            "source_file": [files[row] for row in removed],
            "line_number": [lines[row] for row in removed],
            # A caller that read the raw table without its bulky raw_line column fills it in later.
            "raw_line": raw["raw_line"].take(removed).tolist() if "raw_line" in raw else [""] * len(removed),
            "reason": ["duplicate"] * len(removed),
            "detail": [kept_copy(row) for row in removed],
        },
        NORMALIZE_QUARANTINE_TABLE,
    )
    return NormalizeResult(samples=samples, quarantine=quarantine)
