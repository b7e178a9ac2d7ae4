"""The data half of the graph: raw JSONL -> raw_training_data -> normalized_samples -> augmented_training_set.

Each asset runs one `pipelines.data.stages` stage (the same code DVC runs), which writes a new
Delta version, and reports versions, row counts, tables and pictures as metadata. A stage whose inputs have not
changed since its tables were written reuses them (metadata `reused`; no new version) unless the run
config sets `force: true`.
"""

# No `from __future__ import annotations`: Dagster resolves the `config: DataStageConfig` annotation at runtime.
import dagster as dg
import pandas as pd

from assets.metadata_tables import column_schema, column_schema_metadata, frame_preview, metadata_table
from assets.resources import ArtifactsResource, LakeResource, ParamsResource
from pipelines.charts import distribution_chart, distribution_table, image_markdown
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZE_QUARANTINE_TABLE,
    NORMALIZED_TABLE,
    RAW_QUARANTINE_TABLE,
    RAW_TABLE,
    table_path,
)
from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

DATA_GROUP = "data"
PREVIEW_ROWS = 20
PREVIEW_CHARS = 160  # a detail can quote a long raw line; the quarantine table keeps it whole


class DataStageConfig(dg.Config):
    """Run config of a data asset."""

    force: bool = False  # recompute and write a new Delta version even when nothing changed


def _quarantine_preview(frame: pd.DataFrame, table: str, columns: list[str]) -> dg.TableMetadataValue:
    """The first rows of a quarantine table, for the UI (the row count is in the asset's other metadata)."""
    return frame_preview(frame, column_schema(table, columns), PREVIEW_ROWS, PREVIEW_CHARS)


def _distribution(distribution: pd.DataFrame) -> dg.TableMetadataValue:
    columns, rows = distribution_table(distribution)
    return metadata_table(rows, columns)


@dg.asset(
    group_name=DATA_GROUP,
    kinds={"deltalake", "pandas"},
    metadata=column_schema_metadata(RAW_TABLE),
    description="Every line of every raw *.jsonl as a validated record, or a quarantine row with its reason.",
)
def raw_training_data(
    context: dg.AssetExecutionContext, config: DataStageConfig, lake: LakeResource, params: ParamsResource
) -> dg.MaterializeResult:
    settings = params.load()
    stage = run_raw_stage(settings.data.raw_dir, lake.path(), settings.data, force=config.force)
    result = stage.ingest
    context.log.info(
        f"{result.n_lines} lines: {result.n_records} records, {result.n_quarantined} quarantined {result.reasons}"
        + (" (unchanged: tables reused)" if stage.reused else "")
    )
    return dg.MaterializeResult(
        metadata={
            "reused": stage.reused,
            "dagster/row_count": result.n_records,
            "n_lines": result.n_lines,
            "n_records": result.n_records,
            "n_quarantined": result.n_quarantined,
            "quarantine_reasons": dg.MetadataValue.json(result.reasons),
            "lines_per_file": dg.MetadataValue.json(result.lines_per_file),
            "file_sha256": dg.MetadataValue.json(result.file_sha256),
            "delta_version": stage.raw_version,
            "quarantine_delta_version": stage.quarantine_version,
            "table_path": dg.MetadataValue.path(str(table_path(lake.path(), RAW_TABLE))),
            "quarantine_path": dg.MetadataValue.path(str(table_path(lake.path(), RAW_QUARANTINE_TABLE))),
            "quarantine_preview": _quarantine_preview(
                result.quarantine, RAW_QUARANTINE_TABLE, ["source_file", "line_number", "reason", "detail"]
            ),
        }
    )


@dg.asset(
    group_name=DATA_GROUP,
    kinds={"deltalake", "pandas"},
    deps=[raw_training_data],
    metadata=column_schema_metadata(NORMALIZED_TABLE),
    description="NFKC-normalized descriptions with canonical JSON commands and a stable content id (source_index).",
)
def normalized_samples(
    context: dg.AssetExecutionContext, config: DataStageConfig, lake: LakeResource
) -> dg.MaterializeResult:
    stage = run_normalize_stage(lake.path(), force=config.force)
    samples = stage.result.samples
    per_command = (
        samples["command_names"].explode().value_counts().rename_axis("command").reset_index(name="samples")
        if len(samples)
        else pd.DataFrame(columns=["command", "samples"])
    )
    context.log.info(f"{len(samples)} samples, {len(stage.result.quarantine)} duplicates removed"
                     + (" (unchanged: tables reused)" if stage.reused else ""))
    return dg.MaterializeResult(
        metadata={
            "reused": stage.reused,
            "dagster/row_count": len(samples),
            "n_samples": len(samples),
            "n_duplicates_removed": len(stage.result.quarantine),
            "samples_per_lang": dg.MetadataValue.json(samples["lang"].value_counts().sort_index().to_dict()),
            "delta_version": stage.normalized_version,
            "input_raw_delta_version": stage.raw_version,
            "quarantine_delta_version": stage.quarantine_version,
            "table_path": dg.MetadataValue.path(str(table_path(lake.path(), NORMALIZED_TABLE))),
            "quarantine_path": dg.MetadataValue.path(str(table_path(lake.path(), NORMALIZE_QUARANTINE_TABLE))),
            "command_distribution": _distribution(per_command),
            "duplicates_preview": _quarantine_preview(
                stage.result.quarantine, NORMALIZE_QUARANTINE_TABLE, ["source_file", "line_number", "detail"]
            ),
        }
    )


@dg.asset(
    group_name=DATA_GROUP,
    kinds={"deltalake", "pandas"},
    deps=[normalized_samples],
    metadata=column_schema_metadata(AUGMENTED_TABLE),
    description="Prompt templates x prefix variants per sample, long-tail weights, train/eval split by source.",
)
def augmented_training_set(
    context: dg.AssetExecutionContext,
    config: DataStageConfig,
    lake: LakeResource,
    artifacts: ArtifactsResource,
    params: ParamsResource,
) -> dg.MaterializeResult:
    stage = run_augment_stage(lake.path(), params.load().augment, force=config.force)
    table = stage.result.table
    distribution = stage.result.distribution
    chart = artifacts.path() / "charts" / f"command_exposure_v{stage.augmented_version}.png"
    # A reused version's chart was drawn when the version was written; drawing costs a matplotlib import.
    if not (stage.reused and chart.is_file()):
        distribution_chart(distribution, chart)
    sources = table.drop_duplicates("source_index")["split"].value_counts().sort_index().to_dict()
    context.log.info(f"{len(table)} rows from {sum(sources.values())} sources {sources}"
                     + (" (unchanged: table reused)" if stage.reused else ""))
    return dg.MaterializeResult(
        metadata={
            "reused": stage.reused,
            "dagster/row_count": len(table),
            "rows_per_split": dg.MetadataValue.json(table["split"].value_counts().sort_index().to_dict()),
            "sources_per_split": dg.MetadataValue.json(sources),
            "single_source_commands": dg.MetadataValue.json(stage.result.single_source_commands),
            "weight_min": float(table["weight"].min()) if len(table) else 0.0,
            "weight_max": float(table["weight"].max()) if len(table) else 0.0,
            "delta_version": stage.augmented_version,
            "input_normalized_delta_version": stage.normalized_version,
            "table_path": dg.MetadataValue.path(str(table_path(lake.path(), AUGMENTED_TABLE))),
            "command_distribution": _distribution(distribution),
            "command_exposure_chart": dg.MetadataValue.md(
                image_markdown(chart, "train exposure before and after weighting")
            ),
            "command_exposure_chart_path": dg.MetadataValue.path(str(chart)),
        }
    )


DATA_ASSETS = [raw_training_data, normalized_samples, augmented_training_set]
