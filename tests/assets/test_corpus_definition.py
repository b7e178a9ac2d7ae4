"""One definition of the raw corpus: a file is ingested, watched (sensor and nightly schedule), recorded in
the lineage manifest and checked by `lineage --verify`, or it is none of these.

Before, ingest read top-level *.jsonl while the triggers hashed **/*.jsonl and the manifest every file, so a
file in a subfolder triggered retrains it was never part of.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pytest

from assets.schedules import build_nightly_retrain_schedule
from assets.sensors import CORPUS_DIGEST_TAG, build_raw_corpus_sensor
from pipelines.cli import build_parser
from pipelines.data.ingest import ingest
from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path
from pipelines.lineage.audit import run as run_lineage
from pipelines.lineage.manifest import data_lineage
from tests.support.lineage_fixture import TrainedLineage, build_trained_lineage, copy_lineage


@dg.asset
def stand_in_raw() -> None:
    """A stand-in target, so the triggers are evaluated without the real (training) graph."""


stand_in_job = dg.define_asset_job("stand_in_corpus_retrain", selection=[stand_in_raw])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedLineage:
    return build_trained_lineage(tmp_path_factory.mktemp("corpus_definition"))


def _verify_output(lineage: TrainedLineage) -> tuple[int, str]:
    args = build_parser().parse_args(
        [
            "lineage",
            str(lineage.merged_dir),
            "--lake",
            str(lineage.lake),
            "--raw-dir",
            str(lineage.raw_dir),
            "--verify",
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    code = run_lineage(args, out=out, err=err)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize(
    ("candidate", "is_corpus"),
    [("c.jsonl", True), ("nested/c.jsonl", False), ("notes.txt", False)],
)
def test_a_file_is_ingested_watched_and_verified_or_none_of_them(
    trained: TrainedLineage, tmp_path: Path, instance: dg.DagsterInstance, candidate: str, is_corpus: bool
) -> None:
    lineage = copy_lineage(trained, tmp_path)
    raw_dir = lineage.raw_dir
    sensor = build_raw_corpus_sensor(raw_dir=lambda: raw_dir, job=stand_in_job, name="corpus_definition_sensor")
    schedule = build_nightly_retrain_schedule(
        raw_dir=lambda: raw_dir, job=stand_in_job, name="corpus_definition_nightly"
    )
    baseline = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name=sensor.name))
    digest_before = (
        schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0].tags[CORPUS_DIGEST_TAG]
    )

    # A record ingest accepts, so "ingested" means trained on, not merely quarantined.
    first = (raw_dir / "a.jsonl").read_text(encoding="utf-8").splitlines()[0]
    record = json.loads(first)
    record["conversation"][0]["input"] += "（新文件）"
    path = raw_dir / candidate
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")

    ingested = candidate in ingest(raw_dir).lines_per_file
    tick = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=baseline.cursor, sensor_name=sensor.name)
    )
    watched_by_sensor = len(tick.run_requests or []) == 1
    digest_after = (
        schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0].tags[CORPUS_DIGEST_TAG]
    )
    watched_by_schedule = digest_after != digest_before
    frame = read_table(table_path(lineage.lake, AUGMENTED_TABLE))
    recorded = candidate in data_lineage(frame, AUGMENTED_TABLE, 0, raw_dir).raw_files_md5
    code, out = _verify_output(lineage)
    verified = code == 1 and f"raw file {candidate}" in out

    observed = {
        "ingested": ingested,
        "sensor": watched_by_sensor,
        "schedule": watched_by_schedule,
        "manifest": recorded,
        "verify": verified,
    }
    assert observed == dict.fromkeys(observed, is_corpus), out
    if not is_corpus:
        assert code == 0, out  # a file outside the corpus leaves the model's lineage intact


def test_verify_names_an_edited_corpus_file_but_not_an_edited_other_file(
    trained: TrainedLineage, tmp_path: Path
) -> None:
    lineage = copy_lineage(trained, tmp_path)
    (lineage.raw_dir / "README.md").write_text("notes about the corpus\n", encoding="utf-8")
    assert _verify_output(lineage)[0] == 0
    with open(lineage.raw_dir / "b.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n")
    code, out = _verify_output(lineage)
    assert code == 1
    assert "CHANGED raw file b.jsonl" in out and "README.md" not in out
