"""End-to-end smoke: the whole graph materialized with the smoke profile into a temporary lake and artifacts dir."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest

from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path, table_version
from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.slow
def test_whole_graph_smoke_profile_end_to_end(resources, raw_dir: Path, lake: Path, tmp_path: Path, monkeypatch):
    from assets.definitions import ASSET_CHECKS, ASSETS

    monkeypatch.delenv("SOP2CMD_PROFILE", raising=False)
    result = dg.materialize([*ASSETS, *ASSET_CHECKS], resources=resources)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["merged_model_matches_adapter"].passed
    parity = checks["merged_model_matches_adapter"].metadata
    assert parity["max_abs_logit_diff"].value <= parity["tolerance"].value
    assert parity["argmax_agreements"].value == parity["decisive_positions"].value > 0

    base = _metadata(result, "base_model")
    assert base["profile"] == "smoke" and base["source"] == "tiny" and base["parameter_count"] > 0

    lora = _metadata(result, "lora_checkpoint")
    assert lora["device"] == "cpu" and lora["tokens_per_s"] > 0 and lora["reused"] is False
    assert Path(lora["loss_curve"]).is_file()
    lineage = lora["lineage"]
    augmented_path = table_path(lake, AUGMENTED_TABLE)
    data = read_table(augmented_path)
    assert lineage["data"]["delta_version"] == table_version(augmented_path)
    assert lineage["data"]["train_source_index"] == sorted(set(data.loc[data.split == "train", "source_index"]))
    assert lineage["data"]["eval_source_index"] == sorted(set(data.loc[data.split == "eval", "source_index"]))
    assert not set(lineage["data"]["train_source_index"]) & set(lineage["data"]["eval_source_index"])
    raw_file = raw_dir / "corpus.jsonl"
    assert lineage["data"]["raw_files_md5"] == {"corpus.jsonl": hashlib.md5(raw_file.read_bytes()).hexdigest()}
    assert set(lineage["git"]) == {"commit", "dirty"}
    assert lineage["base_model"]["weights_sha256"] == base["weights_sha256"]
    assert lineage["libraries"]["peft"] and lineage["libraries"]["trl"]
    assert lineage["training_config"]["profile"] == "smoke"

    merged = _metadata(result, "merged_model")
    merged_dir = Path(merged["path"])
    manifest = json.loads((merged_dir / MANIFEST_NAME).read_text())
    assert manifest["adapter_sha256"] == lora["adapter_sha256"] == sha256_weights(Path(lora["adapter_dir"]))
    assert manifest["data"]["content_hash"] == lineage["data"]["content_hash"]

    # Nothing changed: materializing the checkpoint again reuses the finished run instead of retraining.
    from assets.training_assets import base_model, lora_checkpoint

    again = dg.materialize([base_model, lora_checkpoint], resources=resources,
                           selection=[lora_checkpoint])
    assert again.success
    reused = _metadata(again, "lora_checkpoint")
    assert reused["reused"] is True and reused["adapter_sha256"] == lora["adapter_sha256"]


def _write_augmented_set(resources: dict[str, dg.ConfigurableResource], raw_dir: Path, lake: Path) -> None:
    """The augmented table through the data stages themselves (what the data assets run)."""
    from pipelines.config import load_params
    from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

    params = load_params(resources["params"].path)
    run_raw_stage(raw_dir, lake, params.data)
    run_normalize_stage(lake)
    run_augment_stage(lake, params.augment)


def _progress_lines(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [record.user_message for record in instance.all_logs(run_id)
            if record.step_key == "lora_checkpoint" and "training progress: step" in record.user_message]


@pytest.mark.slow
def test_forced_retrain_stays_current_and_training_progress_reaches_the_event_log(
    resources, raw_dir: Path, lake: Path, tmp_path: Path, monkeypatch
):
    from assets.training_assets import TrainingRunConfig, base_model, lora_checkpoint
    from assets.training_launch import resolve_nproc
    from pipelines.config import load_params
    from pipelines.lineage.manifest import data_lineage
    from pipelines.model.checkpoints import run_fingerprint, training_code_hash
    from pipelines.model.training_runs import LATEST_RUN_FILE

    monkeypatch.delenv("SOP2CMD_PROFILE", raising=False)
    _write_augmented_set(resources, raw_dir, lake)
    latest_file = tmp_path / "artifacts" / "lora_checkpoint" / LATEST_RUN_FILE

    def materialize(instance: dg.DagsterInstance, **run_config) -> tuple[str, dict]:
        result = dg.materialize(
            [base_model, lora_checkpoint], resources=resources, instance=instance, selection=[lora_checkpoint],
            run_config=dg.RunConfig(ops={"lora_checkpoint": TrainingRunConfig(**run_config)}),
        )
        assert result.success
        return result.run_id, _metadata(result, "lora_checkpoint")

    with dg.instance_for_test() as instance:
        # lora_checkpoint trains on the base model that base_model prepared.
        assert dg.materialize([base_model], resources=resources, instance=instance).success
        first_run, first = materialize(instance)
        # Progress arrives through Pipes while the step runs: loss, step/total and ETA, in step order.
        progress = _progress_lines(instance, first_run)
        assert len(progress) >= 2, progress
        assert all("loss " in line and "eta " in line for line in progress)
        assert f"step {first['global_step']}/{first['global_step']} (100%)" in progress[-1]

        forced_run, forced = materialize(instance, force_retrain=True)
        assert forced["reused"] is False and forced["run_dir"] != first["run_dir"]
        assert len(_progress_lines(instance, forced_run)) >= 2
        assert json.loads(latest_file.read_text())["run_dir"] == str(Path(forced["run_dir"]).resolve())

        # The next ordinary run reuses the newest finished run of this identity: the forced retrain.
        _, ordinary = materialize(instance)
        assert ordinary["reused"] is True
        assert ordinary["run_dir"] == forced["run_dir"] and ordinary["adapter_dir"] == forced["adapter_dir"]
        latest = json.loads(latest_file.read_text())
        assert latest["run_dir"] == str(Path(forced["run_dir"]).resolve())
        assert latest["adapter_dir"] == str((Path(forced["run_dir"]) / "adapter").resolve())

    # The run's identity is the whole of it: config, data, base weights, this training code and the world size.
    _, train_config = load_params(resources["params"].path).training.resolve()
    augmented_path = table_path(lake, AUGMENTED_TABLE)
    version = table_version(augmented_path)
    data = read_table(augmented_path, version=version)
    content_hash = data_lineage(data, AUGMENTED_TABLE, version, raw_dir).content_hash
    world_size = resolve_nproc("auto")
    assert first["world_size"] == world_size and first["training_code_sha256"] == training_code_hash()
    assert first["run_fingerprint"] == run_fingerprint(
        train_config, content_hash, first["lineage"]["base_model"]["weights_sha256"], training_code_hash(), world_size
    )
    assert Path(first["run_dir"]).name == f"smoke-{first['run_fingerprint']}"
    assert first["lineage"]["training_config"]["world_size"] == world_size
