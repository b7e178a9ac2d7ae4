"""Raw JSONL files -> raw records + quarantine rows, accounting for every line.

A line is read as bytes and ends up in exactly one place: a record, or a quarantine row with
its reason. So n_lines == n_records + n_quarantined holds per file and in total, blank lines included.

Decisions:
- A UTF-8 byte-order mark at the start of a line is stripped and the line accepted: editors on
  Windows write one at the start of a file, and concatenating such files puts one mid-file.
- A line longer than `max_line_bytes` is quarantined as `line_too_long` without being parsed;
  its raw_line keeps only the first `max_line_bytes` characters (the file's sha256 pins the rest).
- `duplicate` is an exact duplicate of an earlier accepted line in this read (same input text and
  same canonical commands); near-duplicates that only differ after normalization are removed later.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_contracts.errors import CommandParseError, ContractError
from data_contracts.forms import parse_text_commands, render_json_commands
from data_contracts.validation import ValidationIssue, validate_commands
from pipelines.data.fingerprints import file_md5

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"

RAW_COLUMNS = ["source_file", "line_number", "raw_line", "input_text", "output_text", "commands_json", "file_sha256"]
QUARANTINE_COLUMNS = ["stage", "source_file", "line_number", "raw_line", "reason", "detail"]


@dataclass
class IngestResult:
    records: pd.DataFrame
    quarantine: pd.DataFrame
    n_lines: int
    lines_per_file: dict[str, int]
    file_sha256: dict[str, str]
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def n_records(self) -> int:
        return len(self.records)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def raw_files(raw_dir: str | Path) -> list[Path]:
    """The raw corpus: every *.jsonl file directly under `raw_dir`, sorted by name so runs read them in order.

    The one definition of the corpus. Ingest trains on exactly these files, the retrain sensor and the nightly
    schedule watch exactly these (`corpus_md5s`), and the lineage manifest records and `lineage --verify`
    checks exactly these; a file in a subfolder, or with another suffix, is none of the three. Top level
    only: the raw-line check and the quarantine name files by path under `raw_dir`, and a subfolder is
    where drafts and archives can sit without being trained on.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw data directory {raw_dir} does not exist")
    return sorted(path for path in raw_dir.glob("*.jsonl") if path.is_file())


def corpus_md5s(raw_dir: str | Path) -> dict[str, str]:
    """{path relative to `raw_dir` (posix): md5} of every corpus file (`raw_files`); empty if the dir is missing.

    md5 because it is the digest DVC records, so a file counts as changed exactly when its bytes do.
    A missing dir is an empty corpus rather than an error: to a watcher that is every file deleted.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        return {}
    return {path.relative_to(raw_dir).as_posix(): file_md5(path) for path in raw_files(raw_dir)}


def split_lines(data: bytes) -> list[bytes]:
    """Lines of a file; a final newline does not start an extra line, CRLF endings are accepted."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def describe_issues(issues: list[ValidationIssue]) -> str:
    parts = []
    for issue in issues:
        where = "plan" if issue.command_index is None else f"command {issue.command_index} ({issue.command})"
        field_name = f" field {issue.field}" if issue.field else ""
        parts.append(f"{where}{field_name}: [{issue.rule}] {issue.message}")
    return "; ".join(parts)


def _decode(data: bytes) -> str:
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected("invalid_utf8", f"not UTF-8: {error.reason} at byte {error.start}") from None


def _reject_constant(name: str) -> Any:
    raise Rejected("invalid_json", f"{name} is not valid JSON")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejected("invalid_json", "JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        raise Rejected("invalid_json", f"{error.msg} at column {error.colno}") from None


def _conversation_turn(document: Any) -> tuple[str, str]:
    shape = 'expected {"conversation": [{"input": str, "output": str}]}'
    if not isinstance(document, dict):
        raise Rejected("wrong_shape", f"top level is a {type(document).__name__}; {shape}")
    conversation = document.get("conversation")
    if not isinstance(conversation, list):
        got = "missing" if "conversation" not in document else f"a {type(conversation).__name__}"
        raise Rejected("wrong_shape", f"'conversation' is {got}; {shape}")
    if len(conversation) != 1:
        raise Rejected("wrong_shape", f"'conversation' has {len(conversation)} turns, expected exactly 1")
    turn = conversation[0]
    if not isinstance(turn, dict):
        raise Rejected("wrong_shape", f"conversation turn is a {type(turn).__name__}; {shape}")
    for key in ("input", "output"):
        if key not in turn:
            raise Rejected("wrong_shape", f"conversation turn lacks '{key}'")
        if not isinstance(turn[key], str):
            raise Rejected("wrong_shape", f"'{key}' is a {type(turn[key]).__name__}, expected a str")
    return turn["input"], turn["output"]


def _ensure_encodable(value: str, key: str) -> None:
    # JSON escapes can spell lone surrogates (a \ud800 escape), which no UTF-8 table column can store.
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise Rejected(
            "invalid_unicode", f"'{key}' holds a lone surrogate {value[error.start]!r} at character {error.start}"
        ) from None


def parse_record(data: bytes, max_line_bytes: int) -> tuple[str, str, str, str]:
    """(raw_line, input_text, output_text, commands_json) of one accepted line; raises Rejected."""
    if len(data) > max_line_bytes:
        raise Rejected("line_too_long", f"line is {len(data)} bytes, more than the limit of {max_line_bytes}")
    text = _decode(data)
    if not text.strip():
        raise Rejected("blank_line", "line is empty or only whitespace")
    input_text, output_text = _conversation_turn(_load_json(text))
    _ensure_encodable(input_text, "input")
    _ensure_encodable(output_text, "output")
    if not input_text.strip():
        raise Rejected("empty_input", "'input' is empty")
    if not output_text.strip():
        raise Rejected("empty_output", "'output' is empty")
    try:
        commands = parse_text_commands(output_text)
    except CommandParseError as error:
        raise Rejected("unparseable_command", f"output {error}") from None
    except RecursionError:
        raise Rejected("unparseable_command", "output nested too deeply") from None
    issues = validate_commands(commands)
    if issues:
        raise Rejected(f"catalog_{issues[0].rule}", describe_issues(issues))
    try:
        commands_json = render_json_commands(commands)
    except ContractError as error:
        raise Rejected("unparseable_command", f"output cannot be rendered as JSON: {error}") from None
    return text, input_text, output_text, commands_json


def _raw_text(data: bytes, max_line_bytes: int) -> str:
    data = data[:max_line_bytes]
    if data.startswith(BOM):
        data = data[len(BOM) :]
    return data.decode("utf-8", errors="replace")


# Parsing and validating a line is pure Python (its cost: docs/benchmarks.md, "Where the time goes"), so large
# corpora are parsed in worker processes; below this many lines starting the workers costs more than it saves.
PARALLEL_MIN_LINES = 5_000
_CHUNK_LINES = 2_000

# (None, input_text, output_text, commands_json) for a record, (reason, detail) for a rejection. The raw
# line is not sent back: the caller holds its bytes, and shipping fewer strings between processes is cheaper.
Outcome = tuple[str | None, ...]


def parse_lines(lines: list[bytes], max_line_bytes: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for data in lines:
        try:
            outcomes.append((None, *parse_record(data, max_line_bytes)[1:]))
        except Rejected as rejection:
            outcomes.append((rejection.reason, rejection.detail))
    return outcomes


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def parse_all(lines: list[bytes], max_line_bytes: int, workers: int) -> Iterator[Outcome]:
    """Outcomes in line order, parsed in `workers` processes when there are enough lines."""
    if workers <= 1 or len(lines) < PARALLEL_MIN_LINES:
        yield from parse_lines(lines, max_line_bytes)
        return
    chunks = [lines[start : start + _CHUNK_LINES] for start in range(0, len(lines), _CHUNK_LINES)]
    # forkserver, not fork: the caller may already run Delta Lake/Arrow threads that a fork would copy mid-lock.
    context = multiprocessing.get_context("forkserver")
    # Workers import only this module (no pandas, no Delta Lake): they start in well under a second.
    context.set_forkserver_preload([__name__])
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(parse_lines, chunks, itertools.repeat(max_line_bytes)))
    except BrokenProcessPool:
        # Workers re-import the parent's __main__; where that cannot work (code fed on stdin), parse here.
        logger.warning("raw-line worker processes failed to start; parsing %d lines in-process", len(lines))
        results = [parse_lines(lines, max_line_bytes)]
    for outcomes in results:
        yield from outcomes


def ingest(raw_dir: str | Path, max_line_bytes: int = 1_000_000, workers: int = 1) -> IngestResult:
    """Read every corpus file of `raw_dir` (`raw_files`); `workers` > 1 parses large inputs in that many processes."""
    from pipelines.data.lake import RAW_QUARANTINE_TABLE, RAW_TABLE, frame

    raw_dir = Path(raw_dir)
    files = raw_files(raw_dir)
    records: dict[str, list[Any]] = {name: [] for name in RAW_COLUMNS}
    quarantine: dict[str, list[Any]] = {name: [] for name in QUARANTINE_COLUMNS}
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    reasons: Counter[str] = Counter()

    lines: list[bytes] = []
    places: list[tuple[str, int, str]] = []  # (file, line number, file sha256) of each line
    lines_per_file: dict[str, int] = {}
    file_sha256: dict[str, str] = {}
    for path in files:
        data = path.read_bytes()
        relative = path.relative_to(raw_dir).as_posix()
        digest = hashlib.sha256(data).hexdigest()
        file_lines = split_lines(data)
        file_sha256[relative] = digest
        lines_per_file[relative] = len(file_lines)
        lines.extend(file_lines)
        places.extend((relative, number, digest) for number in range(1, len(file_lines) + 1))

    def reject(index: int, reason: str, detail: str) -> None:
        source_file, line_number, _ = places[index]
        reasons[reason] += 1
        quarantine["stage"].append("raw")
        quarantine["source_file"].append(source_file)
        quarantine["line_number"].append(line_number)
        quarantine["raw_line"].append(_raw_text(lines[index], max_line_bytes))
        quarantine["reason"].append(reason)
        quarantine["detail"].append(detail)

    for index, outcome in enumerate(parse_all(lines, max_line_bytes, workers)):
        if outcome[0] is not None:
            reject(index, outcome[0], outcome[1])
            continue
        _, input_text, output_text, commands_json = outcome
        raw_line = _raw_text(lines[index], max_line_bytes)
        source_file, line_number, digest = places[index]
        key = (input_text, commands_json)
        if key in seen:
            first_file, first_line = seen[key]
            reject(index, "duplicate", f"exact duplicate of {first_file}:{first_line}")
            continue
        seen[key] = (source_file, line_number)
        for name, value in zip(
            RAW_COLUMNS, (source_file, line_number, raw_line, input_text, output_text, commands_json, digest)
        ):
            records[name].append(value)

    return IngestResult(
        records=frame(records, RAW_TABLE),
        quarantine=frame(quarantine, RAW_QUARANTINE_TABLE),
        n_lines=len(lines),
        lines_per_file=lines_per_file,
        file_sha256=file_sha256,
        reasons=dict(sorted(reasons.items())),
    )
