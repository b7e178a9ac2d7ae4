"""Content fingerprints of the raw corpus: one md5 per file, the same digest DVC records.

The corpus files themselves are decided by `pipelines.data.ingest.raw_files` alone (`corpus_md5s` maps them to
these digests); the retrain sensor, the nightly schedule and `lineage --verify` compare such maps, so a file
counts as changed exactly when its bytes change (never on a touch or a copy).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


def file_md5(path: Path) -> str:
    """md5 of the file's bytes: what DVC 3 records in .dvc files and dvc.lock for a single file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def corpus_digest(fingerprint: dict[str, str]) -> str:
    """One short id for a whole corpus state, stable under dict ordering."""
    payload = json.dumps(sorted(fingerprint.items()), separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class CorpusChange:
    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.modified or self.deleted)

    def describe(self) -> str:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (("added", self.added), ("modified", self.modified), ("deleted", self.deleted))
            if names
        ]
        return "; ".join(parts) or "no change"


def diff_fingerprints(before: dict[str, str], after: dict[str, str]) -> CorpusChange:
    return CorpusChange(
        added=tuple(sorted(set(after) - set(before))),
        modified=tuple(sorted(name for name in set(before) & set(after) if before[name] != after[name])),
        deleted=tuple(sorted(set(before) - set(after))),
    )
