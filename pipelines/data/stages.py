"""The three data stages, each read -> transform -> validate -> write a new Delta version.

Dagster assets and DVC stages (`python -m pipelines stage raw|normalize|augment`) call the same
`run_*_stage` functions, so both paths produce the same tables. A stage whose inputs are those its
tables were last written from reuses them (`pipelines.data.stage_cache`) unless `force` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data_contracts.errors import ContractError
from pipelines.config import AugmentParams, DataParams, lake_root, load_params
from pipelines.data.augment import AugmentResult, augment_samples
from pipelines.data.ingest import IngestResult, corpus_md5s, default_workers, ingest, raw_files
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZE_QUARANTINE_TABLE,
    NORMALIZED_TABLE,
    RAW_QUARANTINE_TABLE,
    RAW_TABLE,
    inputs_metadata,
    read_arrow,
    read_table,
    table_path,
    table_version,
    write_table,
)
from pipelines.data.normalize import NormalizeResult, normalize_records
from pipelines.data.stage_cache import commit_identity, commit_metadata, reusable_summary, stage_fingerprint

# Table -> name of its Pandera model in data_contracts.tables.
CONTRACTS = {
    RAW_TABLE: "RawRecordTable",
    RAW_QUARANTINE_TABLE: "QuarantineTable",
    NORMALIZE_QUARANTINE_TABLE: "QuarantineTable",
    NORMALIZED_TABLE: "NormalizedSampleTable",
    AUGMENTED_TABLE: "AugmentedSampleTable",
}
MAX_FAILURE_CASES = 50


class TableContractError(ContractError):
    """A frame that breaks its Pandera table contract; `failure_cases` lists every failing check."""

    def __init__(self, table: str, failure_cases: pd.DataFrame) -> None:
        self.table = table
        self.failure_cases = failure_cases
        shown = failure_cases.head(10).to_string(index=False)
        super().__init__(f"table {table} breaks its contract in {len(failure_cases)} places:\n{shown}")


def contract_failures(df: pd.DataFrame, table: str) -> pd.DataFrame | None:
    """Validate lazily against the table's Pandera model; the failure cases, or None when valid."""
    import pandera.errors

    from data_contracts import tables

    model = getattr(tables, CONTRACTS[table])
    try:
        model.validate(df, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        return errors.failure_cases
    return None


def validate_frame(df: pd.DataFrame, table: str) -> None:
    failures = contract_failures(df, table)
    if failures is not None:
        raise TableContractError(table, failures)


@dataclass(frozen=True)
class RawStageResult:
    ingest: IngestResult
    raw_version: int
    quarantine_version: int
    reused: bool = False  # nothing changed since the tables were written: no new version


@dataclass(frozen=True)
class NormalizeStageResult:
    result: NormalizeResult
    raw_version: int
    normalized_version: int
    quarantine_version: int
    reused: bool = False


@dataclass(frozen=True)
class AugmentStageResult:
    result: AugmentResult
    normalized_version: int
    augmented_version: int
    reused: bool = False


def raw_stage_fingerprint(raw_dir: str | os.PathLike[str], settings: DataParams) -> str:
    # raw_files first: a missing dir is an error here (corpus_md5s would call it an empty corpus).
    raw_files(raw_dir)
    return stage_fingerprint(RAW_TABLE, {"files": corpus_md5s(raw_dir), "max_line_bytes": settings.max_line_bytes})


def run_raw_stage(
    raw_dir: str | os.PathLike[str],
    lake: str | os.PathLike[str],
    settings: DataParams = DataParams(),
    force: bool = False,
) -> RawStageResult:
    fingerprint = raw_stage_fingerprint(raw_dir, settings)
    outputs = [table_path(lake, RAW_TABLE), table_path(lake, RAW_QUARANTINE_TABLE)]
    summary = None if force else reusable_summary(fingerprint, outputs)
    if summary is not None:
        records, raw_version = _read_current(lake, RAW_TABLE)
        quarantine, quarantine_version = _read_current(lake, RAW_QUARANTINE_TABLE)
        stored = IngestResult(records=records, quarantine=quarantine, **summary)
        return RawStageResult(stored, raw_version, quarantine_version, reused=True)
    workers = settings.workers or default_workers()
    result = ingest(raw_dir, max_line_bytes=settings.max_line_bytes, workers=workers)
    validate_frame(result.records, RAW_TABLE)
    validate_frame(result.quarantine, RAW_QUARANTINE_TABLE)
    metadata = commit_metadata(fingerprint, {
        "n_lines": result.n_lines,
        "lines_per_file": result.lines_per_file,
        "file_sha256": result.file_sha256,
        "reasons": result.reasons,
    })
    raw_version = write_table(result.records, outputs[0], table=RAW_TABLE, commit_metadata=metadata)
    quarantine_version = write_table(
        result.quarantine, outputs[1], table=RAW_QUARANTINE_TABLE, commit_metadata=metadata
    )
    return RawStageResult(ingest=result, raw_version=raw_version, quarantine_version=quarantine_version)


def _read_current(
    lake: str | os.PathLike[str], table: str, columns: list[str] | None = None
) -> tuple[pd.DataFrame, int]:
    version = _current_version(lake, table)
    return read_table(table_path(lake, table), version=version, columns=columns), version


def _current_version(lake: str | os.PathLike[str], table: str) -> int:
    path = table_path(lake, table)
    version = table_version(path)
    if version is None:
        raise FileNotFoundError(f"Delta table {path} does not exist; materialize its upstream stage first")
    return version


def _with_raw_lines(quarantine: pd.DataFrame, lake: str | os.PathLike[str], raw_version: int) -> pd.DataFrame:
    """Fill raw_line of normalize-quarantine rows from the raw table version they came from."""
    if quarantine.empty:
        return quarantine
    raw = read_table(
        table_path(lake, RAW_TABLE), version=raw_version, columns=["source_file", "line_number", "raw_line"]
    ).set_index(["source_file", "line_number"])["raw_line"]
    keys = pd.MultiIndex.from_arrays([quarantine["source_file"], quarantine["line_number"]])
    return quarantine.assign(raw_line=raw.reindex(keys).to_numpy())


def run_normalize_stage(lake: str | os.PathLike[str], force: bool = False) -> NormalizeStageResult:
    fingerprint = stage_fingerprint(NORMALIZED_TABLE, {"raw": commit_identity(table_path(lake, RAW_TABLE))})
    outputs = [table_path(lake, NORMALIZED_TABLE), table_path(lake, NORMALIZE_QUARANTINE_TABLE)]
    if not force and reusable_summary(fingerprint, outputs) is not None:
        samples, normalized_version = _read_current(lake, NORMALIZED_TABLE)
        quarantine, quarantine_version = _read_current(lake, NORMALIZE_QUARANTINE_TABLE)
        return NormalizeStageResult(
            result=NormalizeResult(samples=samples, quarantine=quarantine),
            raw_version=_current_version(lake, RAW_TABLE),
            normalized_version=normalized_version,
            quarantine_version=quarantine_version,
            reused=True,
        )
    # raw_line and output_text are most of the raw table's bytes and normalization needs neither.
    columns = ["source_file", "line_number", "input_text", "commands_json"]
    raw, raw_version = _read_current(lake, RAW_TABLE, columns)
    # Which copy of a duplicate is kept must not depend on how the table's files were laid out.
    raw = raw.sort_values(["source_file", "line_number"], kind="stable").reset_index(drop=True)
    result = normalize_records(raw)
    result = NormalizeResult(samples=result.samples, quarantine=_with_raw_lines(result.quarantine, lake, raw_version))
    validate_frame(result.samples, NORMALIZED_TABLE)
    validate_frame(result.quarantine, NORMALIZE_QUARANTINE_TABLE)
    metadata = {**commit_metadata(fingerprint, {}), **inputs_metadata({RAW_TABLE: raw_version})}
    normalized_version = write_table(result.samples, outputs[0], table=NORMALIZED_TABLE, commit_metadata=metadata)
    quarantine_version = write_table(
        result.quarantine, outputs[1], table=NORMALIZE_QUARANTINE_TABLE, commit_metadata=metadata
    )
    return NormalizeStageResult(
        result=result,
        raw_version=raw_version,
        normalized_version=normalized_version,
        quarantine_version=quarantine_version,
    )


def run_augment_stage(
    lake: str | os.PathLike[str], params: AugmentParams, force: bool = False
) -> AugmentStageResult:
    inputs = {"normalized": commit_identity(table_path(lake, NORMALIZED_TABLE)), "params": params}
    fingerprint = stage_fingerprint(AUGMENTED_TABLE, inputs)
    output = table_path(lake, AUGMENTED_TABLE)
    summary = None if force else reusable_summary(fingerprint, [output])
    if summary is not None:
        augmented_version = _current_version(lake, AUGMENTED_TABLE)
        arrow = read_arrow(output, version=augmented_version)
        stored = AugmentResult(
            table=arrow.to_pandas(),
            arrow=arrow,
            distribution=pd.DataFrame(summary["distribution"], columns=summary["distribution_columns"]),
            single_source_commands=summary["single_source_commands"],
            unstratified_commands=summary["unstratified_commands"],
        )
        return AugmentStageResult(stored, _current_version(lake, NORMALIZED_TABLE), augmented_version, reused=True)
    samples, normalized_version = _read_current(lake, NORMALIZED_TABLE)
    samples = samples.sort_values(["source_file", "line_number"], kind="stable").reset_index(drop=True)
    result = augment_samples(samples, params)
    validate_frame(result.table, AUGMENTED_TABLE)
    metadata = commit_metadata(fingerprint, {
        "distribution": json.loads(result.distribution.to_json(orient="records")),
        "distribution_columns": list(result.distribution.columns),
        "single_source_commands": result.single_source_commands,
        "unstratified_commands": result.unstratified_commands,
    })
    metadata.update(inputs_metadata({NORMALIZED_TABLE: normalized_version}))
    augmented_version = write_table(result.arrow, output, table=AUGMENTED_TABLE, commit_metadata=metadata)
    return AugmentStageResult(
        result=result, normalized_version=normalized_version, augmented_version=augmented_version
    )


def read_quarantine(lake: str | os.PathLike[str]) -> pd.DataFrame:
    """Quarantine rows of every stage (raw first), from the current table versions."""
    frames = []
    for table in (RAW_QUARANTINE_TABLE, NORMALIZE_QUARANTINE_TABLE):
        path = table_path(lake, table)
        if table_version(path) is not None:
            frames.append(read_table(path))
    if not frames:
        return pd.DataFrame(columns=["stage", "source_file", "line_number", "raw_line", "reason", "detail"])
    return pd.concat(frames, ignore_index=True)


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=["raw", "normalize", "augment"], help="which stage to run")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--lake", default=None, help="lake root (default: $SOP2CMD_LAKE or ./lake)")
    parser.add_argument(
        "--raw-dir", default=None, help="raw JSONL folder for the raw stage (default: params data.raw_dir)"
    )
    parser.add_argument(
        "--force", action="store_true", help="recompute and write a new version even when the inputs are unchanged"
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    lake = Path(args.lake) if args.lake else lake_root()
    try:
        if args.name == "raw":
            raw = run_raw_stage(args.raw_dir or params.data.raw_dir, lake, params.data, force=args.force)
            summary = {
                "reused": raw.reused,
                "n_lines": raw.ingest.n_lines,
                "n_records": raw.ingest.n_records,
                "n_quarantined": raw.ingest.n_quarantined,
                "reasons": raw.ingest.reasons,
                "file_sha256": raw.ingest.file_sha256,
                "versions": {RAW_TABLE: raw.raw_version, RAW_QUARANTINE_TABLE: raw.quarantine_version},
            }
        elif args.name == "normalize":
            normalized = run_normalize_stage(lake, force=args.force)
            summary = {
                "reused": normalized.reused,
                "n_samples": len(normalized.result.samples),
                "n_duplicates_removed": len(normalized.result.quarantine),
                "versions": {
                    RAW_TABLE: normalized.raw_version,
                    NORMALIZED_TABLE: normalized.normalized_version,
                    NORMALIZE_QUARANTINE_TABLE: normalized.quarantine_version,
                },
            }
        else:
            augmented = run_augment_stage(lake, params.augment, force=args.force)
            table = augmented.result.table
            summary = {
                "reused": augmented.reused,
                "n_rows": len(table),
                "rows_per_split": table["split"].value_counts().sort_index().to_dict(),
                "single_source_commands": augmented.result.single_source_commands,
                "versions": {
                    NORMALIZED_TABLE: augmented.normalized_version,
                    AUGMENTED_TABLE: augmented.augmented_version,
                },
            }
    except (ContractError, FileNotFoundError) as error:
        print(f"stage {args.name} failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"stage": args.name, "lake": str(lake), **summary}, ensure_ascii=False, indent=2))
    return 0
