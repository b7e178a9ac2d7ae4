"""Serving throughput: `python -m pipelines serve` with batching on, against the same server with it off.

One run starts the real server twice on the same model, one after the other (never at the same time, so
they do not share the CPU): `--max-batch-size 1` (batching off: one description per generate call) and
`--max-batch-size N` (descriptions that arrive together are decoded together). Each time, `--clients`
concurrent HTTP clients send the same cases of the regression set, one description per request, until all
are answered. Both servers decode through the same constrained, grounded decoder and the same gate.

Figures per mode: cases/s (cases / wall time from the first request to the last answer), p50/p95 latency per
request as the client sees it (queueing included), how many batches the server decoded and the largest, and
how many answers were plans vs errors. The result also counts the cases whose answer differs between the two
modes (greedy decoding should give the same plan batched or not; a difference is reported, not hidden).
Server start-up (model load, grammar compilation, one warm-up plan) happens before timing.

    .venv/bin/python bench/serve_throughput.py --model /path/to/merged_model --cases 64 --clients 16 \
        --max-batch-size 16 --out bench/results/serve_throughput.json

Target: batched serving at least 3x the cases/s of unbatched serving on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    default_lake,
    load_average,
    log,
    machine_info,
    percentile,
    summarize,
    write_json,
)

TARGET_RATIO = 3.0
MODES = ("unbatched", "batched")


def start_server(
    model_dir: Path, log_path: Path, max_batch_size: int, args: argparse.Namespace
) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "pipelines", "serve", "--model", str(model_dir), "--port", "0",
        "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
        "--max-new-tokens", str(args.max_new_tokens), "--max-queue", str(max(1024, args.cases)),
    ]
    environment = {key: value for key, value in os.environ.items() if key != "SOP2CMD_SERVE_TOKEN"}
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", log_path.read_text(errors="replace"))
        if found:
            try:
                get_json(found.group(1) + "/healthz")
                return process, found.group(1)
            except urllib.error.URLError:
                pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not start:\n{log_path.read_text(errors='replace')[-4000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def post_plan(url: str, description: str, timeout_s: float) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"description": description}, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url + "/v1/plans", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def drive(url: str, descriptions: list[str], clients: int, timeout_s: float) -> dict[str, Any]:
    """`clients` threads answer every case once; returns timings and the answers in case order."""
    work: queue.Queue[int] = queue.Queue()
    for index in range(len(descriptions)):
        work.put(index)
    answers: list[Any] = [None] * len(descriptions)
    latencies: list[float] = [0.0] * len(descriptions)
    failures: list[str] = []

    def client() -> None:
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            try:
                status, body = post_plan(url, descriptions[index], timeout_s)
            except Exception as error:  # noqa: BLE001 - a lost request is a result to report, not a crash
                failures.append(f"case {index}: {error!r}")
                continue
            latencies[index] = time.perf_counter() - started
            if isinstance(body.get("error"), dict):
                body["error"].pop("log_id", None)  # random per answer; the modes' answers are compared without it
            answers[index] = body if status == 200 else {"http_status": status, **body}

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    load_before = load_average()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    answered = [latency for latency, answer in zip(latencies, answers) if answer is not None]
    return {
        "wall_s": wall_s,
        "cases_per_s": len(answered) / wall_s,
        "p50_latency_s": percentile(answered, 50),
        "p95_latency_s": percentile(answered, 95),
        "answered": len(answered),
        "plans": sum(1 for answer in answers if answer is not None and "commands" in answer),
        "rejected": sum(1 for answer in answers if answer is not None and "error" in answer),
        "other_status": sum(1 for answer in answers if answer is not None and "http_status" in answer),
        "failures": failures,
        "load_before": load_before,
        "load_after": load_average(),
        "_answers": answers,
    }


def run_mode(
    mode: str, model_dir: Path, descriptions: list[str], args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    max_batch_size = 1 if mode == "unbatched" else args.max_batch_size
    log_path = log_dir / f"serve-{mode}-{os.getpid()}-{time.time_ns()}.log"
    process, url = start_server(model_dir, log_path, max_batch_size, args)
    try:
        before = get_json(url + "/healthz")
        result = drive(url, descriptions, args.clients, args.request_timeout)
        after = get_json(url + "/healthz")
        model = get_json(url + "/v1/model")
    finally:
        stop_server(process)
    result.update({
        "mode": mode,
        "max_batch_size": max_batch_size,
        "batches": after["batches"] - before["batches"],
        "largest_batch": after["largest_batch"],
        "model_sha256": model["merged_weights_sha256"],
        "server_log": str(log_path),
    })
    log(f"{mode}: {result['cases_per_s']:.3f} cases/s, p50 {result['p50_latency_s']:.2f}s, "
        f"p95 {result['p95_latency_s']:.2f}s, {result['batches']} batches (largest {result['largest_batch']}), "
        f"{result['plans']} plans / {result['rejected']} rejected (load {result['load_before']})")
    return result


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from bench.inference_throughput import regression_descriptions, resolve_model_dir

    model_dir, model_name = resolve_model_dir(args.model)
    descriptions = regression_descriptions(Path(args.lake) if args.lake else default_lake(), args.cases, 0)
    log(f"model {model_name} ({model_dir}), {len(descriptions)} cases, {args.clients} clients, "
        f"batched max {args.max_batch_size} / wait {args.max_wait_ms} ms, max_new_tokens {args.max_new_tokens}")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="serve-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)

    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        order = MODES if repeat % 2 == 0 else MODES[::-1]  # alternate: drift in the machine's load hits both
        for mode in order:
            runs[mode].append(run_mode(mode, model_dir, descriptions, args, log_dir))

    reference = runs["unbatched"][0]["_answers"]
    differing = [
        {"case": index, "description": descriptions[index][:80]}
        for index, (a, b) in enumerate(zip(reference, runs["batched"][0]["_answers"], strict=True)) if a != b
    ]
    for results in runs.values():
        for result in results:
            result.pop("_answers")
    summary = {
        mode: {key: summarize([r[key] for r in results])
               for key in ("cases_per_s", "wall_s", "p50_latency_s", "p95_latency_s", "batches", "largest_batch")}
        for mode, results in runs.items()
    }
    ratio = summary["batched"]["cases_per_s"]["median"] / summary["unbatched"]["cases_per_s"]["median"]
    lost = sum(len(descriptions) - r["answered"] for results in runs.values() for r in results)
    return {
        "benchmark": "serve_throughput",
        "machine": machine_info(),
        "model": model_name,
        "model_dir": str(model_dir),
        "cases": len(descriptions),
        "clients": args.clients,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "summary": summary,
        "ratio_batched_vs_unbatched": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "requests_lost": lost,
        "answers_differing_between_modes": differing,
        "runs": runs,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="'merged' (default when present), a base model source (smollm2-gguf, tiny) "
                             "or a directory")
    parser.add_argument("--cases", type=int, default=64, help="cases drawn from the regression set (0 = all)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--max-batch-size", type=int, default=16, help="the batched server's --max-batch-size")
    parser.add_argument("--max-wait-ms", type=float, default=25.0, help="both servers' --max-wait-ms")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each mode, alternating their order")
    parser.add_argument("--lake", default=None, help="lake root (default $SOP2CMD_LAKE or ./lake)")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for a server to listen")
    parser.add_argument("--request-timeout", type=float, default=3600.0, help="seconds one request may take")
    parser.add_argument("--log-dir", default=None, help="where the servers' logs go (default: a temporary dir)")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = benchmark(args)
    write_json(result, args.out)
    if result["requests_lost"]:
        log(f"FAIL: {result['requests_lost']} requests got no answer")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
