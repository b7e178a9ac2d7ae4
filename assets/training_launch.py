"""Launch LoRA training as a separate process tree through Dagster Pipes: `torchrun --nproc-per-node N`.

The asset's step (on whichever worker the executor routed it to, see `assets.executors`) writes a
training request, starts `torchrun ... -m pipelines.model.train_entry`, streams the child's logs into the
run (rank 0's progress lines included, each as it is written), and gets the metrics and the lineage manifest
back as the materialization's metadata, reported by rank 0. N comes from run config: an integer, or "auto" =
the number of visible GPUs, else 1.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.config import TrainConfig
from pipelines.model.train import TrainResult
from pipelines.model.train_entry import TrainingRequest

REQUEST_NAME = "training_request.json"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_nproc(nproc_per_node: int | str) -> int:
    if isinstance(nproc_per_node, int) or str(nproc_per_node).isdigit():
        count = int(nproc_per_node)
        if count < 1:
            raise ValueError(f"nproc_per_node must be >= 1 or 'auto', got {nproc_per_node!r}")
        return count
    if str(nproc_per_node).lower() != "auto":
        raise ValueError(f"nproc_per_node must be an integer or 'auto', got {nproc_per_node!r}")
    import torch

    return max(1, torch.cuda.device_count())


def torchrun_command(nproc: int, request_path: Path) -> list[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    # --standalone: a private rendezvous on a free local port, so concurrent runs never collide.
    return [*launcher, "--standalone", "--nproc-per-node", str(nproc),
            "-m", "pipelines.model.train_entry", "--request", str(request_path)]


def _child_env() -> dict[str, str]:
    # The child imports `pipelines` the way this process does, installed or from the checkout.
    python_path = os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": python_path, "TOKENIZERS_PARALLELISM": "false"}


def _json_metadata(metadata: dict[str, dg.MetadataValue], key: str) -> Any:
    if key not in metadata:
        raise dg.Failure(f"the training process reported no '{key}' metadata")
    return metadata[key].value


def launch_training(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    base_model_dir: Path,
    data_path: Path,
    data_version: int,
    output_dir: Path,
    manifest: dict[str, Any] | None = None,
    nproc_per_node: int | str = "auto",
) -> TrainResult:
    """Run `train_lora` under torchrun in a child process tree; same result as calling it in-process."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    nproc = resolve_nproc(nproc_per_node)
    request_path = TrainingRequest(
        train_config=config,
        base_model_dir=str(base_model_dir),
        data_path=str(Path(data_path).resolve()),
        data_version=int(data_version),
        output_dir=str(output_dir.resolve()),
        manifest=manifest or {},
    ).write(output_dir / REQUEST_NAME)
    command = torchrun_command(nproc, request_path)
    context.log.info(f"launching training: {' '.join(command)}")
    invocation = dg.PipesSubprocessClient(env=_child_env()).run(
        context=context, command=command, extras={"nproc_per_node": nproc}
    )
    metadata = invocation.get_materialize_result().metadata or {}
    metrics = dict(_json_metadata(metadata, "training_metrics"))
    metrics["world_size"] = int(metadata["world_size"].value) if "world_size" in metadata else nproc
    loss_png = output_dir / "loss_curve.png"
    return TrainResult(
        adapter_dir=output_dir / "adapter",
        output_dir=output_dir,
        metrics=metrics,
        manifest=dict(_json_metadata(metadata, "lineage")),
        loss_curve_png=loss_png if loss_png.is_file() else None,
    )
