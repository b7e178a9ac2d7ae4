"""Subprocess: one overwrite of a Delta table through the production write path, started on a barrier.

argv: table_path tag n_rows start_at_epoch result_file. Prints nothing; writes a JSON result:
{"tag", "attempts": [...outcomes...], "version"}.
"""

import json
import sys
import time

import pandas as pd

from pipelines.data import lake


def frame(tag: str, n_rows: int) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": [f"{tag}-{i}" for i in range(n_rows)], "writer": [tag] * n_rows})


if __name__ == "__main__":
    table_path, tag, n_rows, start_at, result_file = sys.argv[1:6]
    data = frame(tag, int(n_rows))
    time.sleep(max(0.0, float(start_at) - time.time()))
    attempts: list[str] = []
    version = None
    for _ in range(3):
        try:
            version = lake.write_table(data, table_path, mode="overwrite")
            attempts.append("ok")
            break
        except Exception as error:  # noqa: BLE001 - the test asserts on the error's type and message
            attempts.append(f"{type(error).__name__}: {error}")
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump({"tag": tag, "attempts": attempts, "version": version}, handle)
