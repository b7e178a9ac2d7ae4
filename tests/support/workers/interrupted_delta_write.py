"""Subprocess: overwrite a Delta table with a large stream, and hang mid-write once data files exist.

argv: table_path signal_file. The rows follow the table's own schema (so the write is a legitimate one);
the parent SIGKILLs this process after `signal_file` appears, i.e. after several data files are on disk
but before the commit.
"""

import os
import sys
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

BATCH_ROWS = 50_000


def column(field: pa.Field, start: int) -> pa.Array:
    kind = field.type
    if pa.types.is_integer(kind):
        return pa.array(range(start, start + BATCH_ROWS), kind)
    if pa.types.is_floating(kind):
        return pa.array([float(i) for i in range(start, start + BATCH_ROWS)], kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.array([[os.urandom(4).hex()] for _ in range(BATCH_ROWS)], kind)
    if pa.types.is_boolean(kind):
        return pa.array([i % 2 == 0 for i in range(BATCH_ROWS)], kind)
    # Random text defeats compression so the writer has to flush real files before the commit.
    return pa.array([os.urandom(24).hex() for _ in range(BATCH_ROWS)], kind)


def batches(schema: pa.Schema, signal_file: Path):
    for index in range(8):
        yield pa.record_batch([column(f, index * BATCH_ROWS) for f in schema], schema=schema)
    signal_file.write_text(str(os.getpid()))
    time.sleep(600)


if __name__ == "__main__":
    table_path, signal_file = sys.argv[1], Path(sys.argv[2])
    schema = pa.schema(DeltaTable(table_path).schema().to_arrow())  # deltalake hands out an arro3 schema
    reader = pa.RecordBatchReader.from_batches(schema, batches(schema, signal_file))
    write_deltalake(table_path, reader, mode="overwrite", target_file_size=2_000_000)
