"""Subprocess: run the raw stage on a corpus and report peak memory growth as JSON on stdout.

argv: warmup_raw_dir hostile_raw_dir lake max_line_bytes. The warm-up run on a clean corpus loads
every library first, so the growth measured afterwards belongs to the hostile corpus alone.
"""

import json
import resource
import sys
import tracemalloc

from pipelines.config import DataParams
from pipelines.data.stages import run_raw_stage


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # Linux reports KiB


if __name__ == "__main__":
    warmup_dir, hostile_dir, lake, max_line_bytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = DataParams(max_line_bytes=max_line_bytes)
    run_raw_stage(warmup_dir, lake + "_warmup", settings)
    rss_before = peak_rss_bytes()
    children_before = peak_rss_bytes(resource.RUSAGE_CHILDREN)
    tracemalloc.start()
    result = run_raw_stage(hostile_dir, lake, settings)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "rss_growth_bytes": peak_rss_bytes() - rss_before,
                # The stage may parse in worker processes; the largest one's peak must stay bounded too.
                "children_peak_rss_bytes": peak_rss_bytes(resource.RUSAGE_CHILDREN),
                "children_peak_before_bytes": children_before,
                "traced_peak_bytes": traced_peak,
                "n_lines": result.ingest.n_lines,
                "n_records": result.ingest.n_records,
                "n_quarantined": result.ingest.n_quarantined,
                "raw_version": result.raw_version,
                "quarantine_version": result.quarantine_version,
            }
        )
    )
