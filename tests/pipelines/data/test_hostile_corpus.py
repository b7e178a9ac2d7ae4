"""A corpus made only of hostile lines goes through the raw stage: all quarantined, nothing runs, memory bounded."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipelines.config import DataParams
from pipelines.data.lake import RAW_QUARANTINE_TABLE, RAW_TABLE, table_path
from tests.helpers import FIXTURES, subprocess_env, worker_command
from tests.support.hostile_corpus import corpus_bytes, hostile_lines

MAX_LINE_BYTES = DataParams().max_line_bytes
# Generous bounds: the stage may hold the file, its lines and one decoded copy, plus pandas/arrow
# buffers for the quarantine rows (each keeps up to max_line_bytes of its raw line).
RSS_GROWTH_FACTOR = 25
RSS_GROWTH_FLOOR = 256 * 2**20


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    marker = Path("/tmp") / f"PWNED_{uuid.uuid4().hex}"
    lines = hostile_lines(str(marker), MAX_LINE_BYTES)
    raw_dir = root / "raw"
    raw_dir.mkdir()
    corpus = corpus_bytes(lines)
    (raw_dir / "hostile.jsonl").write_bytes(corpus)
    warmup_dir = root / "warmup"
    warmup_dir.mkdir()
    # One quarantined line so the warm-up also exercises the quarantine write path.
    clean = (FIXTURES / "sop_examples.jsonl").read_bytes()
    (warmup_dir / "warmup.jsonl").write_bytes(clean.rstrip(b"\n") + b"\nnot json\n")
    lake = root / "lake"
    completed = subprocess.run(
        worker_command("raw_stage_memory", warmup_dir, raw_dir, lake, MAX_LINE_BYTES),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    quarantine = DeltaTable(str(table_path(lake, RAW_QUARANTINE_TABLE))).to_pandas()
    records = DeltaTable(str(table_path(lake, RAW_TABLE))).to_pandas()
    yield {
        "lines": lines,
        "marker": marker,
        "summary": summary,
        "quarantine": quarantine,
        "records": records,
        "corpus_size": len(corpus),
    }
    marker.unlink(missing_ok=True)


def test_every_hostile_line_is_quarantined_with_its_reason(hostile_run: dict) -> None:
    lines, quarantine = hostile_run["lines"], hostile_run["quarantine"]
    assert hostile_run["summary"]["n_lines"] == len(lines)
    assert len(hostile_run["records"]) == 0, hostile_run["records"][["line_number", "input_text"]].to_string()
    assert sorted(quarantine["line_number"]) == list(range(1, len(lines) + 1))
    by_line = quarantine.set_index("line_number")
    wrong = {
        line.name: (by_line.loc[number, "reason"], by_line.loc[number, "detail"][:200])
        for number, line in enumerate(lines, start=1)
        if by_line.loc[number, "reason"] not in line.reasons
    }
    assert not wrong, wrong
    assert (quarantine["stage"] == "raw").all()
    assert quarantine["detail"].str.len().gt(0).all()


def test_quarantined_raw_lines_are_kept_bounded(hostile_run: dict) -> None:
    quarantine = hostile_run["quarantine"]
    assert quarantine["raw_line"].str.len().max() <= MAX_LINE_BYTES
    # The shorter hostile lines are kept verbatim (as text) so a person can see what was refused.
    payload_rows = quarantine[quarantine["raw_line"].str.contains("__import__", regex=False)]
    assert len(payload_rows) >= 5


def test_nothing_in_the_corpus_was_executed(hostile_run: dict) -> None:
    assert not hostile_run["marker"].exists()


def test_memory_stays_bounded(hostile_run: dict) -> None:
    summary, size = hostile_run["summary"], hostile_run["corpus_size"]
    bound = max(RSS_GROWTH_FACTOR * size, RSS_GROWTH_FLOOR)
    assert summary["rss_growth_bytes"] < bound, (summary, size)
    assert summary["traced_peak_bytes"] < bound, (summary, size)
    # A parse worker (if the stage uses them) holds at most its share of the corpus plus its imports.
    assert summary["children_peak_rss_bytes"] < bound + 512 * 2**20, (summary, size)
