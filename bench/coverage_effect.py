"""What a decoding rule buys and costs: a run's regression cases decoded with the rule off and on.

    .venv/bin/python bench/coverage_effect.py --model artifacts/merged_model --lake lake \\
        [--rule amounts] --output bench/results/coverage_effect-<stamp>.json

The rule is coverage (`pipelines.serve.coverage`, the default), grounded amounts
(`pipelines.serve.amount_grounding`), grounded liquid classes (`pipelines.serve.liquid_class`), volumes in the
text's order (`pipelines.serve.volume_order`), well lists in the text's order (`pipelines.serve.well_order`),
labels bound to their wells (`pipelines.serve.label_binding`) or steps the text has words for
(`pipelines.serve.command_cues`).
The cases are exactly those `regression_metrics` judged (the `regression_results` table of the lake: every slice,
constrained rows). Both runs use the grounded catalog grammar and the eval settings of params.yaml
(`max_new_tokens` included); only the rule's `DecodingConfig` field differs. Reports exact match, JSON- and
catalog-valid rates per slice, the decoding wall time of each run, and what the rule adds per description (its
row fed every token of the decoded plan; coverage then settles and trims the plan) against the per-case
decoding time. `--coverage-only` skips the run without the rule; `--overhead-only` decodes nothing: it times
that work on the plans the lake's run decoded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, decoding_run, log, machine_info, reproducing_command, write_json  # noqa: E402
from data_contracts.forms import parse_json_commands  # noqa: E402
from pipelines.config import load_params  # noqa: E402
from pipelines.data.lake import RESULTS_TABLE, read_table, table_path  # noqa: E402
from pipelines.model.model_io import eoc_token_id, load_model_and_tokenizer  # noqa: E402
from pipelines.model.prompts import serving_user_message  # noqa: E402
from pipelines.serve.amount_grounding import AmountRow  # noqa: E402
from pipelines.serve.command_cues import CommandCueRow  # noqa: E402
from pipelines.serve.constrained import _CACHE, model_vocab_size  # noqa: E402
from pipelines.serve.coverage import CoverageRow  # noqa: E402
from pipelines.serve.eval_cases import EvalCase  # noqa: E402
from pipelines.serve.evaluate import run_evaluation  # noqa: E402
from pipelines.serve.label_binding import LabelBindingRow  # noqa: E402
from pipelines.serve.liquid_class import LiquidClassRow  # noqa: E402
from pipelines.serve.volume_order import VolumeOrderRow  # noqa: E402
from pipelines.serve.well_order import WellOrderRow  # noqa: E402


def regression_cases(lake: Path) -> tuple[list[EvalCase], list[str]]:
    """The cases of the lake's last regression run (its constrained rows), in case-id order, and the plans that
    run decoded for them."""
    frame = read_table(table_path(lake, RESULTS_TABLE))
    frame = frame[frame["constrained"]].sort_values("case_id")
    cases = [
        EvalCase(row.case_id, row.prompt, tuple(parse_json_commands(row.gold_json)), row.split_source)
        for row in frame.itertuples()
    ]
    return cases, list(frame["raw_output"])


# The DecodingConfig field each rule turns on.
RULE_FIELDS = {
    "coverage": "coverage", "amounts": "grounded_amounts", "liquid_class": "grounded_liquid_class",
    "volume_order": "grounded_volume_order",
    "well_order": "grounded_well_order",
    "label_binding": "grounded_label_binding",
    "command_cues": "grounded_command_cues",
}
# The row class (a `pipelines.serve.constrained.ValueRule`) that times each value rule's overhead.
VALUE_RULES = {
    "amounts": AmountRow, "liquid_class": LiquidClassRow, "volume_order": VolumeOrderRow, "well_order": WellOrderRow,
    "label_binding": LabelBindingRow,
}


def rule_overhead_s(
    rule: str, tokenizer: Any, token_bytes: Sequence[bytes], cases: list[EvalCase], texts: list[str]
) -> float:
    """Seconds per description that the rule adds to decoding it: its row and the checks on every token of
    the decoded plan; coverage then settles and trims the plan (tokenizing the plan again is not timed)."""
    streams = [[token_bytes[token] for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
               for text in texts]
    started = time.perf_counter()
    for case, text, stream in zip(cases, texts, streams, strict=True):
        description = serving_user_message(case.description)
        if rule in VALUE_RULES:
            value_rule = VALUE_RULES[rule](description)
            for piece in stream:
                value_rule.keeps_grounding(piece)
                value_rule.accept_bytes(piece)
            continue
        if rule == "command_cues":
            name_rule = CommandCueRow(description)
            for piece in stream:
                name_rule.allows(piece)
                name_rule.accept_bytes(piece)
            continue
        row = CoverageRow(description)
        for piece in stream:
            row.allows(piece)
            row.closes_plan(piece)
            row.accept_bytes(piece)
        row.settle(text)
    return (time.perf_counter() - started) / len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--lake", type=Path, default=REPO_ROOT / "lake")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--rule", choices=sorted(RULE_FIELDS), default="coverage",
                        help="the decoding rule turned off in the first run")
    parser.add_argument("--coverage-only", action="store_true",
                        help="decode only with the rule on (a run without it does not change when the rule does)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only time the rule's work on the plans the lake's run decoded; decode nothing")
    args = parser.parse_args()

    cases, decoded = regression_cases(args.lake)
    model, tokenizer = load_model_and_tokenizer(args.model)
    vocab = _CACHE.grounding_vocab(tokenizer, model_vocab_size(model), [eoc_token_id(tokenizer)])
    if args.overhead_only:
        overhead_s = rule_overhead_s(args.rule, tokenizer, vocab.token_bytes, cases, decoded)
        payload = {"machine": machine_info(), "model": str(args.model), "cases": len(cases),
                   "overhead": {f"{args.rule}_per_description_s": overhead_s},
                   "command": reproducing_command("coverage_effect.py", args)}
        write_json(payload, args.output)
        return
    settings = load_params(REPO_ROOT / "params.yaml").eval.for_profile(args.profile)
    field = RULE_FIELDS[args.rule]
    with_rule = dataclasses.replace(settings.decoding_config(constrained=True), **{field: True})
    configs = {f"without_{args.rule}": dataclasses.replace(with_rule, **{field: False}), args.rule: with_rule}
    runs, texts = {}, []
    if args.coverage_only:
        del configs[f"without_{args.rule}"]
    for name, config in configs.items():
        log(f"{name}: {len(cases)} cases, max_new_tokens {config.max_new_tokens}")
        results, wall_s = run_evaluation(model, tokenizer, cases, config)
        texts = [result.checked.raw_output for result in results]
        runs[name] = decoding_run(results, wall_s)
        runs[name]["exact_case_ids"] = sorted(result.case.case_id for result in results if result.exact_match)
        log(json.dumps(runs[name]["slices"]))
    overhead_s = rule_overhead_s(args.rule, tokenizer, vocab.token_bytes, cases, texts)
    payload = {
        "machine": machine_info(),
        "model": str(args.model),
        "cases": len(cases),
        "runs": runs,
        "overhead": {
            f"{args.rule}_per_description_s": overhead_s,
            "share_of_per_case_decoding": overhead_s / runs[args.rule]["per_case_s"],
        },
        "command": reproducing_command("coverage_effect.py", args),
    }
    write_json(payload, args.output)


if __name__ == "__main__":
    main()
