"""Predict the 20 public SOP examples with a trained model and report exact match per case.

    .venv/bin/python bench/sop_examples_eval.py --model artifacts/merged_model [--no-constrained]

Reads the project's copy of the examples (data/eval/sop_examples.jsonl, as regression_metrics does) and
prints a markdown table (id, exact match, prediction or the rule it broke) followed by the headline metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_contracts import render_json_commands
from pipelines.model.model_io import load_model_and_tokenizer
from pipelines.serve.decode import MAX_PLAN_TOKENS, DecodingConfig
from pipelines.serve.eval_metrics import compute_metrics
from pipelines.serve.eval_slices import read_cases
from pipelines.serve.evaluate import run_evaluation

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "eval" / "sop_examples.jsonl"
SOURCE = "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--examples", type=Path, default=EXAMPLES)
    parser.add_argument("--no-constrained", dest="constrained", action="store_false")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_PLAN_TOKENS)
    args = parser.parse_args()
    if not args.examples.is_file():
        parser.error(f"no examples file at {args.examples}")

    model, tokenizer = load_model_and_tokenizer(args.model)
    cases = read_cases(args.examples, SOURCE)
    config = DecodingConfig(max_new_tokens=args.max_new_tokens, constrained=args.constrained)
    results, wall_s = run_evaluation(model, tokenizer, cases, config)

    print(f"| id | exact | prediction (constrained={args.constrained}) |")
    print("| --- | --- | --- |")
    for result in results:
        checked = result.checked
        if checked.catalog_valid:
            shown = render_json_commands(checked.commands)
        else:
            shown = "REJECTED: " + checked.error_message()
        shown = shown.replace("|", "\\|").replace("\n", " ")
        case_id = result.case.case_id.removeprefix(SOURCE + ":")
        print(f"| {case_id} | {'yes' if result.exact_match else 'no'} | `{shown[:400]}` |")
    headline = compute_metrics(results, wall_s).headline()
    print()
    print(json.dumps({key: round(value, 4) for key, value in headline.items()}))


if __name__ == "__main__":
    main()
