"""Tables in asset metadata: typed Dagster tables from plain rows, and the column schema of a Delta table.

`pipelines/` hands over rows as dicts and columns as (name, type[, description]) tuples, type one of
string / int / float / bool; here they become `dg.MetadataValue.table` with a `dg.TableSchema`, which
the Dagster UI shows as a sortable table. A row whose keys differ from the columns is an error, so a
renamed column cannot silently empty a column of the UI.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from pipelines.data.lake import SCHEMAS

Column = tuple[str, ...]  # (name, type) or (name, type, description)

# The metadata key the Dagster UI reads an asset's columns from (dagster 1.13 exports no TableMetadataSet).
COLUMN_SCHEMA_KEY = "dagster/column_schema"
# How a Delta column's Arrow type is named in the Dagster UI.
_ARROW_TYPE_NAMES = {pa.string(): "string", pa.int64(): "int", pa.float64(): "float", pa.bool_(): "bool"}


def table_schema(columns: Sequence[Column]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(column[0], column[1], description=column[2] if len(column) > 2 else None)
                 for column in columns]
    )


def _cell(value: Any) -> str | int | float | bool | None:
    """A value Dagster stores in a table record: numpy scalars as Python ones, NaN as empty, the rest as text."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return str(value)


def metadata_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[Column] | dg.TableSchema
) -> dg.TableMetadataValue:
    """`rows` as a Dagster table with exactly the given columns."""
    schema = columns if isinstance(columns, dg.TableSchema) else table_schema(columns)
    names = [column.name for column in schema.columns]
    records = []
    for row in rows:
        if set(row) != set(names):
            raise ValueError(f"table row has columns {sorted(row)}, the table's columns are {names}")
        records.append(dg.TableRecord({name: _cell(row[name]) for name in names}))
    return dg.MetadataValue.table(records=records, schema=schema)


def frame_preview(frame: pd.DataFrame, schema: dg.TableSchema, max_rows: int, max_chars: int) -> dg.TableMetadataValue:
    """The first `max_rows` rows of `frame` in the schema's columns, text cut at `max_chars` characters."""
    names = [column.name for column in schema.columns]
    shown = frame[names].head(max_rows)

    def cut(value: Any) -> Any:
        return value[:max_chars] if isinstance(value, str) else value

    return metadata_table(({name: cut(row[name]) for name in names} for row in shown.to_dict("records")), schema)


def column_schema(table: str, columns: Sequence[str] | None = None) -> dg.TableSchema:
    """The Dagster schema of a Delta table (`pipelines.data.lake.SCHEMAS`), optionally only some columns."""
    fields = {field.name: field for field in SCHEMAS[table]}
    names = list(columns) if columns is not None else list(fields)
    return dg.TableSchema(columns=[dg.TableColumn(name, _type_name(fields[name].type)) for name in names])


def _type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type):
        return f"list<{_type_name(arrow_type.value_type)}>"
    return _ARROW_TYPE_NAMES.get(arrow_type, str(arrow_type))


def column_schema_metadata(table: str) -> dict[str, Any]:
    """Definition metadata of an asset that is the Delta table `table`: its `dagster/column_schema`."""
    return {COLUMN_SCHEMA_KEY: column_schema(table)}
