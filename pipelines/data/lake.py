"""Delta Lake storage: the name and Arrow schema of every table the graph writes, write and read.

Schemas are explicit so that an empty table (a clean corpus has no quarantine rows) still has typed
columns, and so that every write of a table produces the same Delta schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from pipelines.data.delta_safety import safe_write_table

RAW_TABLE = "raw_training_data"
RAW_QUARANTINE_TABLE = "quarantine/raw"
NORMALIZE_QUARANTINE_TABLE = "quarantine/normalize"
NORMALIZED_TABLE = "normalized_samples"
AUGMENTED_TABLE = "augmented_training_set"
# One row per evaluated case of the regression_metrics asset (`pipelines.serve.eval_tables.results_frame`).
RESULTS_TABLE = "regression_results"

_STR = pa.string()

SCHEMAS: dict[str, pa.Schema] = {
    RAW_TABLE: pa.schema(
        [
            ("source_file", _STR),
            ("line_number", pa.int64()),
            ("raw_line", _STR),
            ("input_text", _STR),
            ("output_text", _STR),
            ("commands_json", _STR),
            ("file_sha256", _STR),
        ]
    ),
    NORMALIZED_TABLE: pa.schema(
        [
            ("source_index", _STR),
            ("input_text", _STR),
            ("raw_input", _STR),
            ("commands_json", _STR),
            ("command_names", pa.list_(_STR)),
            ("n_commands", pa.int64()),
            ("lang", _STR),
            ("source_file", _STR),
            ("line_number", pa.int64()),
        ]
    ),
    AUGMENTED_TABLE: pa.schema(
        [
            ("sample_id", _STR),
            ("source_index", _STR),
            ("template", _STR),
            ("variant", _STR),
            ("prompt", _STR),
            ("completion", _STR),
            ("command_names", pa.list_(_STR)),
            ("weight", pa.float64()),
            ("split", _STR),
        ]
    ),
    RESULTS_TABLE: pa.schema(
        [
            ("case_id", _STR),
            ("source_index", _STR),
            ("split_source", _STR),
            ("prompt", _STR),
            ("gold_json", _STR),
            ("raw_output", _STR),
            ("predicted_json", _STR),
            ("json_valid", pa.bool_()),
            ("catalog_valid", pa.bool_()),
            ("exact_match", pa.bool_()),
            ("error", _STR),
            ("latency_s", pa.float64()),
            ("constrained", pa.bool_()),
        ]
    ),
}
QUARANTINE_SCHEMA = pa.schema(
    [
        ("stage", _STR),
        ("source_file", _STR),
        ("line_number", pa.int64()),
        ("raw_line", _STR),
        ("reason", _STR),
        ("detail", _STR),
    ]
)
SCHEMAS[RAW_QUARANTINE_TABLE] = QUARANTINE_SCHEMA
SCHEMAS[NORMALIZE_QUARANTINE_TABLE] = QUARANTINE_SCHEMA


# Commit metadata of a stage's write: {upstream table: the version it read}, so lineage follows a
# downstream version to the exact upstream version it was computed from (no guessing by timestamp).
INPUTS_COMMIT_KEY = "sop2cmd_inputs"


def inputs_metadata(versions: dict[str, int]) -> dict[str, str]:
    """Commit metadata recording the upstream table versions a write was computed from."""
    return {
        INPUTS_COMMIT_KEY: json.dumps({table: int(version) for table, version in versions.items()}, sort_keys=True)
    }


def table_path(lake: str | os.PathLike[str], table: str) -> Path:
    return Path(lake) / table


def empty_frame(table: str) -> pd.DataFrame:
    return SCHEMAS[table].empty_table().to_pandas()


def frame(columns: dict[str, list] | pd.DataFrame, table: str) -> pd.DataFrame:
    """A pandas frame of `table` with the dtypes a read from Delta gives, also when it has no rows."""
    schema = SCHEMAS[table]
    if isinstance(columns, pd.DataFrame):
        return to_arrow(columns, table).to_pandas()
    return pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema).to_pandas()


def to_arrow(df: pd.DataFrame, table: str) -> pa.Table:
    """Arrow table with exactly the table's columns, in schema order; a missing column is an error."""
    schema = SCHEMAS[table]
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise ValueError(f"table {table}: frame lacks columns {missing}")
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def write_table(
    df: pd.DataFrame | pa.Table,
    path: str | os.PathLike[str],
    mode: str = "overwrite",
    table: str | None = None,
    commit_metadata: dict[str, str] | None = None,
) -> int:
    """Write `df` as a new Delta version at `path` and return the version this write committed.

    `table` names a known table (see SCHEMAS) whose schema the data is cast to; without it the
    schema is inferred, which fails for all-null columns of an empty frame. `commit_metadata` is
    stored in the commit (string values).
    """
    path = Path(path)
    if isinstance(df, pd.DataFrame):
        data = to_arrow(df, table) if table else pa.Table.from_pandas(df, preserve_index=False)
    else:
        data = df.cast(SCHEMAS[table]) if table else df
    path.parent.mkdir(parents=True, exist_ok=True)
    # Schema drift is refused naming the column; a commit that loses a race is retried, never committed twice.
    return safe_write_table(data, path, mode=mode, commit_metadata=commit_metadata)


def read_table(
    path: str | os.PathLike[str],
    version: int | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    table = DeltaTable(str(path), version=version)
    return table.to_pyarrow_table(columns=columns).to_pandas()


def read_arrow(
    path: str | os.PathLike[str],
    version: int | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    return DeltaTable(str(path), version=version).to_pyarrow_table(columns=columns)


def table_version(path: str | os.PathLike[str]) -> int | None:
    """Current version of the Delta table at `path`, or None when there is no table yet."""
    if not DeltaTable.is_deltatable(str(path)):
        return None
    return DeltaTable(str(path)).version()
