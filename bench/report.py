"""Render the JSON results of the throughput benchmarks as the markdown tables of docs/benchmarks.md.

"seed" in result keys and table rows names the unoptimized baseline each throughput benchmark compares
against (the original project's configuration and generation loop).

    .venv/bin/python bench/report.py bench/results/train_throughput.json bench/results/inference_throughput.json \
        bench/results/pipeline_overhead.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _m(entry: dict[str, Any], digits: int = 1) -> str:
    """median (min-max) of a summarize() entry."""
    return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"


def machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return f"{m['cpu']}, {m['cpu_count']} cores, {m['memory_gib']} GiB{gpu}, torch {m.get('torch', '?')}"


def load_line(loads: list[float], cores: int) -> str:
    # The benchmark's own threads keep the load near `cores` between back-to-back runs.
    busy = max(loads) > cores + 0.5
    state = "LOADED: other work shared the CPUs" if busy else f"quiet: the benchmark itself keeps it near {cores}"
    return f"1-min load average at the start of each run: {', '.join(f'{x:.1f}' for x in loads)} ({state})"


def train_section(r: dict[str, Any]) -> str:
    if r.get("mode") == "gpu":
        return (f"| arch | device | micro-batch | real tok/s | MFU (LoRA FLOPs) | MFU (6N) | peak memory MiB |\n"
                f"| --- | --- | --- | --- | --- | --- | --- |\n"
                f"| {r['arch']} | {r['device']} | {r['micro_batch']} | {r['real_tokens_per_s']:.0f} | "
                f"{r['mfu']:.1%} | {r['mfu_6n_convention']:.1%} | {r.get('peak_cuda_mib', r['peak_rss_mib'])} |\n")
    s = r["summary"]
    rows = ["| configuration | real tokens/s (whole `train()`) | real tokens/s (forward+backward steps) | "
            "real tokens / CPU-s | train wall s | peak RSS MiB | train loss | eval loss |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("seed", "optimized"):
        x = s[name]
        step = _m(x["step_real_tokens_per_s"]) if x.get("step_real_tokens_per_s", {}).get("n") else "-"
        rows.append(f"| {name} | {_m(x['real_tokens_per_s'])} | {step} | {_m(x['real_tokens_per_cpu_s'])} | "
                    f"{_m(x['train_wall_s'])} | {x['peak_rss_mib']['median']:.0f} | {x['train_loss']['median']:.4f} | "
                    f"{x['eval_loss']['median']:.4f} |")
    step_ratio = f"**{r['ratio_step_real_tokens_per_s']:.2f}x**" if "ratio_step_real_tokens_per_s" in r else "-"
    rows.append(f"| **ratio optimized/seed** | **{r['ratio_real_tokens_per_s']:.2f}x** | {step_ratio} | "
                f"{r['ratio_real_tokens_per_cpu_s']:.2f}x | | | | |")
    loads = s["seed"]["load_1min"] + s["optimized"]["load_1min"]
    text = "\n".join(rows)
    pair_ratios = ", ".join(f"{x:.2f}" for x in r["pair_ratios_real_tokens_per_s"])
    text += (f"\n\nPer-pair ratios (real tokens/s): {pair_ratios}. "
             f"{r['steps']} optimizer steps x {r['samples_per_step']} samples "
             f"({r['real_tokens']['train']} real tokens) per run, {r['repeats']} runs per configuration, "
             f"medians (min-max). Eval loss on {r['eval_rows']} eval rows "
             f"(token-mean over completion tokens): optimized <= seed x (1 + {r['eval_tolerance']}): "
             f"{'yes' if r['eval_loss_not_worse'] else 'NO'}.\n\n{load_line(loads, r['machine']['cpu_count'])}.\n")
    return text


def inference_section(r: dict[str, Any]) -> str:
    s = r["summary"]
    rows = ["| loop | cases/s | p50 latency s | p95 latency s | generated tokens | wall s |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in ("seed_one_at_a_time", "batched", "batched_constrained"):
        x = s[name]
        rows.append(f"| {name} | {_m(x['cases_per_s'], 3)} | {x['p50_latency_s']['median']:.2f} | "
                    f"{x['p95_latency_s']['median']:.2f} | {x['new_tokens']['median']:.0f} | {_m(x['wall_s'])} |")
    loads = [v for name in s for v in s[name]["load_1min"]]
    return ("\n".join(rows)
            + f"\n\nRatios (medians): batched/seed **{r['ratio_batched_vs_seed']:.2f}x**, "
              f"batched constrained/seed **{r['ratio_batched_constrained_vs_seed']:.2f}x**; constrained over "
              f"unconstrained batched: **{r['constrained_overhead_vs_batched']:+.1%}** wall "
              f"({r.get('constrained_overhead_per_new_token', float('nan')):+.1%} per generated token). "
              f"Greedy outputs identical "
              f"between the seed loop and the batched loop: {'yes' if r['greedy_outputs_identical'] else 'NO'}. "
              f"Model {r['model']}, {r['cases']} regression cases, batch {r['batch_size']}, max_new_tokens "
              f"{r['max_new_tokens']}, {r['repeats']} repeats; grammar compiled once before timing "
              f"({r['grammar_compile_s']:.1f} s).\n\n{load_line(loads, r['machine']['cpu_count'])}.\n")


def pipeline_section(r: dict[str, Any]) -> str:
    d, g = r["direct"], r["dagster_in_process"]
    rows = ["| path | first run s | no-op re-run s (median, min-max) |", "| --- | --- | --- |",
            f"| direct stage calls (3 stages) | {d['first']['total']:.2f} | {_m(d['noop']['total'], 2)} |",
            f"| Dagster in-process `data_job` (3 assets + 5 checks) | {g['first']['total']:.2f} | "
            f"{_m(g['noop']['total'], 2)} |"]
    if "dagster_cli" in r:
        c = r["dagster_cli"]
        rows.append(f"| `dagster job execute -j data_job` ({r['executor_cli']} executor) | {c['first_s']:.1f} | "
                    f"{_m(c['noop_s'])} |")
    per = ["", "| asset | direct s | Dagster step s | overhead s |", "| --- | --- | --- | --- |"]
    for step, overhead in r["dagster_overhead_per_asset_s"].items():
        per.append(f"| {step} | {d['noop'][step]['median']:.2f} | {g['noop'][step]['median']:.2f} | "
                   f"{overhead['median']:.2f} |")
    per.append(f"| checks (5) | - | {g['noop']['checks']['median']:.2f} | {g['noop']['checks']['median']:.2f} |")
    if "whole_graph_in_process" in r:
        w = r["whole_graph_in_process"]
        per += ["", f"Whole graph, `full_graph` in-process, {w['profile']} profile:", "",
                "| step | first run s | no-op re-run s (median, min-max) |", "| --- | --- | --- |"]
        for step, noop in w["noop"].items():
            if step != "total":
                per.append(f"| {step} | {w['first'].get(step, float('nan')):.2f} | {_m(noop, 2)} |")
        per.append(f"| **whole run** | {w['first']['total']:.2f} | {_m(w['noop']['total'], 2)} |")
    loads = [r["load_start"][0], r["load_end"][0]]
    extra = ""
    if "import_code_location_s" in r:
        extra = f" Importing the code location alone: {r['import_code_location_s']:.1f} s."
    return ("\n".join(rows + per)
            + f"\n\nNo-op goal (< {r['noop_goal_s']:.0f} s): {'met' if r['noop_goal_met'] else 'NOT met'}.{extra}\n\n"
              f"{load_line(loads, r['machine']['cpu_count'])}.\n")


def main(paths: list[str]) -> int:
    for path in paths:
        result = json.loads(Path(path).read_text())
        render = {"train_throughput": train_section, "inference_throughput": inference_section,
                  "pipeline_overhead": pipeline_section}[result["benchmark"]]
        print(f"<!-- {path} -->\nMachine: {machine_line(result)}.\n")
        print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
