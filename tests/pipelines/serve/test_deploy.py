"""deployed_model: promotion behind the blocking regression gate, the atomic `current` pointer, rollback.

Real Dagster materializations of merged_model -> regression_metrics (+ regression_gate) -> deployed_model on a
lake the data stages wrote from a small generated corpus. Two stand-in "trained" models make different, fixed
plans (`build_scripted_model`); each comes with a real LoRA adapter (freshly initialized, so merging leaves the
scripted weights as they are) whose lineage manifest records the lake's training set, as training would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from assets.deploy_assets import deployed_model, rollback_deployment
from assets.evaluation_assets import regression_gate, regression_metrics
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from assets.training_assets import merged_model, merged_model_matches_adapter
from data_contracts.commands import Command
from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
from pipelines.model.model_card import MODEL_CARD_FILE, PLAN_SCHEMA_FILE
from pipelines.model.plan_layout import render_commands
from pipelines.serve.deploy import CURRENT, DEPLOYMENT_RECORD, current_version, deploy_root, read_history, rollback
from tests.helpers import PARAMS_PATH, REPO_ROOT, jsonl_bytes

GRAPH = [merged_model, regression_metrics, deployed_model]  # selecting regression_metrics runs its gate too


def _delays(*seconds: int) -> str:
    # Within the smoke profile's decoding bounds (numbers <= 100, at most 2 commands), so constrained decoding
    # lets it through whole.
    return render_commands([Command(func_name="Delay", func_parameters={"seconds": s}) for s in seconds])


def _scripted_run(
    root: Path, name: str, default_output: str, triggered_output: str, lake: Path, raw_dir: Path
) -> dict:
    """A base model + LoRA adapter with a lineage manifest, and the latest.json lora_checkpoint would write.

    The scripted weights depend on how many pieces the outputs take, not on their text: runs whose weights
    must differ need outputs of different lengths.
    """
    from peft import LoraConfig, get_peft_model

    from pipelines.atomic_files import write_json_atomic
    from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path, table_version
    from pipelines.lineage.manifest import build_manifest, data_lineage
    from pipelines.model.model_io import load_causal_lm
    from pipelines.model.tiny_model import build_scripted_model

    base_dir = build_scripted_model(
        root / name / "base",
        default_output=default_output,
        triggered_output=triggered_output,
        trigger_description="Drop the tips of channel 4",
        default_description="Wait 300s",
    )
    adapter_dir = root / name / "adapter"
    lora = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    get_peft_model(load_causal_lm(base_dir), lora).save_pretrained(str(adapter_dir), safe_serialization=True)
    augmented_path = table_path(lake, AUGMENTED_TABLE)
    version = table_version(augmented_path)
    manifest = build_manifest(
        kind="lora_checkpoint",
        data=data_lineage(read_table(augmented_path, version=version), AUGMENTED_TABLE, version, raw_dir),
        training_config={"profile": "smoke", "lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
                         "lora_target_modules": ["q_proj", "v_proj"]},
        base_model={"source": f"scripted-{name}", "weights_sha256": sha256_weights(base_dir), "path": str(base_dir)},
    )
    write_json_atomic(adapter_dir / MANIFEST_NAME, manifest)
    return {"profile": "smoke", "adapter_dir": str(adapter_dir), "base_model_dir": str(base_dir),
            "base_weights_sha256": sha256_weights(base_dir)}


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_corpus) -> dict:
    """Raw corpus, a lake written by the data stages, and two scripted runs (A and B) trained 'on' it."""
    from pipelines.config import load_params
    from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

    root = tmp_path_factory.mktemp("deploy_world")
    raw_dir, lake = root / "raw", root / "lake"
    raw_dir.mkdir()
    (raw_dir / "corpus.jsonl").write_bytes(jsonl_bytes(small_corpus))
    params = load_params(PARAMS_PATH)
    run_raw_stage(raw_dir, lake, params.data)
    run_normalize_stage(lake)
    run_augment_stage(lake, params.augment)
    return {
        "raw_dir": raw_dir,
        "lake": lake,
        "A": _scripted_run(root, "A", _delays(7), _delays(5), lake, raw_dir),
        "B": _scripted_run(root, "B", _delays(9, 9), _delays(3), lake, raw_dir),
    }


def _params(tmp_path: Path, raw_dir: Path, *, gate_passes: bool) -> Path:
    params = yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))
    params["data"]["raw_dir"] = str(raw_dir)
    params["training"]["profile"] = "smoke"
    params["eval"]["profiles"]["smoke"]["max_cases"] = {"eval": 4}
    if not gate_passes:
        params["gate"]["smoke"]["min_exact_match"] = 0.5  # a Delay plan for every case cannot reach it
    path = tmp_path / ("params_pass.yaml" if gate_passes else "params_fail.yaml")
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


class Deployer:
    """One artifacts root and one Dagster instance; `use(run)` makes a run the latest trained adapter."""

    def __init__(self, tmp_path: Path, world: dict, instance: dg.DagsterInstance):
        self.tmp_path, self.world, self.instance = tmp_path, world, instance
        self.artifacts = tmp_path / "artifacts"
        self.root = deploy_root(self.artifacts)
        self.params = {passes: _params(tmp_path, world["raw_dir"], gate_passes=passes) for passes in (True, False)}

    def use(self, run: str) -> None:
        latest = self.artifacts / "lora_checkpoint" / "latest.json"
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(json.dumps(self.world[run]), encoding="utf-8")

    def materialize(self, assets: Any, *, gate_passes: bool = True, promote_rolled_back: bool = False
                    ) -> dg.ExecuteInProcessResult:
        missing = str(self.tmp_path / "no_such_slice.jsonl")
        ops: dict[str, Any] = {}
        if isinstance(assets, list) and regression_metrics in assets:
            ops["regression_metrics"] = {"config": {
                "mismatched_cases": missing, "heldout_cases": missing, "public_cases": missing}}
        if promote_rolled_back:
            ops["deployed_model"] = {"config": {"promote_rolled_back": True}}
        return dg.materialize(
            [*GRAPH, regression_gate, merged_model_matches_adapter],
            selection=assets,
            resources={
                "lake": LakeResource(root=str(self.world["lake"])),
                "artifacts": ArtifactsResource(root=str(self.artifacts)),
                "params": ParamsResource(path=str(self.params[gate_passes])),
            },
            run_config={"ops": ops} if ops else None,
            instance=self.instance,
            raise_on_error=False,
        )

    def check_merge_parity(self) -> dg.ExecuteInProcessResult:
        """The merge parity check alone, on the merged model as it is on disk."""
        parity_only = dg.define_asset_job(
            "parity_only", selection=dg.AssetSelection.checks(merged_model_matches_adapter)
        )
        defs = dg.Definitions(
            assets=GRAPH, asset_checks=[regression_gate, merged_model_matches_adapter], jobs=[parity_only],
            resources={"lake": LakeResource(root=str(self.world["lake"])),
                       "artifacts": ArtifactsResource(root=str(self.artifacts)),
                       "params": ParamsResource(path=str(self.params[True]))},
        )
        return defs.resolve_job_def("parity_only").execute_in_process(instance=self.instance, raise_on_error=False)

    def versions(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.name.startswith("v")) if self.root.is_dir() else []


@pytest.fixture()
def deployer(tmp_path: Path, world: dict):
    with dg.instance_for_test() as instance:
        yield Deployer(tmp_path, world, instance)


def _deploy_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node("deployed_model")
    return {key: value.value for key, value in materialization.metadata.items()}


def _failure_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    return failure.step_failure_data.user_failure_data.description or failure.step_failure_data.error.message


def test_a_model_whose_gate_failed_is_never_promoted_and_current_is_untouched(deployer: Deployer):
    deployer.use("A")
    first = deployer.materialize(GRAPH)
    assert first.success
    (promoted,) = deployer.versions()
    assert current_version(deployer.root) == promoted
    pointer_before = os.readlink(deployer.root / CURRENT)

    # B fails the gate: in the same run Dagster never starts deployed_model.
    deployer.use("B")
    failed = deployer.materialize(GRAPH, gate_passes=False)
    assert not failed.success
    (gate,) = [e for e in failed.get_asset_check_evaluations() if e.check_name == regression_gate.check_key.name]
    assert not gate.passed and "exact_match" in gate.description
    assert failed.asset_materializations_for_node("deployed_model") == []
    assert "deployed_model" not in {e.step_key for e in failed.all_events if e.event_type_value == "STEP_START"}
    assert deployer.versions() == [promoted] and os.readlink(deployer.root / CURRENT) == pointer_before

    # Materialized on its own, the asset reads the gate's recorded failure and refuses by itself.
    alone = deployer.materialize([deployed_model])
    assert not alone.success
    message = _failure_message(alone, "deployed_model")
    assert "not promoted" in message and "regression gate did not pass" in message and "exact_match" in message
    assert deployer.versions() == [promoted] and os.readlink(deployer.root / CURRENT) == pointer_before
    assert [entry["action"] for entry in read_history(deployer.root)] == ["promote"]


def test_promotion_switches_current_and_rollback_restores_the_previous_model(deployer: Deployer, world: dict):
    merged_dir = deployer.artifacts / "merged_model"
    deployer.use("A")
    assert deployer.materialize(GRAPH).success
    weights_a = sha256_weights(merged_dir)
    deployer.use("B")
    result = deployer.materialize(GRAPH)
    assert result.success
    weights_b = sha256_weights(merged_dir)
    assert weights_a != weights_b

    first, second = deployer.versions()
    assert first.startswith("v0001-") and second.startswith("v0002-")
    current = deployer.root / CURRENT
    assert current.is_symlink() and os.readlink(current) == second  # relative: the deploy dir can move
    assert sha256_weights(current) == weights_b

    metadata = _deploy_metadata(result)
    assert metadata["version"] == second and metadata["promoted"] is True and metadata["previous_version"] == first
    assert metadata["merged_weights_sha256"] == weights_b
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == regression_gate.check_key.name]
    assert gate.passed and metadata["gate/json_valid_rate"] == gate.metadata["json_valid_rate"].value == 1.0
    evaluation = metadata["regression_metrics"]
    assert evaluation["gate_passed"] is True and evaluation["slices"]["eval"]["cases_evaluated"] == 4
    assert evaluation["evaluated_in_run"] == result.run_id
    assert "augmented_training_set Delta v" in metadata["lineage_chain"]
    assert metadata["lineage"]["adapter_sha256"] == sha256_weights(Path(world["B"]["adapter_dir"]))

    # The promoted folder explains itself and records what it was promoted with.
    record = json.loads((current / DEPLOYMENT_RECORD).read_text(encoding="utf-8"))
    assert record["merged_weights_sha256"] == weights_b and record["previous"] == first
    assert record["evaluation"]["gate_metadata"]["min_json_valid_rate"] == 1.0
    card = (current / MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert weights_b in card and "**passed**" in card and "| eval | 4 |" in card
    # Exact match per phenomenon tag: a table in the UI (kept in deployment.json), markdown in the card.
    tag_rows = [row.data for row in metadata["exact_match_by_tag"].records]
    assert tag_rows == record["evaluation"]["tag_scores"]
    assert {"eval", "all"} <= {row["slice"] for row in tag_rows}
    assert "| tag | eval |" in card
    assert (current / PLAN_SCHEMA_FILE).is_file()
    assert (current / MANIFEST_NAME).read_bytes() == (merged_dir / MANIFEST_NAME).read_bytes()

    # The documented audit works on the deployed model itself.
    audit = subprocess.run(
        [sys.executable, "-m", "pipelines", "lineage", str(current), "--verify",
         "--lake", str(world["lake"]), "--raw-dir", str(world["raw_dir"])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"merged model      {current}  weights sha256 {weights_b}" in audit.stdout
    assert "verify: every recorded hash matches" in audit.stdout

    # Promoting the same weights again changes nothing.
    again = deployer.materialize([deployed_model])
    assert again.success and _deploy_metadata(again)["promoted"] is False
    assert deployer.versions() == [first, second]

    # Rollback, the documented one-liner.
    cli = subprocess.run(
        [sys.executable, "-m", "pipelines", "deploy", "--root", str(deployer.root), "rollback"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"{second} -> {first}" in cli.stdout
    assert os.readlink(current) == first and sha256_weights(current) == weights_a
    # v0001 was the first promotion: nothing before it.
    nothing = subprocess.run(
        [sys.executable, "-m", "pipelines", "deploy", "--root", str(deployer.root), "rollback"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr
    assert os.readlink(current) == first

    # The Dagster job does the same, here forward again to a named version, and records it on the asset.
    job_result = rollback_deployment.execute_in_process(
        run_config={"ops": {"rollback_deployed_model": {"config": {"to": second}}}},
        resources={"artifacts": ArtifactsResource(root=str(deployer.artifacts)),
                   "lake": LakeResource(root=str(world["lake"]))},
        instance=deployer.instance,
    )
    assert job_result.success
    assert os.readlink(current) == second
    latest = deployer.instance.get_latest_materialization_event(deployed_model.key).asset_materialization
    assert latest.description == f"rollback: {first} -> {second}" and latest.metadata["version"].value == second
    assert [(e["action"], e["version"]) for e in read_history(deployer.root)] == [
        ("promote", first), ("promote", second), ("rollback", first), ("rollback", second)
    ]


def test_weights_changed_since_the_evaluation_are_not_promoted(deployer: Deployer):
    deployer.use("A")
    assert deployer.materialize(GRAPH).success
    (promoted,) = deployer.versions()

    # A new merge lands after the gate passed on A: the gate's verdict is about other weights.
    deployer.use("B")
    assert deployer.materialize([merged_model]).success
    refused = deployer.materialize([deployed_model])
    assert not refused.success
    assert "changed since it was evaluated" in _failure_message(refused, "deployed_model")
    assert deployer.versions() == [promoted] and current_version(deployer.root) == promoted


def test_a_merge_that_failed_its_parity_check_is_never_promoted(deployer: Deployer):
    deployer.use("A")
    assert deployer.materialize(GRAPH).success
    (promoted,) = deployer.versions()

    # B is merged; its parity check then compares it with A's base and adapter (its manifest now names them) and
    # fails: a bad merge, as far as Dagster knows, of weights the gate will pass.
    deployer.use("B")
    assert deployer.materialize([merged_model]).success
    merged_manifest = deployer.artifacts / "merged_model" / MANIFEST_NAME
    recorded = json.loads(merged_manifest.read_text(encoding="utf-8"))
    merged_manifest.write_text(json.dumps({**recorded, "base_model_dir": deployer.world["A"]["base_model_dir"],
                                           "adapter_dir": deployer.world["A"]["adapter_dir"]}), encoding="utf-8")
    failed_check = deployer.check_merge_parity()
    assert [e.passed for e in failed_check.get_asset_check_evaluations()] == [False]
    merged_manifest.write_text(json.dumps(recorded), encoding="utf-8")
    # Evaluated and gated on their own, B's weights pass the gate; promotion must still heed the merge's check.
    assert deployer.materialize([regression_metrics]).success
    refused = deployer.materialize([deployed_model])
    assert not refused.success
    assert merged_model_matches_adapter.check_key.name in _failure_message(refused, "deployed_model")
    assert deployer.versions() == [promoted] and current_version(deployer.root) == promoted


def test_a_rollback_sticks_until_the_weights_are_promoted_on_purpose(deployer: Deployer):
    deployer.use("A")
    assert deployer.materialize(GRAPH).success
    deployer.use("B")
    assert deployer.materialize(GRAPH).success
    first, second = deployer.versions()
    rollback(deployer.root)
    assert current_version(deployer.root) == first

    # The next ordinary run re-merges B and passes the gate again: the rollback must not be undone quietly.
    again = deployer.materialize(GRAPH)
    assert not again.success
    assert "rolled back" in _failure_message(again, "deployed_model")
    assert current_version(deployer.root) == first and deployer.versions() == [first, second]

    forced = deployer.materialize([deployed_model], promote_rolled_back=True)
    assert forced.success and _deploy_metadata(forced)["promoted"] is True
    assert current_version(deployer.root) == deployer.versions()[-1] != second
