"""The retrain sensor and the nightly schedule, evaluated on a temporary instance and raw dir."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.schedules import build_nightly_retrain_schedule
from assets.sensors import CORPUS_DIGEST_TAG, build_raw_corpus_sensor
from pipelines.data.fingerprints import corpus_digest
from pipelines.data.ingest import corpus_md5s
from tests.helpers import sample_record, write_jsonl


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """Two corpus files, so that an edit, an addition and a deletion can each be told apart."""
    directory = tmp_path / "raw"
    write_jsonl(directory / "a.jsonl", [sample_record(i) for i in range(3)])
    write_jsonl(directory / "b.jsonl", [sample_record(i) for i in range(3, 5)])
    return directory


@dg.asset
def stand_in_raw() -> None:
    """A stand-in target, so the triggers are tested without the real (training) graph."""


stand_in_job = dg.define_asset_job("stand_in_retrain", selection=[stand_in_raw])


class SensorHarness:
    """Evaluates the sensor like the daemon does: each tick sees the cursor the previous tick stored."""

    def __init__(self, raw_dir: Path, instance: dg.DagsterInstance) -> None:
        self.sensor = build_raw_corpus_sensor(raw_dir=lambda: raw_dir, job=stand_in_job, name="test_corpus_sensor")
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, sensor_name=self.sensor.name)
        result = self.sensor.evaluate_tick(context)
        if result.cursor is not None:
            self.cursor = result.cursor
        return list(result.run_requests or [])


def test_first_tick_records_the_baseline_without_a_run(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    harness = SensorHarness(raw_dir, instance)
    assert harness.tick() == []
    assert json.loads(harness.cursor)["files"] == corpus_md5s(raw_dir)
    assert harness.tick() == []


def test_edit_add_delete_each_trigger_exactly_one_run(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    harness = SensorHarness(raw_dir, instance)
    harness.tick()

    # Rewriting a file with identical bytes is no change.
    (raw_dir / "a.jsonl").write_bytes((raw_dir / "a.jsonl").read_bytes())
    assert harness.tick() == []

    steps = {
        "modified: a.jsonl": lambda: write_jsonl(raw_dir / "a.jsonl", [sample_record(i) for i in range(4)]),
        "added: c.jsonl": lambda: write_jsonl(raw_dir / "c.jsonl", [sample_record(9)]),
        "deleted: b.jsonl": lambda: (raw_dir / "b.jsonl").unlink(),
    }
    for expected_change, mutate in steps.items():
        mutate()
        requests = harness.tick()
        assert len(requests) == 1, expected_change
        assert expected_change in requests[0].tags["sop2cmd/trigger"]
        assert requests[0].tags[CORPUS_DIGEST_TAG] == corpus_digest(corpus_md5s(raw_dir))
        assert harness.tick() == [], f"a second tick after '{expected_change}' must not retrain again"


def test_a_reverted_edit_retrains_again(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    harness = SensorHarness(raw_dir, instance)
    harness.tick()
    original = (raw_dir / "a.jsonl").read_bytes()
    write_jsonl(raw_dir / "a.jsonl", [sample_record(7)])
    first = harness.tick()
    (raw_dir / "a.jsonl").write_bytes(original)
    second = harness.tick()
    assert len(first) == len(second) == 1
    assert first[0].run_key != second[0].run_key


def test_sensor_runs_on_the_daemon_path(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    """The same sensor evaluated through Definitions, as the daemon resolves it."""
    sensor = build_raw_corpus_sensor(raw_dir=lambda: raw_dir, job=stand_in_job, name="defs_sensor")
    defs = dg.Definitions(assets=[stand_in_raw], jobs=[stand_in_job], sensors=[sensor])
    resolved = defs.resolve_sensor_def("defs_sensor")
    baseline = resolved.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (raw_dir / "b.jsonl").unlink()
    result = resolved.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=baseline.cursor, definitions=defs)
    )
    assert len(result.run_requests) == 1
    assert resolved.job_name == "stand_in_retrain"


def _schedule_tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance):
    context = dg.build_schedule_context(instance=instance)
    return schedule.evaluate_tick(context)


def test_nightly_schedule_skips_when_nothing_changed(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    schedule = build_nightly_retrain_schedule(raw_dir=lambda: raw_dir, job=stand_in_job, name="test_nightly")

    first = _schedule_tick(schedule, instance)
    assert len(first.run_requests) == 1, "with no retrain on record the nightly schedule retrains"

    # Record that retrain as a finished run of the job, as the daemon would have.
    defs = dg.Definitions(assets=[stand_in_raw], jobs=[stand_in_job])
    result = defs.resolve_job_def("stand_in_retrain").execute_in_process(
        instance=instance, tags=dict(first.run_requests[0].tags)
    )
    assert result.success

    second = _schedule_tick(schedule, instance)
    assert not second.run_requests
    assert "unchanged" in second.skip_message

    write_jsonl(raw_dir / "new.jsonl", [sample_record(11)])
    third = _schedule_tick(schedule, instance)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].tags[CORPUS_DIGEST_TAG] != first.run_requests[0].tags[CORPUS_DIGEST_TAG]


def test_failed_retrain_does_not_count_as_trained(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    @dg.asset(name="stand_in_raw")
    def failing() -> None:
        raise RuntimeError("training crashed")

    job = dg.define_asset_job("failing_retrain", selection=[failing])
    schedule = build_nightly_retrain_schedule(raw_dir=lambda: raw_dir, job=job, name="test_nightly_failed")
    first = _schedule_tick(schedule, instance)
    defs = dg.Definitions(assets=[failing], jobs=[job])
    result = defs.resolve_job_def("failing_retrain").execute_in_process(
        instance=instance, tags=dict(first.run_requests[0].tags), raise_on_error=False
    )
    assert not result.success
    assert len(_schedule_tick(schedule, instance).run_requests) == 1
