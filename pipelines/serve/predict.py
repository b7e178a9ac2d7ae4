"""`python -m pipelines predict`: descriptions in, catalog-valid commands out, never anything else.

Single mode (`predict --model DIR "行1:..."`) prints the plan as canonical JSON, or names each broken
rule (command, field, rule) on stderr and exits 1. Batch mode (no description) reads one description per
stdin line and writes exactly one JSON Lines record per input line, in order: the plan, or
`{"error": {"message", "issues", "raw_output"}}`; it exits 1 if any line failed, and shows a progress bar
on stderr (`--no-progress` turns it off; stdout carries the records only). Every record goes
through `pipelines.serve.plan_output`, which validates against the full catalog right before rendering,
labels included: each must occur in the (normalized) description it was generated from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from pipelines.serve.decode import MAX_PLAN_TOKENS

EXIT_REJECTED = 1
EXIT_USAGE = 2
INVALID_INPUT_RULE = "invalid_input"
# Real descriptions are a few hundred characters; a huge line would make one enormous prompt.
MAX_DESCRIPTION_CHARS = 4000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("description", nargs="?", help="one description; without it, read one per line from stdin")
    parser.add_argument(
        "--model", required=True, help="model directory (safetensors + tokenizer), e.g. artifacts/merged_model"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="descriptions per generate call in batch mode")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_PLAN_TOKENS)
    parser.add_argument(
        "--no-constrained", dest="constrained", action="store_false",
        help="free generation instead of decoding constrained to the catalog's JSON schema",
    )
    parser.add_argument(
        "--no-grounded", dest="grounded", action="store_false",
        help="let constrained decoding write labels the description does not contain (the gate still rejects them)",
    )
    parser.add_argument(
        "--no-coverage", dest="coverage", action="store_false",
        help="let constrained decoding end a plan that leaves a stated number or well unused, or restate used ones",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false",
        help="batch mode: no progress bar on stderr",
    )


def inference_device(requested: str | None) -> str:
    """The device `predict` and `serve` load the model on: the one asked for, else CUDA when present."""
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def predict_lines(
    model: Any,
    tokenizer: Any,
    descriptions: Sequence[str],
    config: Any,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """A CheckedPlan per description; blank or oversized descriptions are rejected without generating.

    `on_done(n)` is called as each group of n descriptions is finished (rejected inputs first, then one call per
    generated batch).
    """
    from pipelines.model.prompts import serving_user_message
    from pipelines.serve.decode import generate_batched
    from pipelines.serve.plan_output import check_plan

    on_done = on_done or (lambda count: None)

    checked: list[Any] = [None] * len(descriptions)
    todo = []
    for index, description in enumerate(descriptions):
        if not description.strip():
            checked[index] = _rejected_input("the description is empty")
        elif len(description) > MAX_DESCRIPTION_CHARS:
            checked[index] = _rejected_input(
                f"the description is {len(description)} characters long, "
                f"more than the limit of {MAX_DESCRIPTION_CHARS}"
            )
        else:
            todo.append(index)
    if len(todo) < len(descriptions):
        on_done(len(descriptions) - len(todo))
    generated = 0

    def batch_done(done: int, total: int) -> None:  # generate_batched counts cumulatively; on_done takes steps
        nonlocal generated
        on_done(done - generated)
        generated = done

    generations = generate_batched(model, tokenizer, [descriptions[i] for i in todo], config, on_batch=batch_done)
    for index, generation in zip(todo, generations, strict=True):
        # Labels are checked against the text the model saw, the same text grounded decoding copies from.
        checked[index] = check_plan(generation.text, description=serving_user_message(descriptions[index]))
    return checked


def run(
    args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    from pathlib import Path

    from pipelines.model.model_io import UnsafeModelArtifactError, load_model_and_tokenizer
    from pipelines.serve.decode import DecodingConfig

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if args.batch_size < 1 or args.max_new_tokens < 1:
        print("error: --batch-size and --max-new-tokens must be >= 1", file=stderr)
        return EXIT_USAGE
    try:
        model, tokenizer = load_model_and_tokenizer(Path(args.model), device=inference_device(args.device))
    except (FileNotFoundError, OSError, UnsafeModelArtifactError, ValueError) as error:
        print(f"error: cannot load the model from {args.model}: {error}", file=stderr)
        return EXIT_USAGE
    config = DecodingConfig(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        constrained=args.constrained,
        grounded=args.grounded,
        coverage=args.coverage,
    )

    if args.description is not None:
        plan = predict_lines(model, tokenizer, [args.description], config)[0]
        if not plan.catalog_valid:
            print(plan.error_message(), file=stderr)
            print(f"raw model output: {json.dumps(plan.raw_output, ensure_ascii=False)}", file=stderr)
            return EXIT_REJECTED
        print(plan.canonical_json(), file=stdout)
        return 0

    descriptions = read_input_lines(stdin)
    # On stderr, so stdout stays one JSON record per input line; a Namespace built by hand may lack the flag.
    with _progress_bar(len(descriptions), stderr, enabled=getattr(args, "progress", True)) as bar:
        plans = predict_lines(model, tokenizer, [d or "" for d in descriptions], config, on_done=bar.update)
    plans = [
        plan if d is not None else _rejected_input("the input line is not valid UTF-8")
        for d, plan in zip(descriptions, plans)
    ]
    for plan in plans:
        stdout.write(_one_line(plan.output_line()) + "\n")
    stdout.flush()
    failed = sum(not plan.catalog_valid for plan in plans)
    if failed:
        print(f"{failed} of {len(plans)} descriptions were rejected (see their error records)", file=stderr)
        return EXIT_REJECTED
    return 0


def _progress_bar(total: int, stream: TextIO, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, file=stream, disable=not enabled, desc="predict", unit="line")


def read_input_lines(stream: Any) -> list[str | None]:
    """Input lines split on b"\n" only (a lone \r or U+2028 inside a line does not start a new one).

    A line that is not UTF-8 becomes None, so it still gets its own (error) output line.
    """
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    decoded: list[str | None] = []
    for line in lines:
        try:
            decoded.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            decoded.append(None)
    return decoded


def _rejected_input(message: str) -> Any:
    from data_contracts.validation import ValidationIssue
    from pipelines.serve.plan_output import CheckedPlan

    issue = ValidationIssue(command_index=None, command=None, field=None, rule=INVALID_INPUT_RULE, message=message)
    return CheckedPlan(raw_output="", commands=None, issues=(issue,))


# Characters some line readers (str.splitlines) treat as line breaks; JSON allows them escaped.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _one_line(record: str) -> str:
    for char, escape in _LINE_BREAKS.items():
        record = record.replace(char, escape)
    return record
