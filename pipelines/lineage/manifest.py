"""Lineage manifest: ties a trained adapter (and the merged model) to the exact data and code that made it.

The manifest is plain JSON written beside the artifact, so an auditor needs nothing but this file, the
lake and the git history to reproduce or verify a deployed model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST_NAME = "lineage.json"
_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "tokenizers",
    "safetensors",
    "deltalake",
)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_weights(model_dir: Path) -> str:
    """Content hash of a model directory's weights: every *.safetensors file, in name order."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {model_dir}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def frame_content_hash(df: pd.DataFrame, sort_by: str | None = None) -> str:
    """Order-independent content hash of a table (rows sorted by `sort_by`, columns by name)."""
    frame = df.sort_values(sort_by, kind="stable") if sort_by else df
    frame = frame[sorted(frame.columns)].reset_index(drop=True)
    payload = frame.to_json(orient="records", force_ascii=False, date_format="iso")
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def git_state(repo_dir: Path | None = None) -> dict[str, Any]:
    """HEAD commit and whether the working tree differs from it (None when not a git checkout)."""
    cwd = str(repo_dir or Path.cwd())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class DataLineage:
    table: str
    delta_version: int | None
    content_hash: str
    train_source_index: list[str]
    eval_source_index: list[str]
    raw_files_md5: dict[str, str] = field(default_factory=dict)


def data_lineage(df: pd.DataFrame, table: str, delta_version: int | None, raw_dir: Path) -> DataLineage:
    # Here, not at the top: pipelines.data.ingest loads the command catalog, which most manifest readers never need.
    from pipelines.data.ingest import corpus_md5s

    def sources(split: str) -> list[str]:
        return sorted({str(value) for value in df.loc[df["split"] == split, "source_index"]})

    return DataLineage(
        table=table,
        delta_version=delta_version,
        content_hash=frame_content_hash(df, sort_by="sample_id" if "sample_id" in df.columns else None),
        train_source_index=sources("train"),
        eval_source_index=sources("eval"),
        # The corpus files exactly as ingest reads them (`pipelines.data.ingest.raw_files`), and no other file.
        raw_files_md5=corpus_md5s(raw_dir),
    )


def build_manifest(
    *,
    kind: str,
    data: DataLineage | dict[str, Any] | None,
    training_config: dict[str, Any],
    base_model: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "data": asdict(data) if isinstance(data, DataLineage) else data,
        "git": git_state(),
        "training_config": training_config,
        "base_model": base_model,
        "libraries": library_versions(),
        **(extra or {}),
    }


class LineageError(Exception):
    """The chain cannot be resolved (missing manifest, vacuumed table version, inconsistent tables)."""


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest beside a model or adapter; LineageError naming the path when there is none."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise LineageError(f"{path} not found: {model_dir} is not a model or adapter directory written by sop2cmd")
    return json.loads(path.read_text(encoding="utf-8"))
