"""Guards around Delta writes: reject schema drift before it lands, retry commits that lose a race.

Delta's own checks are not enough for us: deltalake silently casts a changed column type on write
(a string column written into a long column becomes numbers or nulls), and its error for an extra
column does not name the column. A commit that loses a race against a concurrent writer raises
`CommitFailedError`; the data files of the loser are orphaned but never visible, so re-running
the whole write is safe.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_contracts.errors import ContractError

# Lossless widenings a writer may produce without it being drift (pandas/polars differ in widths).
_WIDENINGS: dict[str, set[str]] = {
    "long": {"byte", "short", "integer"},
    "integer": {"byte", "short"},
    "short": {"byte"},
    "double": {"float"},
}


@dataclass(frozen=True)
class ColumnChange:
    """One difference between a table's schema and the data about to be written."""

    column: str
    change: str  # "added" | "removed" | "type"
    table_type: str | None
    incoming_type: str | None

    def describe(self) -> str:
        if self.change == "added":
            return f"new column {self.column!r} ({self.incoming_type}) is not in the table"
        if self.change == "removed":
            return f"column {self.column!r} ({self.table_type}) is missing from the data"
        return f"column {self.column!r} changes type from {self.table_type} to {self.incoming_type}"


class SchemaDriftError(ContractError):
    """A write whose schema differs from the table's; nothing was written."""

    def __init__(self, table: str, changes: list[ColumnChange]) -> None:
        self.table = table
        self.changes = list(changes)
        self.columns = [c.column for c in changes]
        details = "; ".join(c.describe() for c in changes)
        super().__init__(f"schema drift in Delta table {table}: {details}")


WRITE_ID_KEY = "sop2cmd_write_id"
_RECENT_COMMITS = 20


class DeltaWriteConflict(RuntimeError):
    """A write that kept losing commit races after every retry."""


@dataclass(frozen=True)
class SafeWriteConfig:
    max_attempts: int = 5
    backoff_seconds: float = 0.2
    # Explicit opt-in for an intended schema change (then the table's schema is replaced).
    allow_schema_change: bool = False


def _delta_types(schema: pa.Schema) -> dict[str, str]:
    from deltalake import Schema

    delta_schema = Schema.from_arrow(schema)
    return {field.name: _type_name(field.type) for field in delta_schema.fields}


def _type_name(delta_type: Any) -> str:
    # PrimitiveType has .type ("long"); nested types fall back to their repr, which is stable.
    return str(getattr(delta_type, "type", None) or delta_type)


def schema_changes(table_schema: pa.Schema, incoming_schema: pa.Schema) -> list[ColumnChange]:
    """Column-level differences, in the table's column order, then new columns."""
    table_types = _delta_types(table_schema)
    incoming_types = _delta_types(incoming_schema)
    changes: list[ColumnChange] = []
    for column, table_type in table_types.items():
        incoming_type = incoming_types.get(column)
        if incoming_type is None:
            changes.append(ColumnChange(column, "removed", table_type, None))
        elif incoming_type != table_type and incoming_type not in _WIDENINGS.get(table_type, set()):
            changes.append(ColumnChange(column, "type", table_type, incoming_type))
    for column, incoming_type in incoming_types.items():
        if column not in table_types:
            changes.append(ColumnChange(column, "added", None, incoming_type))
    return changes


def _as_arrow(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


def _existing_table(path: str) -> Any:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return None
    return DeltaTable(path)


def ensure_schema_matches(path: str | Path, data: Any) -> None:
    """Raise SchemaDriftError when `data` does not have the schema of the table at `path`."""
    table = _existing_table(str(path))
    if table is None:
        return
    changes = schema_changes(table.schema().to_arrow(), _as_arrow(data).schema)
    if changes:
        raise SchemaDriftError(str(path), changes)


def safe_write_table(
    data: Any,
    path: str | Path,
    mode: str = "overwrite",
    config: SafeWriteConfig = SafeWriteConfig(),
    commit_metadata: dict[str, str] | None = None,
    **write_kwargs: Any,
) -> int:
    """Write `data` to the Delta table at `path` and return the version it committed.

    Schema drift is rejected before any file is written; a lost commit race is retried with the
    same data, so a retried write commits exactly once. `commit_metadata` is stored in the commit.
    """
    from deltalake import CommitProperties, write_deltalake
    from deltalake.exceptions import CommitFailedError

    path = str(path)
    arrow = _as_arrow(data)
    if config.allow_schema_change:
        write_kwargs.setdefault("schema_mode", "overwrite" if mode == "overwrite" else "merge")
    else:
        ensure_schema_matches(path, arrow)
    # A write id in the commit lets us find our own version and never commit the same data twice.
    # deltalake's own commit retries are off: it rebases a lost overwrite onto the winner's version
    # without removing the winner's files (two first writes of a table end up holding both row sets),
    # whereas re-running the whole write reads the new snapshot and replaces it properly.
    write_id = uuid.uuid4().hex
    write_kwargs["commit_properties"] = CommitProperties(
        custom_metadata={**(commit_metadata or {}), WRITE_ID_KEY: write_id}, max_commit_retries=0
    )
    last_error: Exception | None = None
    for attempt in range(config.max_attempts):
        try:
            write_deltalake(path, arrow, mode=mode, **write_kwargs)
        except CommitFailedError as error:
            last_error = error
            committed = committed_version(path, write_id)
            if committed is not None:
                return committed
            time.sleep(config.backoff_seconds * (2**attempt))
            continue
        committed = committed_version(path, write_id)
        if committed is None:
            raise DeltaWriteConflict(f"write {write_id} to {path} reported success but is not in the table history")
        return committed
    raise DeltaWriteConflict(
        f"write to Delta table {path} lost {config.max_attempts} commit races in a row: {last_error}"
    ) from last_error


def committed_version(path: str | Path, write_id: str) -> int | None:
    """The table version committed by the write tagged `write_id`, or None if it never committed."""
    table = _existing_table(str(path))
    if table is None:
        return None
    # Our commit is almost always among the newest; the full history is read only when it is not.
    for limit in (_RECENT_COMMITS, None):
        for entry in table.history(limit):
            if entry.get(WRITE_ID_KEY) == write_id:
                return int(entry["version"])
    return None
