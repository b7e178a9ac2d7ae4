"""The one training entry point, for 1 or N processes.

`torchrun --nproc-per-node N -m pipelines.model.train_entry --request R`

Every process runs the same `train_lora`; under torchrun (WORLD_SIZE > 1) the HF Trainer wraps the model
in DistributedDataParallel itself (gloo on CPU, nccl on GPU) and shards the batches. Only rank 0 talks
to Dagster: when launched through Dagster Pipes it streams logs and training progress (loss, step/total,
ETA at every logged step) and reports the metrics and the lineage manifest as the materialization's metadata.
Without Pipes (a shell, another scheduler) it logs to stderr.

Progress goes through Pipes' log channel: Dagster writes each Pipes log message into the run's event log as it
arrives, whereas `report_custom_message` payloads are only handed to the launching step after the process ends.

The request is a JSON file (see `TrainingRequest`: a typed TrainConfig in memory, plain JSON on disk, converted
in `read`/`write` only), so this module never needs Dagster to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import TrainConfig

# Set by the Dagster side of Pipes (dagster_pipes.DAGSTER_PIPES_CONTEXT_ENV_VAR); torchrun passes it to every rank.
PIPES_CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"


@dataclass
class TrainingRequest:
    train_config: TrainConfig
    base_model_dir: str
    data_path: str
    data_version: int
    output_dir: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> TrainingRequest:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        train_config = TrainConfig.from_dict(values.pop("train_config"), "train_config", source=str(path))
        return cls(train_config=train_config, **values)

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self), ensure_ascii=False, default=str), encoding="utf-8")
        return Path(path)


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int

    @classmethod
    def from_env(cls) -> "Rank":
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def _reporter(rank: Rank) -> Iterator[Any]:
    """The Pipes context on rank 0 of a Pipes launch; None elsewhere."""
    if rank.is_main and os.environ.get(PIPES_CONTEXT_ENV):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            yield pipes
        return
    yield None


def _logger(rank: Rank, pipes: Any) -> Callable[[str], None]:
    def log(message: str) -> None:
        line = f"[rank {rank.rank}/{rank.world_size}] {message}"
        if pipes is not None:
            pipes.log.info(line)
        else:
            print(line, file=sys.stderr, flush=True)

    return log


def materialization_metadata(metrics: dict[str, Any], manifest: dict[str, Any], world_size: int) -> dict[str, Any]:
    """What rank 0 reports to Dagster (dagster_pipes raw-value metadata)."""
    scalars = {key: value for key, value in metrics.items() if isinstance(value, (int, float, str, bool))}
    return {
        **scalars,
        "world_size": world_size,
        "training_metrics": {"raw_value": metrics, "type": "json"},
        "lineage": {"raw_value": manifest, "type": "json"},
    }


def run_request(request: TrainingRequest, rank: Rank, log: Callable[[str], None]):
    from pipelines.data.lake import read_table
    from pipelines.model.train import train_lora
    from pipelines.model.trainer import TrainingProgress

    def progress(update: TrainingProgress) -> None:
        log(update.describe())

    data = read_table(request.data_path, version=request.data_version)
    log(f"training on {request.data_path} v{request.data_version} ({len(data)} rows), world size {rank.world_size}")
    return train_lora(request.train_config, Path(request.base_model_dir), data, Path(request.output_dir),
                      manifest=request.manifest, log=log, progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.model.train_entry", description=__doc__.splitlines()[0])
    parser.add_argument("--request", type=Path, required=True, help="TrainingRequest JSON file")
    args = parser.parse_args(argv)
    rank = Rank.from_env()
    request = TrainingRequest.read(args.request)
    with _reporter(rank) as pipes:
        log = _logger(rank, pipes)
        result = run_request(request, rank, log)
        if rank.is_main:
            log(f"adapter written to {result.adapter_dir} (sha256 {result.metrics.get('adapter_sha256')})")
            if pipes is not None:
                pipes.report_asset_materialization(
                    metadata=materialization_metadata(result.metrics, result.manifest, rank.world_size),
                    data_version=str(result.metrics["adapter_sha256"])[:16],
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
