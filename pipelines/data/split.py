"""Train/eval split by source, stratified so every command type lands in both splits.

A source's base split comes from a seeded hash of its `source_index` alone, so appending data never
moves an existing source to the other split, and the same seed always gives the same split.
Stratification then moves as few sources as it can, rarest command first: every command gets a
train source (a command with a single source stays in train: training on it matters more than
scoring it), then every command with two or more sources gets an eval source, moving only sources
whose commands all keep another train source.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

TRAIN = "train"
EVAL = "eval"


def split_hash(source_index: str, seed: int) -> float:
    """Uniform in [0, 1), a pure function of (seed, source_index)."""
    digest = hashlib.sha256(f"{seed}\x1f{source_index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitResult:
    split_of: dict[str, str]
    # Commands that occur in a single source, so they cannot appear in both splits.
    single_source_commands: list[str] = field(default_factory=list)
    # Commands with several sources that still miss eval: every way to add one would take the last
    # train source of another command (possible only in tiny corpora).
    unstratified_commands: list[str] = field(default_factory=list)


def assign_splits(
    source_indexes: Sequence[str],
    command_lists: Sequence[Sequence[str]],
    eval_fraction: float,
    seed: int,
) -> SplitResult:
    commands_of: dict[str, set[str]] = {}
    for sid, names in zip(source_indexes, command_lists):
        commands_of.setdefault(sid, set()).update(names)
    rank = {sid: split_hash(sid, seed) for sid in commands_of}
    split_of = {sid: EVAL if rank[sid] < eval_fraction else TRAIN for sid in commands_of}

    sources_with: dict[str, list[str]] = defaultdict(list)
    for sid in sorted(commands_of, key=rank.__getitem__):
        for name in commands_of[sid]:
            sources_with[name].append(sid)
    count = {TRAIN: defaultdict(int), EVAL: defaultdict(int)}
    for sid, names in commands_of.items():
        for name in names:
            count[split_of[sid]][name] += 1

    def move(sid: str, to: str) -> None:
        frm = split_of[sid]
        for name in commands_of[sid]:
            count[frm][name] -= 1
            count[to][name] += 1
        split_of[sid] = to

    def harmless_to_move(sid: str, frm: str) -> bool:
        # Moving must not take the last source of any command away from the split it leaves.
        return all(count[frm][name] > 1 for name in commands_of[sid])

    single: list[str] = []
    by_rarity = sorted(sources_with, key=lambda name: (len(sources_with[name]), name))
    for name in by_rarity:
        candidates = sources_with[name]
        if len(candidates) < 2:
            single.append(name)
            if split_of[candidates[0]] == EVAL:
                move(candidates[0], TRAIN)
    # Train coverage comes first: every command gets a train source, even at eval's expense.
    for name in by_rarity:
        if count[TRAIN][name] == 0:
            pool = [sid for sid in reversed(sources_with[name]) if split_of[sid] == EVAL]
            move(next((sid for sid in pool if harmless_to_move(sid, EVAL)), pool[0]), TRAIN)
    # Then eval coverage, moving only sources whose commands all keep another train source.
    unstratified: list[str] = []
    for name in by_rarity:
        if len(sources_with[name]) < 2 or count[EVAL][name] > 0:
            continue
        pick = next((sid for sid in sources_with[name] if harmless_to_move(sid, TRAIN)), None)
        if pick is None:
            unstratified.append(name)
        else:
            move(pick, EVAL)
    return SplitResult(
        split_of=split_of, single_source_commands=sorted(single), unstratified_commands=sorted(unstratified)
    )


@dataclass(frozen=True)
class SplitReport:
    leaked_sources: list[str]
    # Commands with two or more sources that are missing from train or from eval.
    unstratified_commands: list[str]
    single_source_commands: list[str]


def split_report(rows: pa.Table) -> SplitReport:
    """Leakage and stratification of a table with source_index, split and command_names columns.

    Arrow group-bys, because the augmented table holds several rows per sample (sizes in docs/benchmarks.md).
    """
    pairs = rows.select(["source_index", "split"]).group_by(["source_index", "split"]).aggregate([])
    per_source = pairs.group_by("source_index").aggregate([("split", "count")])
    leaked = per_source.filter(pc.greater(per_source["split_count"], 1))["source_index"].to_pylist()

    names = rows["command_names"].combine_chunks() if rows.num_rows else pa.array([], pa.list_(pa.string()))
    parents = pc.list_parent_indices(names)
    flat = pa.table(
        {
            "command": pc.list_flatten(names),
            "source_index": pc.take(rows["source_index"], parents),
            "split": pc.take(rows["split"], parents),
        }
    )
    sources = flat.group_by("command").aggregate([("source_index", "count_distinct")]).to_pylist()
    splits = flat.group_by(["command", "split"]).aggregate([]).group_by("command").aggregate([("split", "count")])
    n_splits = dict(zip(splits["command"].to_pylist(), splits["split_count"].to_pylist()))
    n_sources = {row["command"]: row["source_index_count_distinct"] for row in sources}
    return SplitReport(
        leaked_sources=sorted(leaked),
        unstratified_commands=sorted(c for c, n in n_sources.items() if n > 1 and n_splits.get(c, 0) < 2),
        single_source_commands=sorted(c for c, n in n_sources.items() if n == 1),
    )


def leaked_sources(source_indexes: Sequence[str], splits: Sequence[str]) -> list[str]:
    """Sources that appear in more than one split (must be empty)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for sid, split in zip(source_indexes, splits):
        seen[sid].add(split)
    return sorted(sid for sid, values in seen.items() if len(values) > 1)
