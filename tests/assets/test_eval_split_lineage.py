"""The gate judges the eval split the model was trained against, not whatever the data half holds now.

A model is trained (smoke profile, tiny random model) through real Dagster materializations; then new
records arrive and the split is redrawn (another seed and eval fraction), the data half is re-materialized,
and the same model is evaluated again. Its regression set must still be exactly the eval sources its
lineage recorded, none of which it trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, read_table, table_path, table_version
from pipelines.lineage.manifest import MANIFEST_NAME
from pipelines.serve.evaluate import PROGRESS_PREFIX
from tests.helpers import PARAMS_PATH, asset_resources, jsonl_bytes


def _params(tmp_path: Path, raw_dir: Path, name: str, *, eval_fraction: float, split_seed: int) -> Path:
    params = yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))
    params["data"]["raw_dir"] = str(raw_dir)
    params["training"]["profile"] = "smoke"
    params["augment"].update(eval_fraction=eval_fraction, split_seed=split_seed)
    # Every eval case is decoded (no cap) so the whole recorded split is compared; batches of 4 give
    # several progress lines.
    params["eval"]["profiles"]["smoke"].update(max_cases={"eval": None}, batch_size=4)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def _regression_run_config(tmp_path: Path) -> dict:
    # Only the eval slice: the other slices' files do not exist (reported as empty, not an error).
    return {
        "ops": {
            "regression_metrics": {
                "config": {
                    "mismatched_cases": str(tmp_path / "no_mismatched.jsonl"),
                    "heldout_cases": str(tmp_path / "no_heldout.jsonl"),
                    "public_cases": str(tmp_path / "no_public.jsonl"),
                }
            }
        }
    }


def _evaluated_sources(lake: Path) -> list[str]:
    results = read_table(table_path(lake, "regression_results"))
    return sorted(results.loc[results["split_source"] == "eval", "source_index"])


@pytest.mark.slow
def test_regression_set_is_the_recorded_eval_split_after_the_data_moved_on(
    tmp_path: Path, small_corpus: list[dict], lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.data_assets import DATA_ASSETS
    from assets.data_checks import DATA_CHECKS
    from assets.definitions import ASSET_CHECKS, ASSETS
    from assets.evaluation_assets import regression_metrics

    monkeypatch.delenv("SOP2CMD_PROFILE", raising=False)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "corpus.jsonl").write_bytes(jsonl_bytes(small_corpus[:60]))

    # 1. Train, merge and evaluate on the first corpus and split.
    first_params = _params(tmp_path, raw_dir, "params_first.yaml", eval_fraction=0.2, split_seed=7)
    with dg.instance_for_test() as instance:
        # Everything up to the metrics; whether a smoke-trained model passes the gate does not matter here
        # (and depends on the CPU), so neither the gate's verdict nor the deployment is asked for.
        trained = dg.materialize(
            [*ASSETS, *ASSET_CHECKS], selection=dg.AssetSelection.all() - dg.AssetSelection.keys("deployed_model"),
            resources=asset_resources(tmp_path, lake, first_params),
            run_config=_regression_run_config(tmp_path), instance=instance, raise_on_error=False,
        )
        assert trained.asset_materializations_for_node("regression_metrics"), "the first model was not evaluated"
        progress = [
            entry.user_message for entry in instance.all_logs(trained.run_id)
            if entry.step_key == "regression_metrics" and entry.user_message.startswith(PROGRESS_PREFIX)
        ]
    assert len(progress) >= 2, progress  # one line per batch: cases done of the total, and an ETA
    assert all(" cases (" in line and ", eta " in line for line in progress)

    manifest = json.loads((tmp_path / "artifacts" / "merged_model" / MANIFEST_NAME).read_text(encoding="utf-8"))
    recorded_eval = manifest["data"]["eval_source_index"]
    recorded_train = set(manifest["data"]["train_source_index"])
    trained_version = manifest["data"]["delta_version"]
    normalized_version = table_version(table_path(lake, NORMALIZED_TABLE))
    assert recorded_eval and not recorded_train & set(recorded_eval)
    assert _evaluated_sources(lake) == recorded_eval

    # 2. New data arrives and the split is redrawn; only the data half is re-materialized (no retrain yet).
    with open(raw_dir / "corpus.jsonl", "ab") as handle:
        handle.write(jsonl_bytes(small_corpus[60:]))
    moved_params = _params(tmp_path, raw_dir, "params_moved.yaml", eval_fraction=0.3, split_seed=8)
    moved = dg.materialize([*DATA_ASSETS, *DATA_CHECKS], resources=asset_resources(tmp_path, lake, moved_params))
    assert moved.success
    current = read_table(table_path(lake, AUGMENTED_TABLE))
    current_eval = set(current.loc[current["split"] == "eval", "source_index"])
    assert table_version(table_path(lake, AUGMENTED_TABLE)) > trained_version
    assert table_version(table_path(lake, NORMALIZED_TABLE)) > normalized_version
    # The premise: evaluating the current split would judge the model on sources it trained on.
    assert current_eval & recorded_train

    # 3. The same model evaluated again: its recorded eval split, read by Delta time travel.
    again = dg.materialize(
        [regression_metrics], resources=asset_resources(tmp_path, lake, moved_params),
        run_config=_regression_run_config(tmp_path),
    )
    assert again.success
    evaluated = _evaluated_sources(lake)
    assert evaluated == recorded_eval
    assert not set(evaluated) & recorded_train
    (materialization,) = again.asset_materializations_for_node("regression_metrics")
    assert materialization.metadata["augmented_delta_version"].value == trained_version
    assert materialization.metadata["normalized_delta_version"].value == normalized_version
    (evaluation,) = again.asset_materializations_for_node("regression_metrics")
    assert evaluation.metadata["eval/cases_evaluated"].value == len(recorded_eval)
