"""Blocking checks on the data assets: each re-reads what the asset stored in the lake.

Blocking means a failed check stops everything downstream in the run (and the automation holds
back retraining), so a table that breaks its contract never reaches training.
"""

from collections import Counter

import dagster as dg
import pandas as pd

from assets.data_assets import augmented_training_set, normalized_samples, raw_training_data
from assets.metadata_tables import frame_preview, table_schema
from assets.resources import LakeResource, ParamsResource
from pipelines.data.ingest import raw_files, split_lines
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZE_QUARANTINE_TABLE,
    NORMALIZED_TABLE,
    RAW_QUARANTINE_TABLE,
    RAW_TABLE,
    read_arrow,
    read_table,
    table_path,
    table_version,
)
from pipelines.data.split import split_report
from pipelines.data.stages import MAX_FAILURE_CASES, contract_failures

# Pandera's failure cases, as the check shows them: a failing value can be of any type, so every cell is text.
_FAILURE_COLUMNS = ("table", "schema_context", "column", "check", "failure_case", "index")
_FAILURE_CHARS = 200


def _failure_table(cases: pd.DataFrame) -> dg.TableMetadataValue:
    columns = [name for name in _FAILURE_COLUMNS if name in cases]
    schema = table_schema([(name, "string") for name in columns])
    return frame_preview(cases[columns].astype(str), schema, MAX_FAILURE_CASES, _FAILURE_CHARS)


def _contract_result(lake: LakeResource, tables: list[str]) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {}
    failures = []
    for table in tables:
        path = table_path(lake.path(), table)
        version = table_version(path)
        metadata[f"{table}/delta_version"] = -1 if version is None else version
        if version is None:
            failures.append(pd.DataFrame({"table": [table], "failure_case": ["table does not exist"]}))
            continue
        cases = contract_failures(read_table(path, version=version), table)
        if cases is not None:
            failures.append(cases.assign(table=table))
    if not failures:
        return dg.AssetCheckResult(passed=True, metadata=metadata)
    cases = pd.concat(failures, ignore_index=True)
    metadata["n_failure_cases"] = len(cases)
    metadata["failure_cases"] = _failure_table(cases)
    return dg.AssetCheckResult(passed=False, metadata=metadata)


@dg.asset_check(
    asset=raw_training_data, blocking=True, description="Raw records and raw quarantine meet their Pandera contracts."
)
def raw_training_data_contract(lake: LakeResource) -> dg.AssetCheckResult:
    return _contract_result(lake, [RAW_TABLE, RAW_QUARANTINE_TABLE])


@dg.asset_check(
    asset=raw_training_data,
    blocking=True,
    description="Every line of every raw file is a record or a quarantine row: n_lines == n_records + n_quarantined.",
)
def raw_lines_accounted_for(lake: LakeResource, params: ParamsResource) -> dg.AssetCheckResult:
    raw_dir = params.load().data.raw_dir
    lines = {path.name: len(split_lines(path.read_bytes())) for path in raw_files(raw_dir)}
    records = read_table(table_path(lake.path(), RAW_TABLE), columns=["source_file"])
    quarantined = read_table(table_path(lake.path(), RAW_QUARANTINE_TABLE), columns=["source_file"])
    stored = Counter(records["source_file"]) + Counter(quarantined["source_file"])
    mismatched = {
        name: {"lines": lines.get(name, 0), "stored": stored.get(name, 0)}
        for name in sorted(set(lines) | set(stored))
        if lines.get(name, 0) != stored.get(name, 0)
    }
    n_lines = sum(lines.values())
    return dg.AssetCheckResult(
        passed=not mismatched,
        metadata={
            "n_lines": n_lines,
            "n_records": len(records),
            "n_quarantined": len(quarantined),
            "mismatched_files": dg.MetadataValue.json(mismatched),
        },
    )


@dg.asset_check(
    asset=normalized_samples,
    blocking=True,
    description="Normalized samples and their quarantine meet their contracts; every raw record is kept or recorded.",
)
def normalized_samples_contract(lake: LakeResource) -> dg.AssetCheckResult:
    result = _contract_result(lake, [NORMALIZED_TABLE, NORMALIZE_QUARANTINE_TABLE])
    if not result.passed:
        return result
    n_raw = len(read_table(table_path(lake.path(), RAW_TABLE), columns=["line_number"]))
    n_samples = len(read_table(table_path(lake.path(), NORMALIZED_TABLE), columns=["source_index"]))
    n_removed = len(read_table(table_path(lake.path(), NORMALIZE_QUARANTINE_TABLE), columns=["line_number"]))
    metadata = dict(result.metadata)
    metadata.update({"n_raw_records": n_raw, "n_samples": n_samples, "n_duplicates_removed": n_removed})
    return dg.AssetCheckResult(passed=n_raw == n_samples + n_removed, metadata=metadata)


@dg.asset_check(
    asset=augmented_training_set, blocking=True, description="The augmented set meets its Pandera contract."
)
def augmented_training_set_contract(lake: LakeResource) -> dg.AssetCheckResult:
    return _contract_result(lake, [AUGMENTED_TABLE])


@dg.asset_check(
    asset=augmented_training_set,
    blocking=True,
    description="No source_index in two splits; every command with two or more sources is in both train and eval.",
)
def augmented_no_split_leakage(lake: LakeResource) -> dg.AssetCheckResult:
    rows = read_arrow(table_path(lake.path(), AUGMENTED_TABLE), columns=["source_index", "split", "command_names"])
    report = split_report(rows)
    return dg.AssetCheckResult(
        passed=not report.leaked_sources and not report.unstratified_commands,
        metadata={
            "n_leaked_sources": len(report.leaked_sources),
            "leaked_sources": dg.MetadataValue.json(report.leaked_sources[:MAX_FAILURE_CASES]),
            "commands_missing_from_a_split": dg.MetadataValue.json(report.unstratified_commands),
            "single_source_commands": dg.MetadataValue.json(report.single_source_commands),
        },
    )


DATA_CHECKS = [
    raw_training_data_contract,
    raw_lines_accounted_for,
    normalized_samples_contract,
    augmented_training_set_contract,
    augmented_no_split_leakage,
]
