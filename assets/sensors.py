"""Retrain when the raw corpus changes, judged by content (per-file md5), not by timestamps.

The corpus is what ingest reads (`pipelines.data.ingest.raw_files`: top-level *.jsonl), so a file the
graph would never train on never triggers a retrain. The cursor is the JSON map {relative path: md5}
seen at the last evaluation. An edit, an added file
or a deleted file yields exactly one retrain run request; an evaluation with no change yields none.
The first evaluation only records the corpus as it is (the baseline): it was trained by whoever set
the deployment up (`make run`), and retraining on sensor start would repeat that work.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from assets.automation import retrain_job
from pipelines.data.fingerprints import corpus_digest, diff_fingerprints
from pipelines.data.ingest import corpus_md5s

CORPUS_DIGEST_TAG = "sop2cmd/corpus_digest"
TRIGGER_TAG = "sop2cmd/trigger"


def default_raw_dir() -> Path:
    from pipelines.config import load_params

    return Path(load_params().data.raw_dir)


def _load_cursor(cursor: str | None) -> dict[str, str] | None:
    if not cursor:
        return None
    state = json.loads(cursor)
    return dict(state["files"])


def _dump_cursor(fingerprint: dict[str, str]) -> str:
    return json.dumps({"files": fingerprint}, sort_keys=True)


def build_raw_corpus_sensor(
    raw_dir: Callable[[], Path] = default_raw_dir,
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition = retrain_job,
    name: str = "raw_corpus_sensor",
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a retrain run when a raw corpus file is edited, added or deleted (by md5).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        directory = raw_dir()
        current = corpus_md5s(directory)
        previous = _load_cursor(context.cursor)
        if previous is None:
            return dg.SensorResult(
                skip_reason=f"baseline recorded: {len(current)} raw file(s) under {directory}",
                cursor=_dump_cursor(current),
            )
        change = diff_fingerprints(previous, current)
        if not change.changed:
            return dg.SensorResult(skip_reason=f"raw corpus unchanged ({len(current)} file(s))")
        digest = corpus_digest(current)
        context.log.info(f"raw corpus changed ({change.describe()}); requesting a retrain")
        request = dg.RunRequest(
            # Unique per transition, so a reverted edit (A -> B -> A) still retrains on A.
            run_key=f"{corpus_digest(previous)}->{digest}",
            tags={CORPUS_DIGEST_TAG: digest, TRIGGER_TAG: f"{name}: {change.describe()}"[:255]},
        )
        return dg.SensorResult(run_requests=[request], cursor=_dump_cursor(current))

    return _sensor


raw_corpus_sensor = build_raw_corpus_sensor()
