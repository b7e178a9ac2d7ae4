"""The three stages end to end through the same CLI DVC runs, on a temporary lake."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.config import AugmentParams, load_params
from pipelines.data.lake import (
    AUGMENTED_TABLE,
    NORMALIZED_TABLE,
    RAW_TABLE,
    read_table,
    table_path,
    table_version,
    write_table,
)
from pipelines.data.split import leaked_sources
from pipelines.data.stages import (
    TableContractError,
    read_quarantine,
    run_augment_stage,
    run_normalize_stage,
    run_raw_stage,
    validate_frame,
)
from tests.helpers import PARAMS_PATH, raw_record
from tests.support.contract_frames import quarantine_frame


def _stage(name: str, lake: Path, raw_dir: Path | None = None) -> list[str]:
    argv = ["stage", name, "--lake", str(lake), "--params", str(PARAMS_PATH)]
    if raw_dir is not None:
        argv += ["--raw-dir", str(raw_dir)]
    return argv


@pytest.fixture()
def raw_with_problems(raw_dir: Path, small_corpus: list[dict]) -> Path:
    first = small_corpus[0]["conversation"][0]
    extra = [
        json.dumps(raw_record("行1：" + first["input"] + "  ", first["output"]), ensure_ascii=False),
        '{"conversation": [',
        "",
    ]
    (raw_dir / "zz_extra.jsonl").write_text("\n".join(extra) + "\n", encoding="utf-8")
    return raw_dir


def test_stages_write_versions_and_account_for_every_line(
    raw_with_problems: Path, lake: Path, small_corpus: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_stage("raw", lake, raw_with_problems)) == 0
    summary = json.loads(capsys.readouterr().out)
    n_lines = len(small_corpus) + 3
    assert summary["n_lines"] == n_lines
    assert summary["reasons"] == {"blank_line": 1, "invalid_json": 1}
    assert summary["n_records"] + summary["n_quarantined"] == n_lines
    assert set(summary["file_sha256"]) == {"corpus.jsonl", "zz_extra.jsonl"}

    assert main(_stage("normalize", lake)) == 0
    assert main(_stage("augment", lake)) == 0
    capsys.readouterr()

    raw = read_table(table_path(lake, RAW_TABLE))
    samples = read_table(table_path(lake, NORMALIZED_TABLE))
    augmented = read_table(table_path(lake, AUGMENTED_TABLE))
    quarantine = read_quarantine(lake)
    assert len(raw) == len(small_corpus) + 1
    # The prefixed copy of record 1 normalizes to record 1 and is recorded as removed.
    assert len(samples) == len(small_corpus)
    normalize_rows = quarantine[quarantine["stage"] == "normalize"]
    assert normalize_rows[["source_file", "line_number", "reason"]].values.tolist() == [
        ["zz_extra.jsonl", 1, "duplicate"]
    ]
    assert normalize_rows["raw_line"].iloc[0].startswith('{"conversation": [{"input": "行1：')
    assert len(raw) + (quarantine["stage"] == "raw").sum() == n_lines
    assert len(augmented) == 8 * len(samples)
    assert leaked_sources(augmented["source_index"].tolist(), augmented["split"].tolist()) == []
    assert set(augmented["source_index"]) == set(samples["source_index"])

    # A forced second run writes new versions; the first stays readable.
    assert main(_stage("raw", lake, raw_with_problems) + ["--force"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is False
    assert table_version(table_path(lake, RAW_TABLE)) == 1
    assert len(read_table(table_path(lake, RAW_TABLE), version=0)) == len(raw)


def _versions(lake: Path) -> dict[str, int | None]:
    return {table: table_version(table_path(lake, table)) for table in (RAW_TABLE, NORMALIZED_TABLE, AUGMENTED_TABLE)}


def _run_all(raw_dir: Path, lake: Path, params: AugmentParams | None = None) -> dict[str, bool]:
    settings = load_params(PARAMS_PATH)
    return {
        RAW_TABLE: run_raw_stage(raw_dir, lake, settings.data).reused,
        NORMALIZED_TABLE: run_normalize_stage(lake).reused,
        AUGMENTED_TABLE: run_augment_stage(lake, params or settings.augment).reused,
    }


def test_an_unchanged_stage_reuses_its_tables_and_reports_the_same_result(raw_with_problems: Path, lake: Path) -> None:
    settings = load_params(PARAMS_PATH)
    first = run_raw_stage(raw_with_problems, lake, settings.data)
    normalized = run_normalize_stage(lake)
    augmented = run_augment_stage(lake, settings.augment)
    versions = _versions(lake)

    again = run_raw_stage(raw_with_problems, lake, settings.data)
    assert again.reused and not first.reused
    assert (again.raw_version, again.quarantine_version) == (first.raw_version, first.quarantine_version)
    assert (again.ingest.n_lines, again.ingest.reasons) == (first.ingest.n_lines, first.ingest.reasons)
    assert again.ingest.lines_per_file == first.ingest.lines_per_file
    assert again.ingest.file_sha256 == first.ingest.file_sha256
    assert (again.ingest.n_records, again.ingest.n_quarantined) == (first.ingest.n_records, first.ingest.n_quarantined)

    normalized_again = run_normalize_stage(lake)
    assert normalized_again.reused
    assert len(normalized_again.result.samples) == len(normalized.result.samples)
    assert len(normalized_again.result.quarantine) == len(normalized.result.quarantine)

    augmented_again = run_augment_stage(lake, settings.augment)
    assert augmented_again.reused
    pd.testing.assert_frame_equal(
        augmented_again.result.distribution, augmented.result.distribution, check_dtype=False
    )
    assert augmented_again.result.single_source_commands == augmented.result.single_source_commands
    assert len(augmented_again.result.table) == len(augmented.result.table)
    assert _versions(lake) == versions  # nothing was written


def test_a_changed_input_reruns_its_stage_and_everything_after_it(raw_dir: Path, lake: Path) -> None:
    settings = load_params(PARAMS_PATH)
    assert _run_all(raw_dir, lake) == {RAW_TABLE: False, NORMALIZED_TABLE: False, AUGMENTED_TABLE: False}
    assert _run_all(raw_dir, lake) == {RAW_TABLE: True, NORMALIZED_TABLE: True, AUGMENTED_TABLE: True}

    # New augment params: only the augment stage reruns.
    fewer_variants = replace(settings.augment, variants=("without_prefix",))
    only_augment_reran = {RAW_TABLE: True, NORMALIZED_TABLE: True, AUGMENTED_TABLE: False}
    assert _run_all(raw_dir, lake, fewer_variants) == only_augment_reran
    n_samples = len(read_table(table_path(lake, NORMALIZED_TABLE)))
    assert len(read_table(table_path(lake, AUGMENTED_TABLE))) == 4 * n_samples

    # One raw line edited: every stage reruns and the new line is in the data.
    corpus = raw_dir / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    before = _versions(lake)
    nothing_reused = {RAW_TABLE: False, NORMALIZED_TABLE: False, AUGMENTED_TABLE: False}
    assert _run_all(raw_dir, lake, fewer_variants) == nothing_reused
    assert all(_versions(lake)[table] == before[table] + 1 for table in before)
    assert len(read_table(table_path(lake, RAW_TABLE))) == len(lines) - 1


def test_a_table_written_by_something_else_is_not_taken_for_the_stage_output(raw_dir: Path, lake: Path) -> None:
    settings = load_params(PARAMS_PATH)
    run_raw_stage(raw_dir, lake, settings.data)
    raw = read_table(table_path(lake, RAW_TABLE))
    write_table(raw.head(3), table_path(lake, RAW_TABLE), table=RAW_TABLE)  # no stage fingerprint in this commit
    rerun = run_raw_stage(raw_dir, lake, settings.data)
    assert not rerun.reused
    assert len(read_table(table_path(lake, RAW_TABLE))) == len(raw)


def test_stage_outputs_are_reproducible(raw_dir: Path, tmp_path: Path) -> None:
    tables = []
    for name in ("a", "b"):
        lake = tmp_path / name
        for stage in ("raw", "normalize", "augment"):
            assert main(_stage(stage, lake, raw_dir if stage == "raw" else None)) == 0
        tables.append(read_table(table_path(lake, AUGMENTED_TABLE)))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_a_stage_without_its_upstream_fails_clearly(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_stage("normalize", lake)) == 1
    assert "materialize its upstream stage first" in capsys.readouterr().err


def test_a_frame_breaking_its_contract_is_refused_with_failure_cases() -> None:
    bad = quarantine_frame()
    bad.loc[1, ["stage", "line_number", "reason"]] = ["sideways", 0, "Bad Reason"]
    with pytest.raises(TableContractError) as caught:
        validate_frame(bad, "quarantine/raw")
    failing = set(caught.value.failure_cases["column"])
    assert {"stage", "line_number", "reason"} <= failing
