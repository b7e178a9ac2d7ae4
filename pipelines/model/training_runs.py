"""The LoRA runs under <artifacts>/lora_checkpoint: which run a materialization means, and reusing a finished one.

- <profile>-<fingerprint>/                     checkpoints/, tensorboard/, adapter/, loss_curve.png, lineage.json
- <profile>-<fingerprint>-retrain-<run id>/    a forced retrain of the same run
- latest.json                                  which run the last materialization produced (merged_model reads it)

The fingerprint is the run's whole identity (config, data, base weights, training code, world size). An ordinary
materialization reuses the newest finished run of its identity, so a forced retrain stays the current one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.atomic_files import write_json_atomic
from pipelines.config import TrainConfig
from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path, table_version
from pipelines.lineage.manifest import DataLineage, build_manifest, data_lineage, read_manifest
from pipelines.model.base_model import BaseModelInfo
from pipelines.model.checkpoints import run_fingerprint, training_code_hash
from pipelines.model.prompts import system_prompt
from pipelines.model.train import TrainResult

RUNS_DIR = "lora_checkpoint"
LATEST_RUN_FILE = "latest.json"
RUN_COMPLETE = "RUN_COMPLETE.json"


def runs_root(artifacts_root: Path) -> Path:
    return Path(artifacts_root) / RUNS_DIR


@dataclass(frozen=True)
class TrainingRunPlan:
    """What a materialization of lora_checkpoint trains: profile, base, data snapshot and the run's identity."""

    profile: str
    config: TrainConfig
    base: BaseModelInfo
    data_path: Path
    data_version: int
    lineage: DataLineage
    world_size: int  # the resolved process count: the same run on another count has another global batch
    code_hash: str
    fingerprint: str
    run_dir: Path

    def manifest(self) -> dict[str, Any]:
        """The lineage manifest a new run starts from (train_lora adds its metrics and the data it used)."""
        return build_manifest(
            kind="lora_checkpoint",
            data=self.lineage,
            training_config={"profile": self.profile, **self.config.to_dict(), "world_size": self.world_size,
                             "training_code_sha256": self.code_hash},
            base_model={k: v for k, v in self.base.to_dict().items() if k != "chat_template"},
            # What every training prompt began with: the merged and deployed model's chat template carries it.
            extra={"system_prompt": system_prompt()},
        )


def plan_training_run(
    profile: str,
    config: TrainConfig,
    base: BaseModelInfo,
    lake_root: Path,
    raw_dir: Path,
    artifacts_root: Path,
    world_size: int,
) -> TrainingRunPlan:
    """The run of `profile` on the current augmented set; FileNotFoundError while that set does not exist."""
    data_path = table_path(lake_root, AUGMENTED_TABLE)
    version = table_version(data_path)
    if version is None:
        raise FileNotFoundError(f"the augmented training set does not exist yet at {data_path}; materialize it first")
    lineage = data_lineage(read_table(data_path, version=version), AUGMENTED_TABLE, version, Path(raw_dir))
    code_hash = training_code_hash()
    fingerprint = run_fingerprint(config, lineage.content_hash, base.weights_sha256, code_hash, world_size)
    return TrainingRunPlan(
        profile=profile,
        config=config,
        base=base,
        data_path=data_path,
        data_version=version,
        lineage=lineage,
        world_size=world_size,
        code_hash=code_hash,
        fingerprint=fingerprint,
        run_dir=runs_root(artifacts_root) / f"{profile}-{fingerprint}",
    )


@dataclass(frozen=True)
class TrainingRun:
    """A finished run, trained now or reused (`metrics["reused"]`)."""

    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    loss_curve_png: Path | None


def _completed_at_ns(run_dir: Path) -> int:
    marker = run_dir / RUN_COMPLETE
    recorded = json.loads(marker.read_text(encoding="utf-8")).get("completed_at_ns")
    # Markers written before the time was recorded: the file's own write time (written once, atomically).
    return int(recorded) if recorded is not None else marker.stat().st_mtime_ns


def newest_complete_run(run_dir: Path) -> Path | None:
    """The most recently finished of `run_dir` and its forced retrains (`<run_dir>-retrain-*`), if any finished."""
    if not run_dir.parent.is_dir():
        return None
    retrain_prefix = f"{run_dir.name}-retrain-"
    candidates = [run_dir, *(p for p in run_dir.parent.iterdir() if p.name.startswith(retrain_prefix))]
    finished = [p for p in candidates if (p / RUN_COMPLETE).is_file()]
    return max(finished, key=_completed_at_ns, default=None)


def reuse_finished_run(plan: TrainingRunPlan) -> TrainingRun | None:
    """The newest finished run of the plan's identity (after a forced retrain, that retrain), if any."""
    finished = newest_complete_run(plan.run_dir)
    if finished is None:
        return None
    manifest = read_manifest(finished)
    metrics = {**manifest["training_metrics"], "reused": True}
    return TrainingRun(finished, metrics, manifest, finished / "loss_curve.png")


def new_run_dir(plan: TrainingRunPlan, force_retrain: bool, run_id: str) -> Path:
    """Where a new run trains: the plan's directory, or beside it for a forced retrain of a run that exists."""
    if force_retrain and plan.run_dir.exists():
        return plan.run_dir.with_name(f"{plan.run_dir.name}-retrain-{run_id[:8]}")
    return plan.run_dir


def finish_run(run_dir: Path, result: TrainResult) -> TrainingRun:
    """Mark a run that trained to the end as finished, so later materializations of its identity reuse it."""
    metrics = {**result.metrics, "reused": False}
    write_json_atomic(run_dir / RUN_COMPLETE, {"adapter_sha256": metrics["adapter_sha256"],
                                               "completed_at_ns": time.time_ns()})
    return TrainingRun(run_dir, metrics, result.manifest, result.loss_curve_png)


def record_latest_run(plan: TrainingRunPlan, run: TrainingRun, artifacts_root: Path) -> None:
    write_json_atomic(runs_root(artifacts_root) / LATEST_RUN_FILE, {
        "profile": plan.profile,
        "fingerprint": plan.fingerprint,
        "run_dir": str(run.run_dir.resolve()),
        "adapter_dir": str((run.run_dir / "adapter").resolve()),
        "base_model_dir": plan.base.path,
        "adapter_sha256": run.metrics["adapter_sha256"],
    })


def read_latest_run(artifacts_root: Path) -> dict[str, Any]:
    """The run the last lora_checkpoint materialization produced (see `record_latest_run`)."""
    latest_file = runs_root(artifacts_root) / LATEST_RUN_FILE
    if not latest_file.is_file():
        raise FileNotFoundError(f"no trained adapter recorded at {latest_file}; materialize lora_checkpoint first")
    return json.loads(latest_file.read_text(encoding="utf-8"))
