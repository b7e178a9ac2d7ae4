"""The cases of each evaluation slice, and the mismatched-cases file that collects eval-split failures.

The eval slice comes from the lake (the eval split of the training data); the other slices come from files
in the raw corpus format with an `id` per line (see `pipelines.serve.eval_cases` for what each slice is).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_contracts.errors import ContractError
from data_contracts.forms import parse_json_commands, parse_text_commands, render_json_commands, render_text_commands
from pipelines.atomic_files import write_text_atomic
from pipelines.serve.eval_cases import (
    EVAL_SOURCE,
    HELDOUT_SOURCE,
    MISMATCHED_SOURCE,
    PUBLIC_SOURCE,
    CaseResult,
    EvalCase,
    case_key,
)


def eval_split_cases(augmented: Any, normalized: Any) -> list[EvalCase]:
    """One case per eval-split `source_index`: its normalized description and gold commands."""
    eval_ids = set(augmented.loc[augmented["split"] == EVAL_SOURCE, "source_index"].astype(str))
    samples = normalized[normalized["source_index"].astype(str).isin(eval_ids)].sort_values("source_index")
    missing = eval_ids - set(samples["source_index"].astype(str))
    if missing:
        raise ValueError(
            f"{len(missing)} eval source_index values have no normalized sample, e.g. {sorted(missing)[:3]}"
        )
    return [
        EvalCase(
            case_id=f"{EVAL_SOURCE}:{row.source_index}",
            description=str(row.input_text),
            gold=tuple(parse_json_commands(str(row.commands_json))),
            split_source=EVAL_SOURCE,
            source_index=str(row.source_index),
            raw_description=str(row.raw_input),
        )
        for row in samples.itertuples(index=False)
    ]


def read_mismatched_cases(path: Any) -> list[EvalCase]:
    """Cases of the mismatched file (raw corpus format with an `id`); a bad line is an error naming it."""
    return read_cases(path, MISMATCHED_SOURCE)


def read_cases(path: Any, source: str) -> list[EvalCase]:
    """Cases of a file in the raw corpus format with an `id` each, ids prefixed `<source>:`; [] if no file.

    An optional `phrasing` key (held-out files) is kept on the case; other extra keys (`tags`) are ignored.
    """
    from pipelines.data.normalize import normalize_text, source_index

    path = Path(path)
    if not path.is_file():
        return []
    cases = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turn = record["conversation"][0]
            raw_description = str(turn["input"])
            description = normalize_text(raw_description)
            gold = tuple(parse_text_commands(str(turn["output"])))
            case_id = str(record["id"])
            phrasing = record.get("phrasing")
        except (ValueError, KeyError, IndexError, TypeError, ContractError) as error:
            raise ValueError(
                f"{path}:{line_number}: not a regression case ({type(error).__name__}: {error})"
            ) from error
        cases.append(
            EvalCase(
                case_id=f"{source}:{case_id}",
                description=description,
                gold=gold,
                split_source=source,
                source_index=source_index(description, render_json_commands(gold)),
                raw_description=raw_description,
                phrasing=_first_family(phrasing),
            )
        )
    return cases


def _first_family(phrasing: Any) -> str | None:
    """The family a capped sample rotates on: the generator lists one per command, the first names the record."""
    if isinstance(phrasing, list):
        return str(phrasing[0]) if phrasing else None
    return None if phrasing is None else str(phrasing)


def regression_set(eval_cases: Sequence[EvalCase], mismatched: Sequence[EvalCase]) -> list[EvalCase]:
    """Eval cases, then mismatched cases not already present (same description and gold commands)."""
    seen: set[tuple[str, str]] = set()
    cases = []
    for case in [*eval_cases, *mismatched]:
        key = case_key(case.description, case.gold)
        if key not in seen:
            seen.add(key)
            cases.append(case)
    return cases


def cap_cases(cases: Sequence[EvalCase], limit: int | None) -> list[EvalCase]:
    """At most `limit` cases (None: all), in case-id order; the same input always keeps the same cases.

    Cases are taken in case-id order (eval ids are content hashes, so that is a fixed pseudo-random
    sample); cases that carry a phrasing family are taken from each family in turn, so a small cap of
    the held-out slice still covers every family.
    """
    ordered = sorted(cases, key=lambda case: case.case_id)
    if limit is None or len(ordered) <= limit:
        return ordered
    families: dict[str, list[EvalCase]] = {}
    for case in ordered:
        families.setdefault(case.phrasing or "", []).append(case)
    queues = [families[name] for name in sorted(families)]
    picked: list[EvalCase] = []
    for position in range(max(len(queue) for queue in queues)):
        picked += [queue[position] for queue in queues if position < len(queue)]
    return sorted(picked[:limit], key=lambda case: case.case_id)


@dataclass(frozen=True)
class EvalSlice:
    """One slice of an evaluation: the cases to run and how many the slice holds before any cap."""

    name: str
    cases: tuple[EvalCase, ...]
    available: int
    path: str | None = None  # the file the slice was read from; None for the eval split
    missing: bool = False  # that file does not exist: reported as 0 cases, not an error

    @property
    def evaluated(self) -> int:
        return len(self.cases)


def evaluation_slices(
    eval_cases: Sequence[EvalCase],
    mismatched_path: Any,
    heldout_path: Any,
    public_path: Any,
    max_cases: dict[str, int | None] | None = None,
) -> list[EvalSlice]:
    """The four slices in SLICES order, each capped by `max_cases[<slice>]` (a slice not named: whole)."""
    caps = max_cases or {}
    mismatched = [
        case for case in regression_set(eval_cases, read_cases(mismatched_path, MISMATCHED_SOURCE))
        if case.split_source == MISMATCHED_SOURCE
    ]
    available: list[tuple[str, list[EvalCase], Path | None]] = [
        (EVAL_SOURCE, list(eval_cases), None),
        (MISMATCHED_SOURCE, mismatched, Path(mismatched_path)),
        (HELDOUT_SOURCE, read_cases(heldout_path, HELDOUT_SOURCE), Path(heldout_path)),
        (PUBLIC_SOURCE, read_cases(public_path, PUBLIC_SOURCE), Path(public_path)),
    ]
    return [
        EvalSlice(
            name=name,
            cases=tuple(cap_cases(cases, caps.get(name))),
            available=len(cases),
            path=None if path is None else str(path),
            missing=path is not None and not path.is_file(),
        )
        for name, cases, path in available
    ]


# --- the mismatched-cases file ---------------------------------------------------------------


def mismatched_record(case: EvalCase) -> str:
    # The text as written: normalization is idempotent, so reading it back gives the same case, and the
    # ranges and units the phenomena tags look for are still there.
    record = {
        "conversation": [
            {"input": case.raw_description or case.description, "output": render_text_commands(case.gold)}
        ],
        "id": case.source_index or case.case_id,
    }
    return json.dumps(record, ensure_ascii=False)


def append_failures(path: Any, results: Sequence[CaseResult]) -> int:
    """Append every failed eval-split case not yet in the file; returns how many were added.

    Only the eval slice feeds the file: it becomes regression cases, and the held-out and public cases must
    never land in a data file that could be mistaken for training data.

    Existing lines stay byte for byte; new lines follow in case-id order, so the same results always
    give the same file. The file is replaced atomically, so a crash leaves the old file or the new one,
    never a torn line.
    """
    path = Path(path)
    known = {case_key(case.description, case.gold) for case in read_mismatched_cases(path)}
    new_cases = []
    for result in sorted(results, key=lambda r: r.case.case_id):
        if result.case.split_source != EVAL_SOURCE:
            continue
        key = case_key(result.case.description, result.case.gold)
        if not result.exact_match and key not in known:
            known.add(key)
            new_cases.append(result.case)
    if not new_cases:
        return 0
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, existing + "".join(mismatched_record(case) + "\n" for case in new_cases))
    return len(new_cases)
