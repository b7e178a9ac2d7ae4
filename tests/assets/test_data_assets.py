"""dg.materialize of the data assets into a temporary lake, with their blocking checks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.data_assets import DATA_ASSETS, augmented_training_set, normalized_samples, raw_training_data
from assets.data_checks import (
    DATA_CHECKS,
    augmented_no_split_leakage,
    raw_lines_accounted_for,
    raw_training_data_contract,
)
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZED_TABLE,
    RAW_QUARANTINE_TABLE,
    RAW_TABLE,
    read_table,
    table_path,
    table_version,
    write_table,
)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    materializations = result.asset_materializations_for_node(asset)
    assert len(materializations) == 1
    return {key: value.value for key, value in materializations[0].metadata.items()}


def test_materialize_writes_versions_row_counts_and_passes_checks(
    resources: dict, raw_dir: Path, lake: Path, small_corpus: list[dict]
) -> None:
    (raw_dir / "broken.jsonl").write_text('{"conversation": \n\n', encoding="utf-8")

    result = dg.materialize([*DATA_ASSETS, *DATA_CHECKS], resources=resources)

    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {spec.name for check in DATA_CHECKS for spec in check.check_specs}
    assert all(evaluation.passed for evaluation in checks.values())

    raw = _metadata(result, "raw_training_data")
    assert raw["n_lines"] == len(small_corpus) + 2
    assert raw["n_records"] == len(small_corpus)
    assert raw["quarantine_reasons"] == {"blank_line": 1, "invalid_json": 1}
    assert raw["delta_version"] == 0 and raw["quarantine_delta_version"] == 0
    assert set(raw["file_sha256"]) == {"corpus.jsonl", "broken.jsonl"}
    assert raw["dagster/row_count"] == len(read_table(table_path(lake, RAW_TABLE)))

    normalized = _metadata(result, "normalized_samples")
    assert normalized["n_samples"] == len(read_table(table_path(lake, NORMALIZED_TABLE)))
    assert normalized["input_raw_delta_version"] == 0
    assert "GetDiti" in {row.data["command"] for row in normalized["command_distribution"].records}

    augmented = _metadata(result, "augmented_training_set")
    table = read_table(table_path(lake, AUGMENTED_TABLE))
    assert augmented["dagster/row_count"] == len(table)
    assert augmented["rows_per_split"] == table["split"].value_counts().to_dict()
    assert augmented["command_exposure_chart"].startswith(
        "![train exposure before and after weighting](data:image/png;base64,"
    )
    assert Path(augmented["command_exposure_chart_path"]).read_bytes().startswith(b"\x89PNG")
    assert "weighted train exposure" in {
        column.description for column in augmented["command_distribution"].schema.columns
    }

    # The columns the UI lists for each asset are its Delta table's.
    for asset, table in ((raw_training_data, RAW_TABLE), (normalized_samples, NORMALIZED_TABLE),
                         (augmented_training_set, AUGMENTED_TABLE)):
        schema = asset.metadata_by_key[asset.key]["dagster/column_schema"]
        assert [column.name for column in schema.columns] == list(read_table(table_path(lake, table)).columns)
    # The quarantine preview lists the quarantined lines, typed like the quarantine table.
    preview = raw["quarantine_preview"]
    assert sorted(row.data["reason"] for row in preview.records) == ["blank_line", "invalid_json"]
    assert {row.data["line_number"] for row in preview.records} == {1, 2}

    # Nothing changed: every stage reuses its tables and reports what they hold, no new version.
    again = dg.materialize(DATA_ASSETS, resources=resources)
    assert again.success
    for asset in ("raw_training_data", "normalized_samples", "augmented_training_set"):
        assert _metadata(again, asset)["reused"] is True
        assert _metadata(again, asset)["delta_version"] == 0
    assert _metadata(again, "raw_training_data")["quarantine_reasons"] == raw["quarantine_reasons"]
    assert _metadata(again, "augmented_training_set")["command_distribution"] == augmented["command_distribution"]
    assert table_version(table_path(lake, AUGMENTED_TABLE)) == 0

    # force: true recomputes and writes new versions.
    forced = dg.materialize(
        DATA_ASSETS,
        resources=resources,
        run_config={"ops": {asset.key.path[-1]: {"config": {"force": True}} for asset in DATA_ASSETS}},
    )
    assert forced.success
    assert _metadata(forced, "raw_training_data")["reused"] is False
    assert _metadata(forced, "augmented_training_set")["delta_version"] == 1
    assert table_version(table_path(lake, AUGMENTED_TABLE)) == 1


def test_checks_are_blocking() -> None:
    for check in DATA_CHECKS:
        assert all(spec.blocking for spec in check.check_specs)


def test_failed_checks_name_what_is_wrong(resources: dict, lake: Path) -> None:
    assert dg.materialize(DATA_ASSETS, resources=resources).success

    # A stored quarantine table with an unknown stage and a zero line number breaks its contract.
    quarantine = read_table(table_path(lake, RAW_QUARANTINE_TABLE))
    tampered = pd.DataFrame(
        {
            "stage": ["sideways"],
            "source_file": ["corpus.jsonl"],
            "line_number": [0],
            "raw_line": ["x"],
            "reason": ["invalid_json"],
            "detail": ["d"],
        }
    )
    write_table(pd.concat([quarantine, tampered]), table_path(lake, RAW_QUARANTINE_TABLE), table=RAW_QUARANTINE_TABLE)

    contract = raw_training_data_contract(lake=resources["lake"])
    assert not contract.passed
    assert contract.metadata["n_failure_cases"].value >= 2
    assert "sideways" in {row.data["failure_case"] for row in contract.metadata["failure_cases"].value.records}

    # The extra quarantine row is a line that no raw file has.
    accounted = raw_lines_accounted_for(lake=resources["lake"], params=resources["params"])
    assert not accounted.passed
    mismatched = accounted.metadata["mismatched_files"].value
    assert mismatched["corpus.jsonl"]["stored"] == mismatched["corpus.jsonl"]["lines"] + 1

    # One source in both splits is leakage.
    augmented = read_table(table_path(lake, AUGMENTED_TABLE))
    first = augmented.index[0]
    augmented.loc[first, "split"] = "eval" if augmented.loc[first, "split"] == "train" else "train"
    write_table(augmented, table_path(lake, AUGMENTED_TABLE), table=AUGMENTED_TABLE)
    leakage = augmented_no_split_leakage(lake=resources["lake"])
    assert not leakage.passed
    assert leakage.metadata["leaked_sources"].value == [augmented.loc[first, "source_index"]]
