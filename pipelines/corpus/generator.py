"""Generate the bundled corpus (data/raw/training_data.jsonl) deterministically from a fixed random seed.

Each record is planned as catalog commands first (`planning`) and only then written as lab text
(`writer`, from the templates in `phrasings` and the value spellings in `phrases`), so the text and its
gold commands always agree. Every step is written from one template, a phrasing family (`families`).
About a tenth of the families are held out: the training corpus never uses them, and a second file of
records written only with them (data/heldout/phrasing_families.jsonl) measures whether a model
generalizes to phrasings it has never seen. No generated text copies or nearly copies an input of the
public test examples (`near_copy`). `python -m pipelines generate-corpus` (`pipelines.corpus.cli`)
writes both files.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_contracts.commands import Command
from data_contracts.forms import render_text_commands
from pipelines.atomic_files import write_bytes_atomic
from pipelines.corpus.families import held_out_families, template_families
from pipelines.corpus.near_copy import NearCopyGuard
from pipelines.corpus.phrasings import STEP_PREFIX
from pipelines.corpus.planning import plan_slot, plan_slots
from pipelines.corpus.writer import RecordWriter

# Retries for a record whose text repeats an earlier one or nears a protected text; far more than a
# corpus needs (about one record in fifteen needs one at 100k records), so reaching it means the
# phrasings of some kind of record are used up.
MAX_ATTEMPTS_PER_RECORD = 1000


@dataclass(frozen=True)
class GeneratedRecord:
    """One corpus record with what the tests want to know about how it was written."""

    lang: str  # "zh" | "en"
    text: str
    commands: tuple[Command, ...]
    templates: tuple[str, ...]  # one phrasing family (template id) per command, e.g. "Aspirate.zh.ch.3"
    channel_header: bool = False  # a header states the first step's channels ("加样（通道1-4）：")

    def to_raw(self) -> dict[str, Any]:
        """The raw corpus line; ingestion reads only `conversation`, `phrasing` records the families."""
        turn = {"input": self.text, "output": render_text_commands(self.commands)}
        return {"conversation": [turn], "phrasing": list(self.templates)}

    def to_case(self, case_id: str) -> dict[str, Any]:
        """A held-out case: the raw corpus line with an `id`, as pipelines.serve.eval_slices.read_cases reads it."""
        raw = self.to_raw()
        return {"conversation": raw["conversation"], "id": case_id, "phrasing": raw["phrasing"]}


def _dedup_key(text: str) -> str:
    """The text without step prefixes and end marks, so two records never differ only there."""
    return "\n".join(STEP_PREFIX.sub("", line).rstrip("。.") for line in text.splitlines())


def _generate(
    n_records: int, rng: random.Random, families: frozenset[str], guard: NearCopyGuard | None
) -> list[GeneratedRecord]:
    if n_records < 1:
        raise ValueError(f"n_records must be at least 1, got {n_records}")
    writer = RecordWriter(rng, families)
    records: list[GeneratedRecord] = []
    seen: set[str] = set()
    for slot in plan_slots(rng, n_records):
        for _attempt in range(MAX_ATTEMPTS_PER_RECORD):
            commands = plan_slot(rng, slot)
            text, family_ids, channel_header = writer.write(commands, slot.lang)
            key = _dedup_key(text)
            if key not in seen and not (guard and guard.is_near_copy(text)):
                break
        else:
            raise ValueError(
                f"no new text for a record like {slot} after {MAX_ATTEMPTS_PER_RECORD} attempts: "
                f"its phrasings are used up; ask for fewer than {n_records} records"
            )
        seen.add(key)
        records.append(GeneratedRecord(slot.lang, text, tuple(commands), family_ids, channel_header))
    return records


def generate_records(
    n_records: int, seed: int, protected_texts: Sequence[str] = ()
) -> list[GeneratedRecord]:
    """The training corpus as planned records, written without the held-out phrasing families."""
    families = frozenset(template_families()) - held_out_families(seed)
    guard = NearCopyGuard(protected_texts) if protected_texts else None
    return _generate(n_records, random.Random(seed), families, guard)


def generate_heldout_records(
    n_records: int, seed: int, protected_texts: Sequence[str] = ()
) -> list[GeneratedRecord]:
    """Records written only with the held-out phrasing families (same plans and shares as training)."""
    guard = NearCopyGuard(protected_texts) if protected_texts else None
    # A stream of its own: the held-out cases do not change with the size of the training corpus.
    return _generate(n_records, random.Random(f"heldout:{seed}"), held_out_families(seed), guard)


def generate_corpus(n_records: int, seed: int) -> list[dict[str, Any]]:
    """Raw corpus records `{"conversation": [...], "phrasing": [...]}`, the same for the same seed."""
    return [record.to_raw() for record in generate_records(n_records, seed)]


def heldout_cases(records: Sequence[GeneratedRecord]) -> list[dict[str, Any]]:
    """The held-out file's lines: ids H0001, H0002, ..."""
    return [record.to_case(f"H{number:04d}") for number, record in enumerate(records, start=1)]


def corpus_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def write_corpus(records: Sequence[dict[str, Any]], path: str | Path) -> str:
    """Write the records as JSONL and return the file's sha256; an identical file is left untouched."""
    path = Path(path)
    content = corpus_bytes(records)
    digest = hashlib.sha256(content).hexdigest()
    if path.is_file() and path.read_bytes() == content:
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, content)
    return digest

