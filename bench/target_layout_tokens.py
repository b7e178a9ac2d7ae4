"""Tokens per training row: the plan in canonical JSON against the model's layout (no spaces after "," and ":").

    .venv/bin/python bench/target_layout_tokens.py --out bench/results/target_layout_tokens-<stamp>.json

The rows are the `default` profile's draw (its sampling, seed and row count); prompts through the one prompt
builder, completions as the augmented set holds them (canonical JSON: json.dumps' default separators ", " and ": ")
and as the prompt builder makes them (`pipelines.model.plan_layout`: separators "," and ":", the same JSON value).
Training time grows with the tokens per row, and decoding time with the completion tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, default_artifacts, default_lake, ensure_augmented_table, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from pipelines.config import load_params
    from pipelines.data.lake import read_table
    from pipelines.model.base_model import resolve_base_model
    from pipelines.model.model_io import load_tokenizer
    from pipelines.model.prompts import build_completion_ids, build_prompt_ids
    from pipelines.model.training_data import select_rows

    _, config = load_params(args.params).training.resolve(args.profile)
    tokenizer = load_tokenizer(Path(resolve_base_model(config.base_model, default_artifacts()).path))
    data = read_table(ensure_augmented_table(default_lake(), args.params))
    rows = select_rows(data, "train", config.max_train_samples, config.seed, config.row_sampling)
    prompt = [len(build_prompt_ids(tokenizer, text)) for text in rows["prompt"]]
    spaced = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rows["completion"]]
    compacted = [len(build_completion_ids(tokenizer, text)) for text in rows["completion"]]
    mean = statistics.fmean
    result = {
        "profile": args.profile, "rows": len(rows),
        "prompt_tokens_per_row": mean(prompt),
        "completion_tokens_per_row": {"canonical": mean(spaced), "model_layout": mean(compacted)},
        "tokens_per_row": {"canonical": mean(prompt) + mean(spaced), "model_layout": mean(prompt) + mean(compacted)},
        "completion_saving": 1 - sum(compacted) / sum(spaced),
        "row_saving": 1 - (sum(prompt) + sum(compacted)) / (sum(prompt) + sum(spaced)),
        "command": " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()
