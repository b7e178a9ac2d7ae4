"""What grounded decoding buys and costs: the same model and cases decoded with grounding on and off.

    .venv/bin/python bench/grounding_effect.py --model artifacts/merged_model --eval-cases 80 \\
        --output bench/results/grounding_effect-<stamp>.json

Both runs use the catalog grammar (what `regression_metrics` runs); only `DecodingConfig.grounded` differs.
Reports exact match, JSON- and catalog-valid rates per slice (a sample of the eval split, the 20 public
examples), the decoding wall time of each run, and the per-description setup grounding adds (its token
tables, built once per tokenizer, and one `GroundedRow` per description) against the per-case decoding time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    decoding_run,
    default_lake,
    log,
    machine_info,
    reproducing_command,
    write_json,
)
from pipelines.data.lake import AUGMENTED_TABLE, NORMALIZED_TABLE, read_table, table_path  # noqa: E402
from pipelines.model.model_io import eoc_token_id, load_model_and_tokenizer  # noqa: E402
from pipelines.model.prompts import serving_user_message  # noqa: E402
from pipelines.serve.constrained import _CACHE, model_vocab_size  # noqa: E402
from pipelines.serve.decode import DecodingConfig  # noqa: E402
from pipelines.serve.eval_slices import eval_split_cases, read_cases  # noqa: E402
from pipelines.serve.evaluate import run_evaluation  # noqa: E402
from pipelines.serve.grounding import GroundedFields, GroundedRow  # noqa: E402

PUBLIC = REPO_ROOT / "data" / "eval" / "sop_examples.jsonl"


def setup_cost_s(model, tokenizer, descriptions: list[str]) -> tuple[float, float]:
    """(token tables built from scratch, one GroundedRow per description) in seconds."""
    _CACHE._grounding_vocabs.clear()
    started = time.perf_counter()
    vocab = _CACHE.grounding_vocab(tokenizer, model_vocab_size(model), [eoc_token_id(tokenizer)])
    tables_s = time.perf_counter() - started
    fields = GroundedFields.for_catalog()
    started = time.perf_counter()
    for description in descriptions:
        GroundedRow(serving_user_message(description).encode("utf-8"), vocab, fields)
    return tables_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--eval-cases", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    lake = default_lake()
    augmented = read_table(table_path(lake, AUGMENTED_TABLE))
    eval_cases = eval_split_cases(augmented, read_table(table_path(lake, NORMALIZED_TABLE)))
    cases = eval_cases[: args.eval_cases] + read_cases(PUBLIC, "public")
    model, tokenizer = load_model_and_tokenizer(args.model)
    grounded = DecodingConfig(batch_size=args.batch_size, constrained=True, grounded=True)
    runs = {}
    for name, config in (("grammar_only", dataclasses.replace(grounded, grounded=False)), ("grounded", grounded)):
        log(f"{name}: {len(cases)} cases")
        results, wall_s = run_evaluation(model, tokenizer, cases, config)
        runs[name] = decoding_run(results, wall_s)
        log(str(runs[name]["slices"]))
    tables_s, rows_s = setup_cost_s(model, tokenizer, [case.description for case in cases])
    per_case = runs["grounded"]["per_case_s"]
    payload = {
        "machine": machine_info(),
        "model": str(args.model),
        "cases": len(cases),
        "runs": runs,
        "setup": {
            "token_tables_once_per_tokenizer_s": round(tables_s, 4),
            "grounded_rows_per_description_s": rows_s / len(cases),
            "share_of_per_case_decoding": (rows_s / len(cases) + tables_s / len(cases)) / per_case,
        },
        "command": reproducing_command("grounding_effect.py", args),
    }
    write_json(payload, args.output)


if __name__ == "__main__":
    main()
