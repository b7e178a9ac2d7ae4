"""regression_metrics and its blocking gate, materialized with Dagster on a temporary lake and model dir.

Inputs are built directly (no training): a tiny random model stands in for the merged model, recorded
as trained with the smoke profile on version 0 of the augmented set, the two upstream tables are written
with their Delta schemas, and the mismatched, held-out and public slice files are temporary files.
(tests/assets/test_eval_split_lineage.py trains a model and re-materializes the data under it.)
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.serve.eval_cases import SLICES
from pipelines.serve.evaluate import PROGRESS_PREFIX
from tests.helpers import PARAMS_PATH, REPO_ROOT

SAMPLES = [
    ("s0", "等待1分钟", [Command(func_name="Delay", func_parameters={"seconds": 60})]),
    (
        "s1",
        "Shake Plate1 at 700 rpm for 1 minute",
        [Command(func_name="Shake", func_parameters={"labware": "Plate1", "rpm": 700, "seconds": 60})],
    ),
    (
        "s2",
        "Pick up 200ul tips on channel 3",
        [Command(func_name="GetDiti", func_parameters={"ditiType": "200ul", "channels": [3]})],
    ),
    ("s3", "弃去通道1的枪头", [Command(func_name="DropDiti", func_parameters={"channels": [1]})]),
]
EVAL_IDS = {"s0", "s1", "s2"}
# The stand-in model's lineage: trained with the smoke profile on version 0 of the augmented set write_inputs writes.
TRAINED_ON = {
    "profile": "smoke",
    "data": {
        "table": "augmented_training_set",
        "delta_version": 0,
        "eval_source_index": sorted(EVAL_IDS),
        "train_source_index": sorted({s for s, _, _ in SAMPLES} - EVAL_IDS),
    },
}


PUBLIC_CASES = [
    {
        "conversation": [{"input": "程序暂停，计时3小时后继续", "output": "Delay(seconds=10800)"}],
        "id": "E003",
        "tags": ["zh"],
    },
    {
        "conversation": [
            {
                "input": "Gripper: carry Assay_Plate over to Deck_7.",
                "output": "MoveLabware(labware='Assay_Plate', position='Deck_7')",
            }
        ],
        "id": "E006",
        "tags": ["en"],
    },
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_inputs(lake: Path) -> None:
    from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, inputs_metadata, table_path, write_table
    from pipelines.data.normalize import normalize_text

    normalized = pd.DataFrame(
        {
            "source_index": [s for s, _, _ in SAMPLES],
            "input_text": [normalize_text(d) for _, d, _ in SAMPLES],  # as the normalize stage writes it
            "raw_input": [d for _, d, _ in SAMPLES],
            "commands_json": [render_json_commands(c) for _, _, c in SAMPLES],
            "command_names": [[x.func_name for x in c] for _, _, c in SAMPLES],
            "n_commands": [len(c) for _, _, c in SAMPLES],
            "lang": ["zh", "en", "en", "zh"],
            "source_file": ["corpus.jsonl"] * len(SAMPLES),
            "line_number": list(range(1, len(SAMPLES) + 1)),
        }
    )
    augmented = pd.DataFrame(
        {
            "sample_id": [f"{s}-{v}" for s, _, _ in SAMPLES for v in ("a", "b")],
            "source_index": [s for s, _, _ in SAMPLES for _ in range(2)],
            "template": ["zh_direct"] * 2 * len(SAMPLES),
            "variant": ["with_prefix", "without_prefix"] * len(SAMPLES),
            "prompt": [d for _, d, _ in SAMPLES for _ in range(2)],
            "completion": [render_json_commands(c) + "<eoc>" for _, _, c in SAMPLES for _ in range(2)],
            "command_names": [[x.func_name for x in c] for _, _, c in SAMPLES for _ in range(2)],
            "weight": [1.0] * 2 * len(SAMPLES),
            "split": ["eval" if s in EVAL_IDS else "train" for s, _, _ in SAMPLES for _ in range(2)],
        }
    )
    normalized_version = write_table(normalized, table_path(lake, NORMALIZED_TABLE), table=NORMALIZED_TABLE)
    write_table(
        augmented, table_path(lake, AUGMENTED_TABLE), table=AUGMENTED_TABLE,
        commit_metadata=inputs_metadata({NORMALIZED_TABLE: normalized_version}),
    )


@pytest.fixture(scope="module")
def merged_model_root(tmp_path_factory) -> Path:
    """An artifacts root whose merged_model is the tiny random model, trained 'with the smoke profile'."""
    import torch

    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("artifacts")
    model_dir = build_tiny_model(root / "merged_model", seed=0)
    (model_dir / "lineage.json").write_text(json.dumps(TRAINED_ON), encoding="utf-8")
    yield root
    torch.set_num_threads(threads)


def smoke_params(tmp_path: Path, **eval_overrides) -> Path:
    """params.yaml with the smoke profile's eval settings changed (tests need failures appended)."""
    params = yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))
    params["eval"]["profiles"]["smoke"].update(eval_overrides)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def materialize(
    tmp_path: Path,
    artifacts: Path,
    mismatched: Path,
    params_path: Path,
    heldout: Path | None = None,
    public: Path | None = None,
    instance=None,
):
    """regression_metrics + its gate; slice files default to paths that do not exist (empty slices)."""
    import dagster as dg

    from assets.evaluation_assets import regression_gate, regression_metrics
    from assets.resources import ArtifactsResource, LakeResource, ParamsResource

    return dg.materialize(
        [regression_metrics, regression_gate],
        resources={
            "lake": LakeResource(root=str(tmp_path / "lake")),
            "artifacts": ArtifactsResource(root=str(artifacts)),
            "params": ParamsResource(path=str(params_path)),
        },
        run_config={
            "ops": {
                "regression_metrics": {
                    "config": {
                        "mismatched_cases": str(mismatched),
                        "heldout_cases": str(heldout or tmp_path / "no_heldout.jsonl"),
                        "public_cases": str(public or tmp_path / "no_public.jsonl"),
                    }
                }
            }
        },
        raise_on_error=False,
        instance=instance,
    )


def gate_evaluation(result):
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1
    return evaluations[0]


def test_regression_metrics_writes_results_appends_failures_and_gates(tmp_path, merged_model_root):
    from assets.evaluation_assets import regression_metrics
    from data_contracts.tables import RegressionResultTable
    from pipelines.data.lake import read_table, table_path

    repo_file = REPO_ROOT / "data" / "regression" / "mismatched_cases.jsonl"
    repo_before = repo_file.read_bytes() if repo_file.exists() else None
    write_inputs(tmp_path / "lake")
    mismatched = tmp_path / "mismatched_cases.jsonl"
    mismatched.write_text(
        json.dumps(
            {"conversation": [{"input": "行2:弃去通道1的枪头", "output": "DropDiti(channels=[1])"}], "id": "old"},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )

    public = write_jsonl(tmp_path / "public.jsonl", PUBLIC_CASES)
    heldout = tmp_path / "heldout.jsonl"  # not written: a missing slice is reported, not an error

    # public capped to 1 of its 2 cases: the first by case id; batches of 2, so the 5 cases take 3 batches
    params_path = smoke_params(tmp_path, append_failures=True, max_cases={"public": 1}, batch_size=2)
    with dg.instance_for_test() as instance:
        result = materialize(tmp_path, merged_model_root, mismatched, params_path, heldout=heldout, public=public,
                             instance=instance)
        assert result.success
        # Progress in the run's event log, one line per decoding batch: cases done out of total, and an ETA.
        progress = [
            entry.user_message for entry in instance.all_logs(result.run_id)
            if entry.step_key == "regression_metrics" and entry.user_message.startswith(PROGRESS_PREFIX)
        ]
    assert len(progress) == 3, progress
    assert [message.split(": ")[1].split(" ")[0] for message in progress] == ["2/5", "4/5", "5/5"]
    assert all(", eta " in message for message in progress)
    frame = read_table(table_path(tmp_path / "lake", "regression_results"))
    RegressionResultTable.validate(frame, lazy=True)
    # The columns the UI lists for the asset are the Delta table's.
    schema = regression_metrics.metadata_by_key[regression_metrics.key]["dagster/column_schema"]
    assert [column.name for column in schema.columns] == list(frame.columns)
    # 3 eval cases + the mismatched one (its normalized description differs from every eval case) + 1 public
    assert sorted(frame["case_id"]) == ["eval:s0", "eval:s1", "eval:s2", "mismatched:old", "public:E003"]
    assert frame.set_index("case_id")["split_source"].to_dict() == {
        "eval:s0": "eval",
        "eval:s1": "eval",
        "eval:s2": "eval",
        "mismatched:old": "mismatched",
        "public:E003": "public",
    }
    assert frame["constrained"].all()  # smoke: constrained only
    # An untrained model still gives parseable plans, because decoding is constrained to the schema. Where the
    # text leaves room for one step only ("等待1分钟": a Delay of the 60 s it states) decoding alone gets it right;
    # it gets the others wrong, and those eval cases are the failures to append.
    assert frame["json_valid"].all()
    exact = frame.set_index("case_id")["exact_match"]
    assert exact["eval:s0"] and not exact["eval:s1"]
    failed_eval = [case_id.removeprefix("eval:") for case_id in sorted(exact.index)
                   if case_id.startswith("eval:") and not exact[case_id]]

    evaluation = gate_evaluation(result)
    assert evaluation.passed  # smoke thresholds: every output a plan; no quality bar
    assert evaluation.metadata["json_valid_rate"].value == 1.0
    assert evaluation.metadata["cases"].value == 3  # the gate judges the eval slice only

    metadata = result.asset_materializations_for_node("regression_metrics")[0].metadata
    assert metadata["n_cases"].value == 5.0  # every case of the run
    assert "micro" in {row.data["command"] for row in metadata["command_scores"].value.records}
    assert "exact_match" in {row.data["metric"] for row in metadata["metrics"].value.records}
    assert metadata["confusion"].value.schema.columns[0].name == "gold \\ predicted"
    # per slice: evaluated out of available; a missing file is 0 cases and flagged, with no rates
    counts = {
        name: (metadata[f"{name}/cases_evaluated"].value, metadata[f"{name}/cases_available"].value) for name in SLICES
    }
    assert counts == {"eval": (3, 3), "mismatched": (1, 1), "heldout": (0, 0), "public": (1, 2)}
    assert metadata["heldout/file_missing"].value is True and metadata["public/file_missing"].value is False
    assert "heldout/exact_match" not in metadata
    for name in ("eval", "mismatched", "public"):
        in_slice = frame[frame["split_source"] == name]
        assert metadata[f"{name}/json_valid_rate"].value == 1.0
        assert metadata[f"{name}/exact_match"].value == in_slice["exact_match"].mean()
    slice_rows = {row.data["slice"]: row.data for row in metadata["slices"].value.records}
    assert slice_rows["heldout"]["note"] == f"missing file {heldout}"
    assert slice_rows["public"]["note"] == "capped at 1 of 2 (eval.max_cases)"
    tag_rows = {
        (row.data["slice"], row.data["tag"]): row.data["cases"] for row in metadata["exact_match_by_tag"].value.records
    }
    assert tag_rows[("public", "time_conversion")] == 1  # "3小时" in the text as written
    assert tag_rows[("eval", "single_command")] == 3 and tag_rows[("all", "single_command")] == 5
    tag_slices = [row.data["slice"] for row in metadata["exact_match_by_tag"].value.records]
    assert list(dict.fromkeys(tag_slices)) == ["eval", "mismatched", "public", "all"]
    # only eval-split failures are kept: "old" was already there, the public case must never be added
    assert metadata["new_mismatched_cases"].value == len(failed_eval)

    lines = mismatched.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["id"] == "old"
    assert [json.loads(line)["id"] for line in lines[1:]] == failed_eval

    # Second run: the failures are in the file already, so nothing is added and the file is unchanged.
    text = mismatched.read_text(encoding="utf-8")
    again = materialize(tmp_path, merged_model_root, mismatched, params_path, heldout=heldout, public=public)
    assert again.success
    assert again.asset_materializations_for_node("regression_metrics")[0].metadata["new_mismatched_cases"].value == 0
    assert mismatched.read_text(encoding="utf-8") == text
    assert len(read_table(table_path(tmp_path / "lake", "regression_results"))) == 5  # deduplicated regression set

    assert (repo_file.read_bytes() if repo_file.exists() else None) == repo_before


def test_a_model_without_recorded_training_data_is_not_evaluated(tmp_path, merged_model_root):
    """Without the augmented-set version in its lineage nothing tells which split the model never saw."""
    import shutil

    artifacts = tmp_path / "artifacts"
    shutil.copytree(merged_model_root, artifacts)
    (artifacts / "merged_model" / "lineage.json").write_text(json.dumps({"profile": "smoke"}), encoding="utf-8")
    write_inputs(tmp_path / "lake")

    result = materialize(tmp_path, artifacts, tmp_path / "mismatched_cases.jsonl", smoke_params(tmp_path))
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "cannot tell which eval split" in message and "no data.delta_version recorded" in message


def test_gate_blocks_when_thresholds_are_missed(tmp_path, merged_model_root):
    params = yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))
    params["gate"]["smoke"]["min_exact_match"] = 0.9
    params["eval"]["profiles"]["smoke"]["max_cases"] = {"eval": 2}  # s0 right (decoding alone), s1 wrong
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    write_inputs(tmp_path / "lake")
    mismatched = tmp_path / "mismatched_cases.jsonl"

    result = materialize(tmp_path, merged_model_root, mismatched, params_path)
    evaluation = gate_evaluation(result)
    assert not evaluation.passed
    assert "exact_match 0.5000 < 0.9" in evaluation.description
    assert not result.success  # blocking: the run fails
    assert not mismatched.exists()  # smoke profile: failures are not kept


def test_definitions_include_the_evaluation_graph():
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.has(dg_key("regression_metrics"))
    checks = {key.name for key in graph.asset_check_keys}
    assert "regression_gate" in checks


def dg_key(name: str):
    import dagster as dg

    return dg.AssetKey(name)

