"""Subprocess: overwrite a Delta table with a large stream, and hang mid-write once data files exist.

argv: table_path signal_file. The parent SIGKILLs this process after `signal_file` appears, i.e. after
several data files are on disk but before the commit.
"""

import os
import sys
import time
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

SCHEMA = pa.schema([("id", pa.int64()), ("payload", pa.string())])
BATCH_ROWS = 50_000


def batches(signal_file: Path):
    for index in range(8):
        ids = pa.array(range(index * BATCH_ROWS, (index + 1) * BATCH_ROWS), pa.int64())
        # Random payloads defeat compression so the writer has to flush real files before the commit.
        payload = pa.array([os.urandom(24).hex() for _ in range(BATCH_ROWS)])
        yield pa.record_batch([ids, payload], schema=SCHEMA)
    signal_file.write_text(str(os.getpid()))
    time.sleep(600)
    yield pa.record_batch([pa.array([-1], pa.int64()), pa.array(["never"])], schema=SCHEMA)


if __name__ == "__main__":
    table_path, signal_file = sys.argv[1], Path(sys.argv[2])
    reader = pa.RecordBatchReader.from_batches(SCHEMA, batches(signal_file))
    write_deltalake(table_path, reader, mode="overwrite", target_file_size=2_000_000)
