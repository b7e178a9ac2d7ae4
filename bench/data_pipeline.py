"""Time the data half of the graph: raw JSONL -> raw_training_data -> normalized_samples -> augmented_training_set.

Each run starts from an empty lake and includes Pandera validation and the Delta writes.
- plain:   the three `pipelines.data.stages.run_*_stage` calls (what DVC runs, minus interpreter start-up);
- dagster: `dg.materialize` of the three assets and their five blocking checks (checks re-read and
           re-validate every table) on an ephemeral instance.
The corpus is generated once per (records, seed) with the bundled generator and kept in --workdir;
generation is not timed.

    .venv/bin/python bench/data_pipeline.py --records 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def corpus_dir(workdir: Path, records: int, seed: int) -> Path:
    from pipelines.corpus.generator import corpus_bytes, generate_corpus

    directory = workdir / f"raw-{records}-{seed}"
    path = directory / "corpus.jsonl"
    if not path.is_file():
        started = time.perf_counter()
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(corpus_bytes(generate_corpus(records, seed)))
        print(f"generated {records} records in {time.perf_counter() - started:.1f}s -> {path}", file=sys.stderr)
    return directory


def run_plain(raw_dir: Path, lake: Path, params_path: Path) -> dict[str, float]:
    from pipelines.config import load_params
    from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage

    params = load_params(params_path)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    raw = run_raw_stage(raw_dir, lake, params.data)
    timings["raw"] = time.perf_counter() - started
    mark = time.perf_counter()
    run_normalize_stage(lake)
    timings["normalize"] = time.perf_counter() - mark
    mark = time.perf_counter()
    augmented = run_augment_stage(lake, params.augment)
    timings["augment"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    timings["rows"] = float(len(augmented.result.table))
    timings["records"] = float(raw.ingest.n_records)
    return timings


def bench_params(params_path: Path, raw_dir: Path, workers: int | None, workdir: Path) -> Path:
    """A copy of params.yaml pointing at the generated corpus (and with --workers applied)."""
    import yaml

    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["data"]["raw_dir"] = str(raw_dir)
    if workers is not None:
        params["data"]["workers"] = workers
    path = workdir / "params.bench.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def run_dagster(raw_dir: Path, lake: Path, params_path: Path, workdir: Path) -> dict[str, float]:
    import dagster as dg

    from assets.data_assets import DATA_ASSETS
    from assets.data_checks import DATA_CHECKS
    from assets.resources import ArtifactsResource, LakeResource, ParamsResource

    resources = {
        "lake": LakeResource(root=str(lake)),
        "artifacts": ArtifactsResource(root=str(workdir / "artifacts")),
        "params": ParamsResource(path=str(params_path)),
    }
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([*DATA_ASSETS, *DATA_CHECKS], resources=resources, instance=instance)
    total = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("materialization failed")
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    if failed:
        raise RuntimeError(f"checks failed: {failed}")
    return {"total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=9001, help="corpus seed (not the bundled corpus's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["plain", "dagster", "both"], default="both")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sop2cmd-bench"))
    parser.add_argument(
        "--workers", type=int, default=None, help="raw-parsing processes (default: params data.workers)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    raw_dir = corpus_dir(args.workdir, args.records, args.seed)
    params_path = bench_params(args.params, raw_dir, args.workers, args.workdir)
    modes = ["plain", "dagster"] if args.mode == "both" else [args.mode]
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        for mode in modes:
            lake = args.workdir / f"lake-{mode}"
            shutil.rmtree(lake, ignore_errors=True)
            cpu = time.process_time()
            if mode == "plain":
                timings = run_plain(raw_dir, lake, params_path)
            else:
                timings = run_dagster(raw_dir, lake, params_path, args.workdir)
            # CPU of this process only (raw-parsing workers are not included; --workers 1 puts all the
            # work in this process, which measures the pipeline's total CPU); the load average
            # tells how much of the machine's cores other processes took during the run.
            timings["main_process_cpu"] = time.process_time() - cpu
            timings["load_1min_after"] = os.getloadavg()[0]
            results[mode].append(timings)
            described = ", ".join(f"{k}={v:.2f}" for k, v in timings.items())
            print(f"run {repeat + 1} {mode}: {described}", file=sys.stderr)

    print(f"records={args.records} repeats={args.repeats} cpus={os.cpu_count()} python={platform.python_version()}")
    print("| mode | stage | median s | runs (s) |")
    print("| --- | --- | ---: | --- |")
    for mode, runs in results.items():
        for key in runs[0]:
            if key in ("rows", "records", "load_1min_after"):
                continue
            values = [run[key] for run in runs]
            listed = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {mode} | {key} | {statistics.median(values):.1f} | {listed} |")
    loads = [run["load_1min_after"] for runs in results.values() for run in runs]
    print(f"1-minute load average after each run: {', '.join(f'{v:.1f}' for v in loads)}")
    if "plain" in results:
        first = results["plain"][0]
        print(f"augmented rows: {int(first['rows'])}, raw records: {int(first['records'])}")
    if args.json:
        args.json.write_text(json.dumps({"records": args.records, "results": results}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
