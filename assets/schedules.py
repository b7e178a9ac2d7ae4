"""A nightly retrain that skips itself when the raw corpus is byte-identical to the last retrain's.

The corpus is what ingest reads (`pipelines.data.ingest.raw_files`), hashed as the retrain sensor hashes it.

The last retrain is the newest run of the retrain job (sensor- or schedule-launched, not failed or
canceled) carrying a corpus digest tag; with none on record the schedule retrains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from assets.automation import retrain_job
from assets.sensors import CORPUS_DIGEST_TAG, TRIGGER_TAG, default_raw_dir
from pipelines.data.fingerprints import corpus_digest
from pipelines.data.ingest import corpus_md5s

NIGHTLY_CRON = "0 2 * * *"
_NOT_TRAINED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING)


def last_retrained_digest(instance: dg.DagsterInstance, job_name: str) -> str | None:
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=50):
        if run.status in _NOT_TRAINED:
            continue
        if CORPUS_DIGEST_TAG in run.tags:
            return run.tags[CORPUS_DIGEST_TAG]
    return None


def build_nightly_retrain_schedule(
    raw_dir: Callable[[], Path] = default_raw_dir,
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition = retrain_job,
    name: str = "nightly_retrain",
    cron_schedule: str = NIGHTLY_CRON,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Nightly retrain; skips when the raw corpus did not change since the last retrain.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        digest = corpus_digest(corpus_md5s(raw_dir()))
        last = last_retrained_digest(context.instance, job.name)
        if last == digest:
            return dg.SkipReason(f"raw corpus unchanged since the last retrain (digest {digest})")
        return dg.RunRequest(tags={CORPUS_DIGEST_TAG: digest, TRIGGER_TAG: name})

    return _schedule


nightly_retrain_schedule = build_nightly_retrain_schedule()
