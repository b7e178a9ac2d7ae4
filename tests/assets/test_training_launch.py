"""Training launched through Dagster Pipes under torchrun: 2 CPU processes (gloo) make a valid checkpoint."""

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.training_launch import launch_training, resolve_nproc, torchrun_command
from pipelines.config import TrainConfig
from pipelines.data.lake import AUGMENTED_TABLE, table_path
from pipelines.lineage.manifest import sha256_weights
from pipelines.model.checkpoints import CONFIG_NAME
from tests.support.lineage_fixture import EXAMPLES, run_data_stages

pytestmark = pytest.mark.slow


def test_nproc_resolution_and_command() -> None:
    assert resolve_nproc(3) == 3
    assert resolve_nproc("2") == 2
    assert resolve_nproc("auto") >= 1
    with pytest.raises(ValueError, match="'auto'"):
        resolve_nproc("many")
    command = torchrun_command(2, Path("/tmp/request.json"))
    assert command[-6:] == [
        "--nproc-per-node", "2", "-m", "pipelines.model.train_entry", "--request", "/tmp/request.json"
    ]


def test_two_gloo_processes_train_a_valid_adapter(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.model_io import check_model_dir, load_causal_lm

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "examples.jsonl").write_bytes(EXAMPLES.read_bytes())
    lake = tmp_path / "lake"
    version = run_data_stages(raw_dir, lake)
    base_dir = Path(resolve_base_model("tiny", tmp_path / "artifacts").path)
    config = TrainConfig(
        base_model="tiny", num_train_epochs=1, max_train_samples=8, max_eval_samples=4,
        per_device_train_batch_size=2, per_device_eval_batch_size=4, learning_rate=5e-3, warmup_steps=0,
        lr_scheduler_type="constant", logging_steps=1, device="cpu", eval_strategy="no",
    )
    run_dir = tmp_path / "run"

    @dg.asset
    def ddp_checkpoint(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        result = launch_training(
            context, config, base_dir, table_path(lake, AUGMENTED_TABLE), version, run_dir,
            manifest={"kind": "lora_checkpoint"}, nproc_per_node=2,
        )
        return dg.MaterializeResult(metadata={
            "world_size": result.metrics["world_size"],
            "adapter_sha256": result.metrics["adapter_sha256"],
            "manifest_kind": result.manifest["kind"],
            "global_step": result.metrics["global_step"],
        })

    with dg.instance_for_test() as instance:
        outcome = dg.materialize([ddp_checkpoint], instance=instance)
        assert outcome.success
        metadata = outcome.asset_materializations_for_node("ddp_checkpoint")[0].metadata
        messages = [record.user_message for record in instance.all_logs(outcome.run_id)]

    assert metadata["world_size"].value == 2
    assert metadata["manifest_kind"].value == "lora_checkpoint"
    assert metadata["global_step"].value >= 1
    # Both ranks trained (rank 1 logs to stderr, rank 0 through Pipes into the run's event log).
    assert any("[rank 0/2] training on" in message for message in messages)
    # Rank 0 alone reports progress, as it happens, through Pipes; every logged step (logging_steps=1) is there.
    progress = [message for message in messages if "training progress: step" in message]
    assert len(progress) == metadata["global_step"].value and all(m.startswith("[rank 0/2]") for m in progress)

    adapter_dir = run_dir / "adapter"
    check_model_dir(adapter_dir)
    # What a resume compares against: the number of processes that trained this run.
    assert json.loads((adapter_dir / CONFIG_NAME).read_text())["world_size"] == 2
    assert sha256_weights(adapter_dir) == metadata["adapter_sha256"].value
    model = PeftModel.from_pretrained(load_causal_lm(base_dir), str(adapter_dir), is_trainable=False)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits
    assert torch.isfinite(logits).all()
