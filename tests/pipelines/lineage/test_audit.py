"""`python -m pipelines lineage`: the printed chain, records through Delta time travel, --verify."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipelines.cli import build_parser
from pipelines.data.fingerprints import file_md5
from pipelines.data.lake import AUGMENTED_TABLE, INPUTS_COMMIT_KEY, NORMALIZED_TABLE, RAW_TABLE, read_table, table_path
from pipelines.lineage.audit import run as run_lineage
from tests.helpers import write_jsonl
from tests.support.lineage_fixture import TrainedLineage, build_trained_lineage, copy_lineage, run_data_stages


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedLineage:
    return build_trained_lineage(tmp_path_factory.mktemp("lineage"))


@pytest.fixture
def lineage(trained: TrainedLineage, tmp_path: Path) -> TrainedLineage:
    return copy_lineage(trained, tmp_path)


def cli(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["lineage", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_lineage(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_chain_names_every_link(lineage: TrainedLineage) -> None:
    code, out, err = cli(str(lineage.merged_dir), "--lake", str(lineage.lake))
    assert code == 0, err
    manifest = lineage.manifest
    assert manifest["merged_weights_sha256"] in out
    assert manifest["adapter_sha256"] in out
    assert '"profile": "test"' in out
    assert f"{AUGMENTED_TABLE} Delta v0" in out
    assert f"{NORMALIZED_TABLE} Delta v0" in out
    assert "raw_training_data Delta v0" in out
    assert manifest["git"]["commit"] in out
    assert file_md5(lineage.raw_dir / "a.jsonl") in out

    frame = read_table(table_path(lineage.lake, AUGMENTED_TABLE), version=0)
    train = frame[frame["split"] == "train"].drop_duplicates("source_index")
    aspirate_train = sum("Aspirate" in list(names) for names in train["command_names"])
    code, out_json, _ = cli(str(lineage.merged_dir), "--lake", str(lineage.lake), "--json")
    chain = json.loads(out_json)
    assert chain["per_command"]["Aspirate"]["train"] == aspirate_train > 0
    assert sum(c["train"] for c in chain["per_command"].values()) >= len(manifest["data"]["train_source_index"])


def test_records_export_reads_the_training_versions_after_tables_moved_on(
    lineage: TrainedLineage, tmp_path: Path
) -> None:
    original_lines = {
        line
        for name in ("a.jsonl", "b.jsonl")
        for line in (lineage.raw_dir / name).read_text(encoding="utf-8").splitlines()
    }
    # New data arrives and the whole data half is re-materialized: every table gets a new version.
    extra = json.loads((lineage.raw_dir / "b.jsonl").read_text(encoding="utf-8").splitlines()[0])
    extra["conversation"][0]["input"] += "（新增记录）"
    write_jsonl(lineage.raw_dir / "c.jsonl", [extra])
    assert run_data_stages(lineage.raw_dir, lineage.lake) == 1
    assert len(read_table(table_path(lineage.lake, NORMALIZED_TABLE))) > len(
        read_table(table_path(lineage.lake, NORMALIZED_TABLE), version=0)
    )

    out_path = tmp_path / "records.jsonl"
    code, out, err = cli(str(lineage.merged_dir), "--lake", str(lineage.lake), "--records", str(out_path))
    assert code == 0, err
    exported = out_path.read_text(encoding="utf-8").splitlines()
    assert len(exported) == len(lineage.manifest["data"]["train_source_index"])
    assert set(exported) <= original_lines, "only records of the corpus the model was trained on"
    assert not any("新增记录" in line for line in exported)
    eval_path = tmp_path / "eval.jsonl"
    cli(str(lineage.merged_dir), "--lake", str(lineage.lake), "--records", str(eval_path), "--split", "eval")
    assert set(eval_path.read_text(encoding="utf-8").splitlines()).isdisjoint(exported)


def test_each_upstream_link_is_the_version_its_stage_recorded(lineage: TrainedLineage) -> None:
    """The data stages write INPUTS_COMMIT_KEY; lineage follows it rather than guessing by commit time."""
    from deltalake import DeltaTable

    # New data: raw v1 -> normalized v1 -> augmented v1, each recording the upstream version it read.
    extra = json.loads((lineage.raw_dir / "b.jsonl").read_text(encoding="utf-8").splitlines()[0])
    extra["conversation"][0]["input"] += "（新增记录）"
    write_jsonl(lineage.raw_dir / "c.jsonl", [extra])
    assert run_data_stages(lineage.raw_dir, lineage.lake) == 1

    def recorded_inputs(table: str, version: int) -> dict[str, int]:
        (commit,) = [c for c in DeltaTable(str(table_path(lineage.lake, table))).history() if c["version"] == version]
        return json.loads(commit[INPUTS_COMMIT_KEY])

    assert recorded_inputs(AUGMENTED_TABLE, 1) == {NORMALIZED_TABLE: 1}
    assert recorded_inputs(NORMALIZED_TABLE, 1) == {RAW_TABLE: 1}
    # The model was trained on augmented v0: its chain is v0 all the way up, as recorded, not by time.
    code, out, err = cli(str(lineage.merged_dir), "--lake", str(lineage.lake), "--json")
    assert code == 0, err
    tables = json.loads(out)["tables"]
    assert {name: (link["version"], link["how"]) for name, link in tables.items()} == {
        AUGMENTED_TABLE: (0, "manifest"),
        NORMALIZED_TABLE: (0, "recorded in commit"),
        RAW_TABLE: (0, "recorded in commit"),
    }


def test_verify_passes_on_untouched_artifacts(lineage: TrainedLineage) -> None:
    code, out, _ = cli(
        str(lineage.merged_dir), "--lake", str(lineage.lake), "--raw-dir", str(lineage.raw_dir), "--verify"
    )
    assert code == 0, out
    assert "every recorded hash matches" in out


def test_verify_names_a_tampered_raw_file(lineage: TrainedLineage) -> None:
    with open(lineage.raw_dir / "a.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n")
    code, out, _ = cli(
        str(lineage.merged_dir), "--lake", str(lineage.lake), "--raw-dir", str(lineage.raw_dir), "--verify"
    )
    assert code == 1
    assert "CHANGED raw file a.jsonl" in out
    assert "b.jsonl" not in out.split("VERIFY FAILED")[1]


def test_verify_names_a_tampered_adapter(lineage: TrainedLineage) -> None:
    weights = next(lineage.adapter_dir.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, out, _ = cli(
        str(lineage.merged_dir), "--lake", str(lineage.lake), "--raw-dir", str(lineage.raw_dir), "--verify"
    )
    assert code == 1
    assert f"CHANGED adapter ({lineage.adapter_dir})" in out
    assert "merged model weights" not in out


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = cli(str(tmp_path), "--lake", str(tmp_path))
    assert code == 2
    assert "lineage.json not found" in err
