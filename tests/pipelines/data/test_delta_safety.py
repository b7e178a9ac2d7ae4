"""Delta tables survive a killed writer, concurrent writers and schema drift without losing a row."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.data import delta_safety, lake
from pipelines.data.delta_safety import SafeWriteConfig, SchemaDriftError, safe_write_table
from tests.helpers import (
    EXAMPLES_PATH,
    PARAMS_PATH,
    REPO_ROOT,
    asset_resources,
    subprocess_env,
    worker_command,
    write_params,
)


def _rows(path: Path, version: int | None = None) -> list[dict]:
    table = DeltaTable(str(path), version=version).to_pyarrow_table()
    return sorted(table.to_pylist(), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def _data_files(path: Path) -> set[str]:
    return {p.name for p in path.glob("*.parquet")}


def _kill_writer_mid_write(table_path: Path, signal_file: Path) -> subprocess.Popen:
    """Run the interrupted_delta_write worker on `table_path` and SIGKILL it once its data files are on disk."""
    writer = subprocess.Popen(
        worker_command("interrupted_delta_write", table_path, signal_file), env=subprocess_env()
    )
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert writer.poll() is None, "writer exited before reaching the middle of its write"
            assert time.monotonic() < deadline, "writer never reached the middle of its write"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    return writer


def _gold_corpus(tmp_path: Path) -> tuple[Path, Path]:
    """(a raw dir whose one corpus file holds the gold examples, a lake root not created yet) under tmp_path."""
    raw_dir, lake_root = tmp_path / "raw", tmp_path / "lake"
    raw_dir.mkdir()
    (raw_dir / "gold.jsonl").write_bytes(EXAMPLES_PATH.read_bytes())
    return raw_dir, lake_root


def _augmented_frame(tag: str, n_rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"{tag}-{i}" for i in range(n_rows)],
            "source_index": [f"src-{i}" for i in range(n_rows)],
            "template": ["zh_plain"] * n_rows,
            "variant": ["with_prefix"] * n_rows,
            "prompt": [f"行{i}: 弃去枪头" for i in range(n_rows)],
            "completion": ['{"commands": []}<eoc>'] * n_rows,
            "command_names": [["DropDiti"]] * n_rows,
            "weight": [1.0] * n_rows,
            "split": ["train"] * n_rows,
        }
    )


def test_writer_killed_mid_write_leaves_previous_version_and_next_write_succeeds(tmp_path: Path) -> None:
    table_path = tmp_path / "big_table"
    before = pd.DataFrame({"id": list(range(1000)), "payload": [f"row-{i}" for i in range(1000)]})
    assert lake.write_table(before, table_path) == 0
    rows_before = _rows(table_path)
    files_before = _data_files(table_path)

    writer = _kill_writer_mid_write(table_path, tmp_path / "mid_write")
    assert writer.returncode == -signal.SIGKILL

    orphans = _data_files(table_path) - files_before
    assert orphans, "the killed writer should have left uncommitted data files (else the kill was not mid-write)"
    table = DeltaTable(str(table_path))
    assert table.version() == 0
    assert _rows(table_path) == rows_before
    assert not set(table.file_uris()) & {str(table_path / name) for name in orphans}

    after = pd.DataFrame({"id": [7, 8], "payload": ["next", "write"]})
    assert lake.write_table(after, table_path) == 1
    assert _rows(table_path) == _rows_of(after)
    assert _rows(table_path, version=0) == rows_before


def _rows_of(frame: pd.DataFrame) -> list[dict]:
    return sorted(frame.to_dict("records"), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def test_concurrent_overwrites_commit_in_order_or_conflict_then_retry(tmp_path: Path) -> None:
    """Two processes overwrite the same table at the same instant through `lake.write_table`."""
    table_path = tmp_path / "augmented_training_set"
    lake.write_table(pd.DataFrame({"sample_id": ["seed-0"], "writer": ["seed"]}), table_path)
    n_rows = 20_000
    start_at = time.time() + 3.0  # both interpreters are up and have imported deltalake by then
    results = {tag: tmp_path / f"{tag}.json" for tag in ("A", "B")}
    writers = [
        subprocess.Popen(
            worker_command("delta_writer", table_path, tag, n_rows, start_at, result), env=subprocess_env()
        )
        for tag, result in results.items()
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    outcomes = {tag: json.loads(path.read_text()) for tag, path in results.items()}

    for tag, outcome in outcomes.items():
        assert outcome["attempts"][-1] == "ok", f"writer {tag} never committed: {outcome['attempts']}"
        for failure in outcome["attempts"][:-1]:
            # A lost race must say so; anything else is a bug, not a conflict.
            assert "concurrent" in failure.lower() or "conflict" in failure.lower(), failure

    table = DeltaTable(str(table_path))
    history = table.history()
    assert table.version() == 2
    assert sorted(entry["version"] for entry in history) == [0, 1, 2]
    writers_by_version = {}
    for version in (1, 2):
        frame = DeltaTable(str(table_path), version=version).to_pandas()
        assert len(frame) == n_rows and frame["sample_id"].is_unique
        assert frame["writer"].nunique() == 1
        writer_tag = frame["writer"].iloc[0]
        assert set(frame["sample_id"]) == {f"{writer_tag}-{i}" for i in range(n_rows)}
        writers_by_version[version] = writer_tag
    assert set(writers_by_version.values()) == {"A", "B"}
    assert sorted(outcome["version"] for outcome in outcomes.values()) == [1, 2]


@pytest.mark.parametrize("table_exists", [True, False], ids=["existing_table", "first_write"])
def test_lost_commit_race_is_retried_and_commits_exactly_once(tmp_path: Path, monkeypatch, table_exists: bool) -> None:
    """Deterministic race: another process commits while our write is streaming its files.

    first_write: both writers create the table; deltalake's own retry would rebase our overwrite onto
    theirs and keep both row sets (90 rows), which is exactly what must not happen.
    """
    import deltalake

    table_path = tmp_path / "augmented_training_set"
    if table_exists:
        safe_write_table(_augmented_frame("seed", 3), table_path)
    base = 1 if table_exists else 0
    ours = _augmented_frame("ours", 50)
    theirs_script = (
        "import sys; from tests.pipelines.data.test_delta_safety import _augmented_frame; "
        "from pipelines.data.delta_safety import safe_write_table; "
        "safe_write_table(_augmented_frame('theirs', 40), sys.argv[1])"
    )
    real_write = deltalake.write_deltalake
    calls: list[str] = []

    def racing_write(path, data, **kwargs):
        calls.append("write")
        if len(calls) > 1:
            return real_write(path, data, **kwargs)
        batches = data.to_batches()

        def stream():
            yield batches[0]
            subprocess.run(
                [*worker_command("noop")[:1], "-c", theirs_script, str(table_path)],
                env=subprocess_env(),
                check=True,
            )
            yield from batches[1:]

        reader = pa.RecordBatchReader.from_batches(data.schema, stream())
        return real_write(path, reader, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", racing_write)
    version = safe_write_table(ours, table_path, config=SafeWriteConfig(backoff_seconds=0.01))

    assert calls == ["write", "write"], "the first attempt should have lost the race and been retried once"
    assert version == base + 1
    history = DeltaTable(str(table_path)).history()
    assert sorted(entry["version"] for entry in history) == list(range(base + 2))
    write_ids = [entry.get(delta_safety.WRITE_ID_KEY) for entry in history]
    assert len(write_ids) == len(set(write_ids)), "one write committed twice"
    theirs = DeltaTable(str(table_path), version=base).to_pandas()
    assert sorted(theirs["sample_id"]) == sorted(f"theirs-{i}" for i in range(40))
    final = DeltaTable(str(table_path)).to_pandas()
    assert len(final) == 50 and set(final["sample_id"]) == set(ours["sample_id"])


def _drifted_schema(kind: str) -> pa.Schema:
    schema = lake.SCHEMAS[lake.AUGMENTED_TABLE]
    if kind == "new_column":
        return schema.append(pa.field("difficulty", pa.string()))
    if kind == "changed_type":
        return schema.set(schema.get_field_index("weight"), pa.field("weight", pa.string()))
    raise ValueError(kind)


@pytest.mark.parametrize(("kind", "column"), [("new_column", "difficulty"), ("changed_type", "weight")])
def test_schema_drift_through_lake_write_is_rejected_naming_the_column(
    tmp_path: Path, monkeypatch, kind: str, column: str
) -> None:
    """The production write path: the code's declared schema drifts away from the table on disk."""
    table_path = tmp_path / lake.AUGMENTED_TABLE
    original = _augmented_frame("v0", 5)
    assert lake.write_table(original, table_path, table=lake.AUGMENTED_TABLE) == 0
    rows_before = _rows(table_path)

    drifted = _augmented_frame("v1", 5)
    if kind == "new_column":
        drifted["difficulty"] = "hard"
    else:
        drifted["weight"] = "1.0"
    monkeypatch.setitem(lake.SCHEMAS, lake.AUGMENTED_TABLE, _drifted_schema(kind))

    with pytest.raises(SchemaDriftError) as caught:
        lake.write_table(drifted, table_path, table=lake.AUGMENTED_TABLE)
    assert column in str(caught.value)
    assert caught.value.columns == [column]
    assert DeltaTable(str(table_path)).version() == 0
    assert _rows(table_path) == rows_before


@pytest.mark.parametrize(
    ("mutate", "column", "change"),
    [
        (lambda f: f.assign(difficulty="hard"), "difficulty", "added"),
        (lambda f: f.assign(weight=f["weight"].astype(str)), "weight", "type"),
        (lambda f: f.assign(n_commands=["x"] * len(f)), "n_commands", "type"),
        (lambda f: f.drop(columns=["split"]), "split", "removed"),
    ],
    ids=["new_column", "float_to_string", "int_to_string", "dropped_column"],
)
def test_safe_write_rejects_schema_drift_before_writing(tmp_path: Path, mutate, column: str, change: str) -> None:
    table_path = tmp_path / "table"
    original = _augmented_frame("v0", 4).assign(n_commands=1)
    safe_write_table(original, table_path)
    files_before = _data_files(table_path)

    with pytest.raises(SchemaDriftError) as caught:
        safe_write_table(mutate(_augmented_frame("v1", 4).assign(n_commands=1)), table_path, mode="append")
    assert [(c.column, c.change) for c in caught.value.changes] == [(column, change)]
    assert f"'{column}'" in str(caught.value)
    assert _data_files(table_path) == files_before, "a rejected write must not leave files behind"
    assert DeltaTable(str(table_path)).version() == 0


def test_intended_schema_change_is_an_explicit_opt_in(tmp_path: Path) -> None:
    table_path = tmp_path / "table"
    safe_write_table(_augmented_frame("v0", 2), table_path)
    evolved = _augmented_frame("v1", 2).assign(difficulty="hard")
    version = safe_write_table(evolved, table_path, config=SafeWriteConfig(allow_schema_change=True))
    assert version == 1
    assert "difficulty" in DeltaTable(str(table_path)).schema().to_arrow().names
    assert len(DeltaTable(str(table_path), version=0).to_pandas()) == 2


def test_two_augment_stage_runs_at_once_both_commit_without_duplicates(tmp_path: Path) -> None:
    """The real stage, twice at the same time (as two materializations of `augmented_training_set` would)."""
    from pipelines.data.stages import run_normalize_stage, run_raw_stage

    raw_dir, lake_root = _gold_corpus(tmp_path)
    run_raw_stage(raw_dir, lake_root)
    run_normalize_stage(lake_root)

    # --force: both must write even if one sees the other's commit first (it would otherwise reuse it).
    command = [sys.executable, "-m", "pipelines", "stage", "augment", "--lake", str(lake_root),
               "--params", str(PARAMS_PATH), "--force"]
    runs = [subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-3000:]
    versions = sorted(json.loads(out)["versions"][lake.AUGMENTED_TABLE] for out, _ in outputs)
    assert versions == [0, 1], "each run must be told the version it committed"

    table_path = lake.table_path(lake_root, lake.AUGMENTED_TABLE)
    history = DeltaTable(str(table_path)).history()
    assert sorted(entry["version"] for entry in history) == [0, 1]
    first, second = (DeltaTable(str(table_path), version=v).to_pandas() for v in (0, 1))
    for frame in (first, second):
        assert frame["sample_id"].is_unique and len(frame) > 0
    # Same input, same stage: both versions hold the same rows; the second replaced the first, no appends.
    assert sorted(first["sample_id"]) == sorted(second["sample_id"])
    assert len(DeltaTable(str(table_path)).to_pandas()) == len(second)


@pytest.mark.slow
def test_materialization_after_a_killed_write_of_the_augmented_set_succeeds(tmp_path: Path) -> None:
    """Dagster's view: a writer dies mid-write on `augmented_training_set`; the next materialization succeeds."""
    import dagster as dg

    from assets.data_assets import augmented_training_set, normalized_samples, raw_training_data

    raw_dir, lake_root = _gold_corpus(tmp_path)
    params_path = write_params(tmp_path / "params.yaml", lambda params: params["data"].update(raw_dir=str(raw_dir)))
    resources = asset_resources(tmp_path, lake_root, params_path)
    assets = [raw_training_data, normalized_samples, augmented_training_set]
    assert dg.materialize(assets, resources=resources).success
    augmented_path = lake.table_path(lake_root, lake.AUGMENTED_TABLE)
    version_before = DeltaTable(str(augmented_path)).version()
    rows_before = _rows(augmented_path)

    _kill_writer_mid_write(augmented_path, tmp_path / "mid_write")
    assert DeltaTable(str(augmented_path)).version() == version_before
    assert _rows(augmented_path) == rows_before

    # Nothing committed by the killed writer, so the last commit still matches the inputs: reused as it is.
    result = dg.materialize([augmented_training_set], resources=resources, selection=[augmented_training_set])
    assert result.success
    reused = result.asset_materializations_for_node("augmented_training_set")[0].metadata["reused"].value
    assert reused is True
    assert DeltaTable(str(augmented_path)).version() == version_before

    # A forced rewrite over the debris of the killed write commits once, with the same rows.
    forced = dg.materialize(
        [augmented_training_set],
        resources=resources,
        selection=[augmented_training_set],
        run_config={"ops": {"augmented_training_set": {"config": {"force": True}}}},
    )
    assert forced.success
    assert DeltaTable(str(augmented_path)).version() == version_before + 1
    assert _rows(augmented_path) == rows_before, "same inputs, same rows: nothing lost, nothing duplicated"
