"""Which checkpoint a training run may resume, and which finished run it may reuse.

- A checkpoint counts only once its completeness marker exists (written after the Trainer has saved everything);
  an unmarked checkpoint is renamed aside and training resumes from the newest complete one, with optimizer,
  scheduler, RNG and step restored by the Trainer. A checkpoint written by another number of processes is refused:
  the global batch, the data order and the schedule would all differ.
- `run_fingerprint` is a run's identity (config, data, base weights, the training code and the world size), so a
  run is reused or resumed only by the run that would have produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from pipelines.config import TrainConfig

COMPLETE_MARKER = "COMPLETE.json"
CONFIG_NAME = "train_config.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def find_resume_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Newest complete checkpoint; every incomplete one is renamed aside (kept for inspection, never used)."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in checkpoints_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
        key=lambda p: checkpoint_step(p),
    )
    complete = []
    for path in candidates:
        if is_complete_checkpoint(path):
            complete.append(path)
        else:
            aside = path.with_name(f"incomplete-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            os.replace(path, aside)
    return complete[-1] if complete else None


def check_resume_compatible(checkpoint: Path, world_size: int, bf16: bool | None = None) -> None:
    """Refuse a checkpoint written by another number of processes, or with another bf16 resolution.

    The Trainer would restore its step and optimizer anyway, but with another world size the global batch, the
    sampler's shards and the steps per epoch all change, so the resumed run is neither the old one nor a new one.
    """
    saved = json.loads((Path(checkpoint) / CONFIG_NAME).read_text(encoding="utf-8"))
    recorded = saved.get("world_size")
    if recorded is not None and int(recorded) != world_size:
        raise ValueError(
            f"cannot resume {checkpoint}: it was written by {recorded} training processes and this run has "
            f"{world_size}; train with {recorded} processes again, or into another output directory"
        )
    # cpu_bf16 resolves per machine: a run begun with bf16 autocast must not go on in fp32 (or back) elsewhere.
    if bf16 is not None and "resolved_bf16" in saved and bool(saved["resolved_bf16"]) != bf16:
        raise ValueError(
            f"cannot resume {checkpoint}: it was trained with bf16={saved['resolved_bf16']} and this machine "
            f"resolves bf16={bf16} (cpu_bf16 needs native bf16); resume on a machine like the first, or train anew"
        )


# The sources whose bytes decide what a run trains: the loop and its loss, the entry point that feeds it, the
# prompt builder that makes every training id, the catalog its system prompt is written from, and the loader


# The sources whose bytes decide what a run trains: the loop, its trainer and loss, the rows and weights it trains
# on, the resume rules, the entry point that feeds it, the prompt builder that makes every training id, the
# catalog its system prompt is written from, and the loader of the weights. Relative to the package root. The
# settings need no entry: every TrainConfig value is part of the fingerprint itself, and the `<eoc>` marker
# (data_contracts.tables) ends every completion, so the data hash changes with it.
TRAINING_CODE_FILES: tuple[str, ...] = (
    "pipelines/model/train.py",
    "pipelines/model/trainer.py",
    "pipelines/model/training_data.py",
    "pipelines/model/checkpoints.py",
    "pipelines/model/train_entry.py",
    "pipelines/model/prompts.py",
    "data_contracts/command_catalog.yaml",
    "pipelines/model/model_io.py",
)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def training_code_hash(root: Path | None = None, files: tuple[str, ...] = TRAINING_CODE_FILES) -> str:
    """sha256 over the training sources (name and bytes of each) under `root` (default: this checkout or install)."""
    root = Path(root) if root is not None else _PACKAGE_ROOT
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def run_fingerprint(
    config: TrainConfig, data_hash: str, base_hash: str, code_hash: str | None = None, world_size: int = 1
) -> str:
    """Identity of a training run: a checkpoint is only resumed, and a finished run only reused, by the run that
    would have produced it. That includes the training code (None: this checkout's, `training_code_hash()`) and the
    number of processes, which sets the global batch and so every step.
    """
    payload = json.dumps({
        "config": config.to_dict(),
        "data": data_hash,
        "base": base_hash,
        "code": code_hash if code_hash is not None else training_code_hash(),
        "world_size": int(world_size),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
