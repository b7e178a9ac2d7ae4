"""Skip a data stage whose inputs have not changed since it last wrote its tables.

Every Delta commit a stage makes carries the fingerprint of what it was computed from (the raw files'
md5, the params it reads, the upstream table's commit, and the source code of the data half) and a
small JSON summary of what it produced. When a stage is asked to run again and the current commit of
each of its output tables carries the fingerprint it would compute now, the tables already hold its
output: it writes nothing (no new Delta version) and reports the stored summary instead.

A re-materialization with nothing changed then costs a few reads instead of a parse, a validation and
a write per stage, and a Delta version always means new content.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

INPUT_KEY = "sop2cmd_stage_input"
SUMMARY_KEY = "sop2cmd_stage_summary"

_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def data_code_version() -> str:
    """sha256 over what decides the content of the data tables: data_contracts/, pipelines/data/ and the settings."""
    paths = sorted(
        [
            *(_ROOT / "data_contracts").glob("*.py"),
            *(_ROOT / "data_contracts").glob("*.yaml"),
            *(_ROOT / "pipelines" / "data").glob("*.py"),
            _ROOT / "pipelines" / "config.py",
        ]
    )
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(_ROOT).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def stage_fingerprint(stage: str, inputs: dict[str, Any]) -> str:
    payload = {"stage": stage, "code": data_code_version(), "inputs": inputs}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """JSON form of the params dataclasses a fingerprint may hold."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} cannot be part of a stage fingerprint")


def latest_commit(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest commit of the Delta table at `path` (its custom metadata included), or None."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return None
    history = DeltaTable(str(path)).history(1)
    return history[0] if history else None


def commit_identity(path: str | os.PathLike[str]) -> str | None:
    """What a downstream fingerprint records of an input table: its current commit, unique per write."""
    from pipelines.data.delta_safety import WRITE_ID_KEY

    commit = latest_commit(path)
    if commit is None:
        return None
    # Every project write carries a write id; a table written by other tools falls back to version + time.
    return str(commit.get(WRITE_ID_KEY) or f"{commit.get('version')}@{commit.get('timestamp')}")


def reusable_summary(fingerprint: str, paths: list[Path]) -> dict[str, Any] | None:
    """The stored summary when every table in `paths` was last written from `fingerprint`, else None."""
    summaries = []
    for path in paths:
        commit = latest_commit(path)
        if commit is None or commit.get(INPUT_KEY) != fingerprint:
            return None
        summaries.append(commit.get(SUMMARY_KEY))
    try:
        return json.loads(summaries[0]) if summaries and summaries[0] else {}
    except json.JSONDecodeError:
        return None


def commit_metadata(fingerprint: str, summary: dict[str, Any] | None = None) -> dict[str, str]:
    """Custom commit metadata that records a stage's input fingerprint and its summary."""
    metadata = {INPUT_KEY: fingerprint}
    if summary is not None:
        metadata[SUMMARY_KEY] = json.dumps(summary, sort_keys=True, ensure_ascii=False)
    return metadata
